"""Robustness of interactive methods to domain shifts of the input scan.

Every transform of :data:`ichseg.data.domain.ROBUSTNESS_TRANSFORMS` (skull stripping, windowed
export, slice thickness, cropped field of view, noise, kernels, streaks, skull defect) is applied
to each held-out scan of a dataset folder (PhysioNet layout as written by ``ichseg synth``) and
optionally to case166; the transformed scans are written as NIfTI to a temporary dataset
(a CSV manifest), read back through ichseg's loader, and evaluated with the simulated clinician
of ``ichseg evaluate`` (scribbles, ``random_band`` start). Writes to ``--out``:

* ``table.csv`` — ``transform,method,dice_round1,dice_round3,dice_round8,noc85`` (mean over
  cases; a case that stopped early keeps its last Dice; NoC@85 counts ``--rounds`` if never
  reached);
* ``results_long.csv`` — every (transform, method, case, round) row of the evaluation;
* ``report.md`` — command, settings, the table, deltas vs ``none`` per method, loader notes;
* ``dice_round8.png`` — Dice after the last round per transform and method (grouped bars).

    python benchmarks/robustness.py --data data/synth_test --cases 20 \\
        --method hpinet --method random_walker --threads 2 --case166 ../shared/data/real/case166

Transformed case166 files only ever go to the temporary folder (``--workdir`` keeps them).
"""

from __future__ import annotations

import argparse
import math
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ichseg.data.dataset import Case, open_dataset
from ichseg.data.domain import ROBUSTNESS_NOTES, ROBUSTNESS_TRANSFORMS, apply_robustness
from ichseg.errors import ConfigError, IchsegError, IntensityError
from ichseg.io.nifti import read_nifti, write_nifti
from ichseg.io.volume import Intensity, IntensityKind, Volume, Window

RESULTS = Path(__file__).resolve().parent / "results" / "robustness"
DEFAULT_METHODS = ("hpinet", "hpinet_refined", "random_walker")
TABLE_COLUMNS = ("transform", "method", "dice_round1", "dice_round3", "dice_round8", "noc85")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Source:
    """A scan to transform: its dataset case and the window it was declared with."""

    case: Case
    window: Window | None = None

    @property
    def case_id(self) -> str:
        return self.case.case_id


@dataclass
class Written:
    """A transformed case on disk and what its intensities mean."""

    case_id: str
    image: Path
    mask: Path
    intensity: Intensity


@dataclass
class TransformRun:
    """Bookkeeping of one transform: files, loader notes, timings."""

    name: str
    written: list[Written] = field(default_factory=list)
    loader_notes: dict[str, str] = field(default_factory=dict)
    transform_seconds: float = 0.0
    skipped_empty: list[str] = field(default_factory=list)


def parse_window(text: str) -> Window:
    try:
        level, width = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise ConfigError(f"window must be 'LEVEL,WIDTH', got {text!r}") from exc
    return Window(level, width)


def select_sources(args: argparse.Namespace) -> tuple[list[Source], list[str]]:
    """Synthetic cases with hemorrhage (first ``--cases``) plus case166; ids of skipped ones."""
    sources: list[Source] = []
    skipped: list[str] = []
    if args.data is not None:
        ds = open_dataset(args.data)
        for case in ds.cases:
            if args.cases is not None and len(sources) >= args.cases:
                break
            if case.mask_path is None:
                skipped.append(case.case_id)
                continue
            mask = case.load_mask()
            if mask is None or not np.asarray(mask.array).any():
                skipped.append(case.case_id)
                continue
            sources.append(Source(case))
    if args.case166 is not None:
        window = parse_window(args.case166_window)
        ds166 = open_dataset(args.case166, input_window=window)
        for case in ds166.cases:
            sources.append(Source(case, window))
    ids = [s.case_id for s in sources]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"duplicate case ids among the sources: {ids}")
    if not sources:
        raise ConfigError("no case with a non-empty mask to evaluate (give --data or --case166)")
    return sources, skipped


def write_transformed(name: str, sources: list[Source], folder: Path) -> TransformRun:
    """Apply transform ``name`` to every source; write NIfTI files and a manifest."""
    run = TransformRun(name)
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["case_id,image,mask"]
    for i, src in enumerate(sources, 1):
        image = src.case.load_image(src.window)
        mask = src.case.load_mask(reference=image)
        if mask is None:
            raise ConfigError(f"case {src.case_id} has no mask")
        t0 = time.perf_counter()
        img_t, mask_t = apply_robustness(name, image, mask, src.case_id)
        dt = time.perf_counter() - t0
        run.transform_seconds += dt
        img_path = write_nifti(img_t, folder / f"{src.case_id}_image.nii")
        mask_path = write_nifti(mask_t, folder / f"{src.case_id}_mask.nii")
        run.written.append(Written(src.case_id, img_path, mask_path, img_t.intensity))
        rows.append(f"{src.case_id},{img_path.name},{mask_path.name}")
        sp = ", ".join(f"{s:.3g}" for s in img_t.spacing)
        log(
            f"[{name}] transformed case {src.case_id} ({i}/{len(sources)}) in {dt:.2f} s: "
            f"shape {img_t.shape}, spacing ({sp}) mm, {img_t.intensity.kind!s}, "
            f"lesion {int(np.asarray(mask_t.array).sum())} voxels"
        )
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return run


def load_cases(
    run: TransformRun, folder: Path, method: str
) -> Iterator[tuple[str, Volume, Volume]]:
    """Read the transformed cases back through ichseg's dataset loader.

    Windowed files are declared with their window (as a user would with ``--input-window``). If
    the loader refuses a file (e.g. skull-stripped HU with a 0 background does not look like CT
    to the intensity detector), that is noted and the file is read with its known intensity.
    """
    ds = open_dataset(folder / "manifest.csv")
    known = {w.case_id: w for w in run.written}
    t_start = time.perf_counter()
    for i, case in enumerate(ds.cases, 1):
        w = known[case.case_id]
        if w.intensity.kind == IntensityKind.WINDOWED and w.intensity.window is not None:
            case.meta["input_window"] = w.intensity.window
        try:
            image = case.load_image()
            run.loader_notes.setdefault(case.case_id, "ok")
        except IntensityError as exc:
            reason = str(exc).split(": ", 1)[-1]
            run.loader_notes[case.case_id] = (
                f"refused ({reason[:160]}); read as {w.intensity.kind!s}"
            )
            image = read_nifti(w.image, intensity=w.intensity)
        mask = case.load_mask(reference=image)
        assert mask is not None
        log(
            f"[{run.name}] {method}: case {case.case_id} ({i}/{len(ds.cases)}), "
            f"{time.perf_counter() - t_start:.1f} s into this transform"
        )
        yield case.case_id, image, mask


def merge_earlier(
    out: Path, results: pd.DataFrame
) -> tuple[pd.DataFrame, list[str], dict[str, str]]:
    """``--update``: the earlier long results of ``out`` with this run's (transform, method)
    pairs replaced; the earlier commands; the earlier report's transform rows by name."""
    path = out / "results_long.csv"
    if not path.is_file():
        raise ConfigError(f"--update: {path} does not exist (run once without --update)")
    old = pd.read_csv(path, dtype={"case_id": str})
    new_pairs = set(results[["transform", "method"]].itertuples(index=False, name=None))
    keep = [
        pair not in new_pairs
        for pair in old[["transform", "method"]].itertuples(index=False, name=None)
    ]
    order = list(dict.fromkeys([*old["transform"], *results["transform"]]))
    merged = pd.concat([old[keep], results], ignore_index=True)
    methods = list(dict.fromkeys([*old["method"], *results["method"]]))
    merged["_t"] = merged["transform"].map(order.index)
    merged["_m"] = merged["method"].map(methods.index)
    merged = merged.sort_values(["_t", "_m"], kind="stable").drop(columns=["_t", "_m"])
    merged = merged.reset_index(drop=True)
    commands: list[str] = []
    rows: dict[str, str] = {}
    if (out / "commands.txt").is_file():
        commands = [c for c in (out / "commands.txt").read_text().splitlines() if c.strip()]
    report = out / "report.md"
    if report.is_file():
        text = report.read_text(encoding="utf-8")
        if not commands and "```bash" in text:
            block = text.split("```bash", 1)[1].split("```", 1)[0]
            commands = [c for c in block.splitlines() if c.strip()]
        if "## Transforms" in text:
            section = text.split("## Transforms", 1)[1].split("\n## ", 1)[0]
            for line in section.splitlines():
                cells = [c.strip() for c in line.strip("|").split("|")]
                if (
                    line.startswith("| ")
                    and cells[0] not in ("transform", "")
                    and not cells[0].startswith("-")
                ):
                    rows[cells[0]] = line
    return merged, commands, rows


def summarize(results: pd.DataFrame, rounds: int) -> pd.DataFrame:
    """The robustness table: one row per (transform, method), in the order they were run."""
    from ichseg.evaluation.tables import at_round, clicks_to_reach

    rows: list[dict[str, Any]] = []
    keys = results[["transform", "method"]].drop_duplicates()
    for t, m in keys.itertuples(index=False):
        d = results[(results["transform"] == t) & (results["method"] == m)]
        row: dict[str, Any] = {"transform": t, "method": m}
        for r in (1, 3, 8):
            row[f"dice_round{r}"] = float(at_round(d, min(r, rounds))["dice"].mean())
        row["noc85"] = float(clicks_to_reach(d, 0.85, rounds)["noc"].mean())
        rows.append(row)
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def deltas(table: pd.DataFrame) -> pd.DataFrame:
    """Per method: each transform minus ``none`` (Dice rounds 1/8, NoC@85)."""
    base = table[table["transform"] == "none"].set_index("method")
    out = []
    for r in table[table["transform"] != "none"].itertuples(index=False):
        if r.method not in base.index:
            continue
        b = base.loc[r.method]
        out.append(
            {
                "method": r.method,
                "transform": r.transform,
                "d_dice_round1": r.dice_round1 - b["dice_round1"],
                "d_dice_round8": r.dice_round8 - b["dice_round8"],
                "d_noc85": r.noc85 - b["noc85"],
            }
        )
    df = pd.DataFrame(
        out, columns=["method", "transform", "d_dice_round1", "d_dice_round8", "d_noc85"]
    )
    return df.sort_values(["method", "transform"], kind="stable").reset_index(drop=True)


def markdown(df: pd.DataFrame, decimals: int = 3, signed: bool = False) -> str:
    """A GitHub Markdown table of ``df`` (floats rounded, ``+`` signs when ``signed``)."""
    fmt = f"{{:{'+' if signed else ''}.{decimals}f}}"

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "n/a" if math.isnan(v) else fmt.format(v)
        return str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def plot(table: pd.DataFrame, path: Path, rounds: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    transforms = list(dict.fromkeys(table["transform"]))
    methods = list(dict.fromkeys(table["method"]))
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(
        figsize=(max(6.0, 0.45 * len(transforms) * (1 + 0.25 * len(methods)) + 1.5), 4.0)
    )
    x = np.arange(len(transforms))
    for n, m in enumerate(methods):
        d = table[table["method"] == m].set_index("transform").reindex(transforms)
        ax.bar(x + (n - (len(methods) - 1) / 2) * width, d["dice_round8"], width, label=m)
    ax.set_xticks(x)
    ax.set_xticklabels(transforms, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel(f"Dice after round {min(8, rounds)}")
    ax.set_ylim(0.0, 1.0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Robustness to input domain shifts")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def write_report(
    out: Path,
    command: str,
    args: argparse.Namespace,
    sources: list[Source],
    skipped_sources: list[str],
    methods: list[str],
    failed_methods: dict[str, str],
    runs: list[TransformRun],
    table: pd.DataFrame,
    seconds: float,
    earlier: list[str] | None = None,
    kept_rows: dict[str, str] | None = None,
) -> Path:
    commands = [*(earlier or []), command]
    lines = ["# Robustness to input domain shifts", "", "```bash", *commands, "```", ""]
    if earlier:
        lines += [
            "The later commands ran with `--update`: each replaced the rows of the (transform, "
            "method) pairs it evaluated and kept the others (`commands.txt`); settings and wall "
            "time below are the last command's.",
            "",
        ]
    (out / "commands.txt").write_text("\n".join(commands) + "\n", encoding="utf-8")
    lines += [
        "## Settings",
        "",
        f"- data: `{args.data}`"
        + (f" + case166 (`--case166`, window {args.case166_window})" if args.case166 else ""),
        f"- cases: {len(sources)} with hemorrhage ({', '.join(s.case_id for s in sources)})"
        + (
            f"; skipped without hemorrhage: {', '.join(skipped_sources)}" if skipped_sources else ""
        ),
        f"- methods: {', '.join(methods)}"
        + "".join(f"; **{m} not run**: {why}" for m, why in failed_methods.items()),
        f"- rounds: {args.rounds} scribble rounds (simulated clinician, `random_band` start, seed {args.seed}); "
        "`dice_round8` is the Dice after min(8, rounds) rounds; a case that stopped early keeps its last Dice; "
        f"NoC@85 counts {args.rounds} when 0.85 is never reached",
        f"- wall time: {seconds / 60:.1f} min",
        "",
        "## Transforms",
        "",
        "| transform | benchmark setting | training randomisation | loader | transform s/case |",
        "|---|---|---|---|---|",
    ]
    done = {run.name for run in runs}
    lines += [row for name, row in (kept_rows or {}).items() if name not in done]
    for run in runs:
        setting, training = ROBUSTNESS_NOTES.get(run.name, ("?", "?"))
        notes = set(run.loader_notes.values()) or {"n/a"}
        loader = "; ".join(sorted(notes))
        per_case = run.transform_seconds / max(1, len(run.written))
        lines.append(f"| {run.name} | {setting} | {training} | {loader} | {per_case:.2f} |")
    empty = [f"{r.name}: {', '.join(r.skipped_empty)}" for r in runs if r.skipped_empty]
    if empty:
        lines += [
            "",
            "Cases whose lesion vanished after the transform (skipped): " + "; ".join(empty),
        ]
    lines += [
        "",
        "## Results",
        "",
        markdown(table),
        "![Dice after the last round](dice_round8.png)",
        "",
    ]
    d = deltas(table)
    if not d.empty:
        lines += ["## Change vs `none` (per method)", "", markdown(d, signed=True)]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--data", type=Path, default=None, help="held-out dataset folder (PhysioNet layout)"
    )
    ap.add_argument(
        "--cases", type=int, default=None, help="at most N cases with hemorrhage from --data"
    )
    ap.add_argument(
        "--transforms",
        default=",".join(ROBUSTNESS_TRANSFORMS),
        help="comma-separated transform names",
    )
    ap.add_argument(
        "--method",
        action="append",
        default=None,
        help=f"method spec, repeatable (default {', '.join(DEFAULT_METHODS)})",
    )
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0, help="simulated clinician seed")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--case166", type=Path, default=None, help="case166 folder (image + mask)")
    ap.add_argument("--case166-window", default="50.5,85", help="HU window case166 is stored in")
    ap.add_argument(
        "--workdir", type=Path, default=None, help="keep transformed files here (default: temp)"
    )
    ap.add_argument(
        "--update",
        action="store_true",
        help="merge into the results already in --out: the (transform, method) pairs run now "
        "replace theirs, the others are kept; the report lists every command that contributed",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    command = shlex.join(["python", "benchmarks/robustness.py", *argv])
    try:
        return run(args, command)
    except IchsegError as exc:
        log(f"error: {exc}")
        return 2


def run(args: argparse.Namespace, command: str) -> int:
    from ichseg.evaluation.interactive import ClinicianSpec, evaluate_interactive, load_method

    t_all = time.perf_counter()
    if args.rounds < 1:
        raise ConfigError(f"--rounds must be >= 1, got {args.rounds}")
    names = [t.strip() for t in args.transforms.split(",") if t.strip()]
    unknown = [t for t in names if t not in ROBUSTNESS_TRANSFORMS]
    if unknown or not names:
        raise ConfigError(
            f"unknown transform(s) {unknown}; known: {', '.join(ROBUSTNESS_TRANSFORMS)}"
        )
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    specs = args.method or list(DEFAULT_METHODS)
    loaded, failed = [], {}
    for spec in specs:
        try:
            loaded.append(load_method(spec, device=args.device))
        except IchsegError as exc:
            failed[spec] = str(exc)
            log(f"warning: method {spec!r} skipped: {exc}")
    if not loaded:
        raise ConfigError("none of the methods could be loaded")
    sources, skipped_sources = select_sources(args)
    log(
        f"{len(sources)} case(s), transforms {', '.join(names)}, methods {', '.join(n for n, _ in loaded)}"
    )
    clinician = ClinicianSpec(mode="scribble", start="random_band", seed=args.seed)

    frames, runs = [], []
    with tempfile.TemporaryDirectory(prefix="ichseg-robustness-") as tmp:
        work = Path(args.workdir) if args.workdir is not None else Path(tmp)
        for name in names:
            folder = work / name
            run_t = write_transformed(name, sources, folder)
            runs.append(run_t)
            for method, factory in loaded:
                df = evaluate_interactive(
                    factory,
                    load_cases(run_t, folder, method),
                    rounds=args.rounds,
                    clinician=clinician,
                    method_name=method,
                    progress=False,
                    n_cases=len(sources),
                )
                run_t.skipped_empty = list(df.attrs.get("skipped_empty", []))
                if df.empty:
                    continue
                final = df.sort_values("round").groupby("case_id").tail(1)
                log(
                    f"[{name}] {method}: final Dice {final['dice'].mean():.3f} over {len(final)} case(s)"
                )
                frames.append(df.assign(transform=name))
            if args.workdir is None:
                shutil.rmtree(folder)  # 1 mm slices of 20 full-size scans take gigabytes
    if not frames:
        raise ConfigError("nothing was evaluated")
    results = pd.concat(frames, ignore_index=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    earlier: list[str] = []
    kept_rows: dict[str, str] = {}
    if args.update:
        results, earlier, kept_rows = merge_earlier(out, results)
    cols = ["transform", *[c for c in results.columns if c != "transform"]]
    results[cols].to_csv(out / "results_long.csv", index=False)
    table = summarize(results, args.rounds)
    table.to_csv(out / "table.csv", index=False, float_format="%.4f")
    plot(table, out / "dice_round8.png", args.rounds)
    seconds = time.perf_counter() - t_all
    report = write_report(
        out,
        command,
        args,
        sources,
        skipped_sources,
        [n for n, _ in loaded],
        failed,
        runs,
        table,
        seconds,
        earlier,
        kept_rows,
    )
    log(f"wrote {out / 'table.csv'} and {report} in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
