"""``ichseg evaluate``: simulated-clinician benchmark of interactive methods on a dataset.

Two protocols: ``--protocol clinician`` (default: the simulated clinician draws scribbles, or
clicks with ``--mode click`` / ``--clinician click``, on one slice per round, ``--rounds``
default 8) and ``--protocol cvpr25`` (the CVPR 2025 challenge: optional GT box plus one click
per round at the largest 3D error, ``--rounds`` = clicks, default 5; also writes
``cvpr25.csv``, ``cvpr25_cases.csv`` and ``cvpr25.md``, see :mod:`ichseg.evaluation.cvpr25`).
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
        loaded = [load_method(m, device=device) for m in method]
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
                products=(*REPORT_FILES, *(CVPR25_FILES if cvpr25 else ())),
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
            )
            skipped = list(df.attrs.get("skipped_empty", []))
            frames.append(df)
        results = pd.concat(frames, ignore_index=True)
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
                "out": out,
            }
        )
        paths = write_report(results, out, command=command, reference_method=reference, kept=kept)
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
        console.print(f"report: {paths['report']}")
