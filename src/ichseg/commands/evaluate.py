"""``ichseg evaluate``: simulated-clinician benchmark of interactive methods on a dataset.

Two protocols: ``--protocol clinician`` (default: the simulated clinician draws scribbles, or
clicks with ``--mode click`` / ``--clinician click``, on one slice per round, ``--rounds``
default 8) and ``--protocol cvpr25`` (the CVPR 2025 challenge: optional GT box plus one click
per round at the largest 3D error, ``--rounds`` = clicks, default 5; also writes
``cvpr25.csv``, ``cvpr25_cases.csv`` and ``cvpr25.md``, see :mod:`ichseg.evaluation.cvpr25`).

Automatic, then corrected: ``--initial-masks DIR`` (one mask per case, ``CASE_ID.nii.gz`` etc.,
e.g. written by ``ichseg predict``) or ``--initial-model WEIGHTS`` (an automatic model run on
every case) starts each session from that mask as round 0; methods are then named
``LABEL+METHOD`` (``--initial-label``, default the folder's or model's name), the round-0 rows
("automatic only") go to ``automatic.csv`` and ``automatic.md`` (also appended to ``report.md``)
and the rounds after them to the usual report.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from ichseg.commands._paths import Output, check_output_paths
from ichseg.commands._scan import AllowNonCtOpt, CorrectTiltOpt, ScanOptions, SeriesUidOpt
from ichseg.errors import ConfigError, DatasetLayoutError

#: extra files of a run with --initial-masks / --initial-model
INITIAL_FILES = ("automatic.csv", "automatic.md")
#: mask file endings looked for in --initial-masks (CASE_ID + ending)
INITIAL_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".seg.dcm")
#: files ``write_report`` writes into ``--out`` (an earlier run's are kept unless --overwrite)
REPORT_FILES = (
    "results.csv",
    "report.md",
    "table_final.csv",
    "table_rounds.csv",
    "noc.csv",
    "paired_tests.csv",
    "timing.csv",
    "dice_vs_round.png",
    "volume_agreement.png",
    "overlay.png",
)


def _select_cases(
    ds: Any, splits: Path | None, fold: int | None, cases: str | None, max_cases: int | None
) -> tuple[list[Any], int | None]:
    """The dataset's cases to evaluate (in dataset order) and the fold label."""
    if cases and splits:
        raise ConfigError("give either --cases or --splits/--fold, not both")
    if (splits is None) != (fold is None):
        raise ConfigError("--splits and --fold go together (the fold's test cases are evaluated)")
    selected = list(ds.cases)
    if splits is not None and fold is not None:
        from ichseg.data.splits import Splits

        test = set(Splits.from_json(splits).fold(fold).test)
        unknown = sorted(test - set(ds.case_ids))
        if unknown:
            raise DatasetLayoutError(
                f"{splits}: fold {fold} lists case(s) not in the dataset: {unknown[:5]}"
            )
        selected = [c for c in selected if c.case_id in test]
    elif cases:
        ids = [c.strip() for c in cases.split(",") if c.strip()]
        if not ids:
            raise ConfigError("--cases is empty")
        selected = [ds.get(i) for i in dict.fromkeys(ids)]
    if max_cases is not None:
        if max_cases < 1:
            raise ConfigError(f"--max-cases must be >= 1, got {max_cases}")
        selected = selected[:max_cases]
    if not selected:
        raise DatasetLayoutError("no cases selected for evaluation")
    missing = [c.case_id for c in selected if c.mask_path is None]
    if missing:
        raise DatasetLayoutError(
            f"case(s) without a ground-truth mask cannot be evaluated: {missing[:5]}"
        )
    return selected, fold


def _load_cases(
    selected: list[Any],
    input_window: Any,
    scan_options: ScanOptions | None = None,
    on_case_done: Callable[[int, int, str, float], None] | None = None,
) -> Iterator[tuple[str, Any, Any]]:
    """Yield ``(case_id, image, mask)`` lazily; ``on_case_done(n, total, case_id, seconds)`` is
    called when the runner asks for the next case, i.e. once the previous one is finished
    (loading, every round and its metrics; ``seconds`` covers all of it)."""
    options = scan_options or ScanOptions()
    total = len(selected)
    for n, case in enumerate(selected, 1):
        t0 = time.perf_counter()
        image = options.load_case(case, input_window)
        mask = case.load_mask(reference=image)
        yield case.case_id, image, mask
        if on_case_done is not None:
            on_case_done(n, total, case.case_id, time.perf_counter() - t0)


def progress_lines(method: str, echo: Callable[[str], Any] = typer.echo) -> Callable[..., None]:
    """An ``on_case_done`` callback printing one line per finished case (for logs and pipes,
    where the progress bar does not show)."""

    def report(n: int, total: int, case_id: str, seconds: float) -> None:
        echo(f"{method}: case {n}/{total} ({case_id}) done in {seconds:.1f} s")
        sys.stdout.flush()

    return report


def _command_line(params: dict[str, Any]) -> str:
    parts = ["ichseg", "evaluate"]
    for key, value in params.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, list | tuple):
            for v in value:
                parts += [flag, str(v)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


def _initial_provider(
    masks: Path | None,
    model: Path | None,
    fold: str,
    label: str | None,
    selected: list[Any],
    device: str,
) -> tuple[Callable[[str, Any], Any] | None, str, str]:
    """``(initial(case_id, image) -> mask, label, source)`` for --initial-masks/--initial-model
    (``None`` without either). Every case's mask file is found (or the model file read) here,
    before any work."""
    if masks is not None and model is not None:
        raise ConfigError("give either --initial-masks or --initial-model, not both")
    if masks is None and model is None:
        if label is not None:
            raise ConfigError("--initial-label needs --initial-masks or --initial-model")
        return None, "", ""
    if masks is not None:
        if not masks.is_dir():
            raise DatasetLayoutError(f"--initial-masks {masks}: not a folder")
        paths: dict[str, Path] = {}
        missing = []
        for case in selected:
            found = next(
                (
                    masks / f"{case.case_id}{sfx}"
                    for sfx in INITIAL_SUFFIXES
                    if (masks / f"{case.case_id}{sfx}").is_file()
                ),
                None,
            )
            if found is None:
                missing.append(case.case_id)
            else:
                paths[case.case_id] = found
        if missing:
            raise DatasetLayoutError(
                f"--initial-masks {masks}: no mask for case(s) {missing[:5]} (expected "
                f"CASE_ID{INITIAL_SUFFIXES[0]}, ..., as `ichseg predict` writes them)"
            )

        def from_files(case_id: str, image: Any) -> Any:
            from ichseg.io.reader import load_mask

            return load_mask(paths[case_id], reference=image)

        return from_files, label or masks.resolve().name, str(masks)

    from ichseg.commands.predict import Segmenter, resolve_model

    spec = resolve_model(model, fold=fold, device=device)  # type: ignore[arg-type]
    segmenter: list[Segmenter] = []
    cache: dict[str, tuple[Any, tuple[int, ...]]] = {}

    def from_model(case_id: str, image: Any) -> Any:
        import numpy as np

        if case_id in cache:  # the same mask for every method
            bits, shape = cache[case_id]
            arr = np.unpackbits(bits, count=int(np.prod(shape))).reshape(shape)
            return image.as_label(arr)
        if not segmenter:
            segmenter.append(Segmenter(spec))
        mask = segmenter[0].mask_of(image)
        arr = np.asarray(mask.array) > 0
        cache[case_id] = (np.packbits(arr.ravel()), arr.shape)
        return mask

    return from_model, label or spec.name, f"{spec.label}:{model}"


def _automatic_summary(
    auto: Any, rest: Any, rounds: int, command: str, n_resamples: int = 5000
) -> tuple[Any, list[str]]:
    """Per method: Dice (bootstrap 95 % CI), HD95 and |dV| of round 0 ("automatic only") and of
    rounds 1, 3 and the last (carrying a stopped case's last value), as a frame and markdown."""
    import pandas as pd

    from ichseg.evaluation.statistics import bootstrap_ci
    from ichseg.evaluation.tables import at_round, to_markdown

    picks: list[tuple[str, Any]] = [("automatic only (round 0)", auto)]
    for r in sorted({1, 3, rounds}):
        if r <= rounds and not rest.empty:
            picks.append((f"automatic + {r} round{'s' if r > 1 else ''}", at_round(rest, r)))
    rows = []
    for method in dict.fromkeys(auto["method"]):
        for what, frame in picks:
            d = frame[frame["method"] == method]
            if d.empty:
                continue
            ci = bootstrap_ci(d["dice"].to_numpy(float), n_resamples=n_resamples)
            rows.append(
                {
                    "method": method,
                    "stage": what,
                    "cases": len(d),
                    "dice": ci.mean,
                    "dice_ci_lo": ci.lo,
                    "dice_ci_hi": ci.hi,
                    "hd95_mm": float(d["hd95"].mean()),
                    "abs_vol_err_ml": float(d["abs_vol_err_ml"].mean()),
                }
            )
    table = pd.DataFrame(rows)
    md = [
        "## Automatic, then corrected",
        "",
        "Round 0 is the automatic mask alone; rounds 1.. are the simulated clinician's "
        "corrections of it. Dice with its percentile-bootstrap 95 % CI over cases (5000 "
        "resamples); a case that stopped early keeps its last value.",
        "",
        f"Command: `{command}`",
        "",
        to_markdown(table.set_index(["method", "stage"]), 3) if not table.empty else "(none)",
        "",
    ]
    return table, md


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate_cmd(
        data: Annotated[Path, typer.Option(help="Dataset folder or CSV manifest")],
        out: Annotated[Path, typer.Option(help="Output folder for tables and figures")],
        method: Annotated[
            list[str],
            typer.Option(
                help="Method spec, repeatable: hpinet, hpinet:WEIGHTS.pt, random_walker"
                "[:KEY=VALUE,...]; optional LABEL= prefix"
            ),
        ],
        splits: Annotated[Path | None, typer.Option(help="Splits JSON (with --fold)")] = None,
        fold: Annotated[int | None, typer.Option(help="Evaluate this fold's test cases")] = None,
        cases: Annotated[str | None, typer.Option(help="Comma-separated case ids")] = None,
        rounds: Annotated[
            int | None,
            typer.Option(
                help="Interaction rounds per case (default 8; --protocol cvpr25: clicks, "
                "default 5)",
                show_default=False,
            ),
        ] = None,
        protocol: Annotated[
            str,
            typer.Option(
                help="clinician (simulated clinician, one slice per round) | cvpr25 (CVPR 2025 "
                "challenge: box + clicks at the largest 3D error; writes cvpr25.csv/.md)"
            ),
        ] = "clinician",
        cvpr25_box: Annotated[
            bool,
            typer.Option(
                "--cvpr25-box/--no-cvpr25-box",
                help="cvpr25: give the GT's largest-slice 2D box with the first click",
            ),
        ] = True,
        mode: Annotated[
            str | None,
            typer.Option(
                "--mode",
                "--clinician",
                help="Clinician prompts: scribble | click (default scribble; protocol clinician)",
                show_default=False,
            ),
        ] = None,
        start: Annotated[
            str | None,
            typer.Option(
                help="Round-1 slice: random_band | largest (default random_band; protocol "
                "clinician)",
                show_default=False,
            ),
        ] = None,
        seed: Annotated[int, typer.Option(help="Clinician seed")] = 0,
        max_cases: Annotated[int | None, typer.Option(help="Evaluate at most N cases")] = None,
        input_window: Annotated[
            str | None, typer.Option(help="HU window of already-windowed images, 'L,W'")
        ] = None,
        empty_gt: Annotated[
            str, typer.Option(help="Cases without hemorrhage: skip | evaluate")
        ] = "skip",
        reference: Annotated[
            str | None, typer.Option(help="Reference method of the tests (default: first)")
        ] = None,
        keep_masks: Annotated[int, typer.Option(help="Cases shown in overlay.png")] = 2,
        device: Annotated[str, typer.Option(help="auto | cpu | cuda (HPINet)")] = "cpu",
        threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
        correct_tilt: CorrectTiltOpt = False,
        series_uid: SeriesUidOpt = None,
        allow_non_ct: AllowNonCtOpt = False,
        progress: Annotated[
            bool,
            typer.Option(
                help="Show progress: a bar on a terminal, else one line per finished case"
            ),
        ] = True,
        initial_masks: Annotated[
            Path | None,
            typer.Option(
                help="Start every case from this folder's mask (CASE_ID.nii.gz, ... e.g. from "
                "`ichseg predict`) as round 0; the clinician corrects it"
            ),
        ] = None,
        initial_model: Annotated[
            Path | None,
            typer.Option(
                help="Start every case from this automatic model's mask (checkpoint, or an "
                "nnU-Net model folder) as round 0"
            ),
        ] = None,
        initial_fold: Annotated[
            str, typer.Option(help="nnU-Net fold of --initial-model (0..4 or all)")
        ] = "0",
        initial_label: Annotated[
            str | None,
            typer.Option(
                help="Name of the automatic start in method names (LABEL+METHOD); default: "
                "the --initial-masks folder's or the --initial-model's name",
                show_default=False,
            ),
        ] = None,
        overwrite: Annotated[
            bool, typer.Option(help="Replace the results of an earlier run in --out")
        ] = False,
    ) -> None:
        """Run every method on the same cases with the same simulated clinician; write a report."""
        import torch
        from rich import box
        from rich.console import Console
        from rich.table import Table

        from ichseg.data.dataset import open_dataset
        from ichseg.evaluation.cvpr25 import (
            CVPR25_FILES,
            format_cvpr25,
            summary_table,
            write_cvpr25,
        )
        from ichseg.evaluation.interactive import (
            DEFAULT_ROUNDS,
            PROTOCOLS,
            ClinicianSpec,
            KeptCase,
            evaluate_interactive,
            load_method,
        )
        from ichseg.evaluation.report import format_summary, write_report
        from ichseg.preprocess.windowing import parse_window

        if protocol not in PROTOCOLS:
            raise ConfigError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        cvpr25 = protocol == "cvpr25"
        if cvpr25 and (mode is not None or start is not None):
            raise ConfigError("--mode/--clinician and --start apply to --protocol clinician only")
        if not cvpr25 and not cvpr25_box:
            raise ConfigError("--no-cvpr25-box applies to --protocol cvpr25 only")
        if rounds is None:
            rounds = DEFAULT_ROUNDS[protocol]
        mode = mode or "scribble"
        start = start or "random_band"
        if rounds < 1:
            raise ConfigError(f"--rounds must be >= 1, got {rounds}")
        if threads is not None:
            if threads < 1:
                raise ConfigError(f"--threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        if not method:
            raise ConfigError("give at least one --method")
        # writable and not a file: at once; an earlier run's results: after the method specs
        check_output_paths(Output("--out", out, kind="folder"), overwrite=True)
        spec = ClinicianSpec(mode=mode, start=start, seed=seed)  # type: ignore[arg-type]
        window = parse_window(input_window) if input_window else None
        scan_options = ScanOptions(correct_tilt, series_uid, allow_non_ct, input_window)
        ds = open_dataset(data, input_window=window)
        selected, fold_label = _select_cases(ds, splits, fold, cases, max_cases)
        initial, start_label, start_source = _initial_provider(
            initial_masks, initial_model, initial_fold, initial_label, selected, device
        )
        loaded = [load_method(m, device=device) for m in method]
        if initial is not None:
            loaded = [(f"{start_label}+{n}", f) for n, f in loaded]
        names = [n for n, _ in loaded]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(
                f"method name(s) {dup} given twice; label them, e.g. --method 'hp-a=hpinet:A.pt'"
            )
        if reference is not None and reference not in names:
            raise ConfigError(f"--reference {reference!r} is not one of the methods {names}")
        check_output_paths(
            Output(
                "--out",
                out,
                kind="folder",
                products=(
                    *REPORT_FILES,
                    *(CVPR25_FILES if cvpr25 else ()),
                    *(INITIAL_FILES if initial is not None else ()),
                ),
            ),
            overwrite=overwrite,
        )
        lines = progress and not sys.stdout.isatty()  # a bar shows only on a terminal
        import pandas as pd

        kept: dict[str, KeptCase] = {}
        frames = []
        skipped: list[str] = []
        for name, factory in loaded:
            df = evaluate_interactive(
                factory,
                _load_cases(
                    selected, window, scan_options, progress_lines(name) if lines else None
                ),
                rounds=rounds,
                clinician=None if cvpr25 else spec,
                protocol=protocol,  # type: ignore[arg-type]
                cvpr25_box=cvpr25_box,
                method_name=name,
                fold=fold_label,
                empty_gt=empty_gt,  # type: ignore[arg-type]
                keep_masks=keep_masks,
                kept=kept,
                progress=progress and not lines,
                n_cases=len(selected),
                initial=initial,
                initial_source=start_source,
            )
            skipped = list(df.attrs.get("skipped_empty", []))
            frames.append(df)
        results = pd.concat(frames, ignore_index=True)
        auto = None
        if initial is not None:
            from ichseg.evaluation.interactive import split_initial

            results, auto = split_initial(results)
        if results.empty and auto is not None and not auto.empty:
            raise DatasetLayoutError(
                "every case stopped at round 0 (the automatic masks were already correct); "
                f"nothing to report beyond {len(auto)} round-0 row(s)"
            )
        if results.empty:
            raise DatasetLayoutError(
                f"no case could be evaluated: all {len(skipped)} selected case(s) have an empty "
                "mask (use --empty-gt evaluate to include them)"
            )
        command = _command_line(
            {
                "data": data,
                "splits": splits,
                "fold": fold,
                "cases": cases,
                "method": list(method),
                "rounds": rounds,
                "protocol": protocol if cvpr25 else None,
                "no_cvpr25_box": cvpr25 and not cvpr25_box,
                "mode": None if cvpr25 else mode,
                "start": None if cvpr25 else start,
                "seed": None if cvpr25 else seed,
                "max_cases": max_cases,
                "input_window": input_window,
                "correct_tilt": correct_tilt,
                "series_uid": series_uid,
                "allow_non_ct": allow_non_ct,
                "empty_gt": empty_gt,
                "reference": reference,
                "keep_masks": keep_masks,
                "device": device,
                "initial_masks": initial_masks,
                "initial_model": initial_model,
                "initial_fold": initial_fold if initial_model is not None else None,
                "initial_label": initial_label,
                "out": out,
            }
        )
        paths = write_report(results, out, command=command, reference_method=reference, kept=kept)
        if auto is not None:
            auto_table, auto_md = _automatic_summary(auto, results, rounds, command)
            auto.to_csv(out / "automatic.csv", index=False)
            (out / "automatic.md").write_text("\n".join(auto_md), encoding="utf-8")
            with Path(paths["report"]).open("a", encoding="utf-8") as fh:
                fh.write("\n" + "\n".join(auto_md))
            paths["automatic"] = out / "automatic.csv"
        if cvpr25:
            paths.update(write_cvpr25(results, out, command, rounds))

        summary = format_summary(results)
        n_cases = int(summary["cases"].max())
        what = "cvpr25 clicks" if cvpr25 else f"{mode} rounds"
        table = Table(title=f"final round: {n_cases} case(s), <= {rounds} {what}", box=box.SIMPLE)
        table.add_column("method", no_wrap=True)
        labels = {"dice": "Dice", "hd95": "HD95 mm", "nsd2mm": "NSD2mm"}
        labels.update({"abs_vol_err_ml": "|dV| mL", "s/round": "s/round"})
        shown = [c for c in summary.columns if c != "cases"]
        for col in shown:
            table.add_column(labels.get(str(col), str(col)), justify="right")
        for name, row in summary.iterrows():
            cells = ["n/a" if row[c] != row[c] else f"{row[c]:.3f}" for c in shown]
            table.add_row(str(name), *cells)
        console = Console()
        console.print(table)
        if skipped:
            console.print(
                f"skipped {len(skipped)} case(s) without hemorrhage: {', '.join(skipped)}"
            )
        if cvpr25:
            t25 = Table(title=f"CVPR 2025 protocol, {rounds} clicks", box=box.SIMPLE)
            rows = format_cvpr25(summary_table(results, rounds))
            t25.add_column("method", no_wrap=True)
            for col in rows[0][1] if rows else {}:
                t25.add_column(col, justify="right")
            for name, values in rows:
                t25.add_row(name, *("n/a" if v != v else f"{v:.3f}" for v in values.values()))
            console.print(t25)
            console.print(f"cvpr25: {paths['cvpr25_md']}")
        if auto is not None:
            ta = Table(title="automatic, then corrected (Dice, 95 % CI)", box=box.SIMPLE)
            for col in ("method", "stage", "cases", "Dice", "95 % CI"):
                ta.add_column(col, justify="left" if col in ("method", "stage") else "right")
            for _, r in auto_table.iterrows():
                ta.add_row(
                    str(r["method"]),
                    str(r["stage"]),
                    str(int(r["cases"])),
                    f"{r['dice']:.3f}",
                    f"[{r['dice_ci_lo']:.3f}, {r['dice_ci_hi']:.3f}]",
                )
            console.print(ta)
        console.print(f"report: {paths['report']}")
