"""The HemSeg-200 comparison table: automatic baselines, interactive methods, automatic + corrected.

Usage (``benchmarks/hemseg_baselines.sh`` runs the whole chain)::

    python benchmarks/hemseg_baselines.py \\
        --synth /work/data/synth_test --case166 /work/shared/data/real/case166 \\
        --model unet=/work/runs/hemseg/unet/best.pt --model vnet=... \\
        --model nnunet=/work/runs/nnunet/results/Dataset501_x/nnUNetTrainer__nnUNetPlans__3d_fullres \\
        --interactive synth=benchmarks/results/interactive_synthetic/results.csv \\
        --interactive case166=benchmarks/results/interactive_case166/results.csv \\
        --corrected synth=/work/runs/hemseg_baselines/corrected_unet \\
        --work /work/runs/hemseg_baselines --out benchmarks/results/hemseg_baselines

What it does, per dataset (``synth``: the held-out synthetic set of the interactive reports;
``case166``: the real scan, read with ``--case166-window``, default 50.5,85 as in
``evaluate_shipped.sh``):

1. every ``--model`` (a checkpoint of ``ichseg train``, or an nnU-Net trained-model folder) segments
   every scan through :class:`ichseg.commands.predict.Segmenter` (the code of ``ichseg predict``)
   with ``--threads`` torch threads; CPU seconds (``time.process_time``) and wall seconds per scan
   are measured; the masks go to ``WORK/pred/DATASET/METHOD/CASE.nii.gz`` (outside the repository:
   case166's derived data is never committed) for ``ichseg evaluate --initial-masks``; a model
   whose file is missing is skipped with a note (run it while others still train);
2. per case Dice / IoU / HD95 (mm) / absolute volume error (mL) on the source grid
   (:func:`ichseg.evaluation.metrics.evaluate_case`), cases with hemorrhage only (as the
   interactive reports), means with a percentile-bootstrap 95 % CI of the Dice
   (:func:`ichseg.evaluation.statistics.bootstrap_ci`, 5000 resamples);
3. parameters and GFLOPs per forward pass of one training patch
   (:func:`ichseg.models.flops.model_cost`, the ``ichseg info`` path), training steps and hours from
   the checkpoint, the ``.json`` written beside exported weights, or the run's ``log.csv``;
4. interactive rows ``METHOD@1``, ``METHOD@3`` and ``METHOD`` (round 8, or the last) from each
   ``--interactive`` results.csv, and automatic + corrected rows (``unet+hpinet_refined@1`` ...)
   from each ``--corrected`` folder of ``ichseg evaluate --initial-masks`` (its ``automatic.csv``
   and ``results.csv``).

Writes ``OUT/table.csv`` (synthetic) and ``OUT/table_case166.csv`` with the columns of
:data:`COLUMNS`, ``OUT/per_case.csv``, ``OUT/dice_per_method.png`` (synthetic cases only: no
image of case166) and ``OUT/report.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

COLUMNS = (
    "method",
    "dice",
    "dice_ci_lo",
    "dice_ci_hi",
    "iou",
    "hd95_mm",
    "vol_err_ml",
    "params_m",
    "gflops",
    "cpu_s_per_scan",
    "train_steps",
    "train_hours",
)
BASELINES = ("unet", "vnet", "segresnet", "attention_unet", "unetr", "swin_unetr", "nnunet")
INTERACTIVE = ("hpinet", "hpinet_paper", "hpinet_refined", "random_walker")
ROUNDS = (1, 3)  #: extra rows METHOD@r; the plain METHOD row is round 8 (or the last)
FINAL_ROUND = 8
TABLE_FILES = {"synth": "table.csv", "case166": "table_case166.csv"}


def _pairs(items: list[str], what: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            sys.exit(f"error: {what} {item!r}: expected NAME=PATH")
        out.append((key.strip(), value.strip()))
    return out


# ------------------------------------------------------------------------------ model facts
def training_facts(weights: Path) -> dict[str, Any]:
    """``train_steps`` / ``train_hours`` and where they came from (checkpoint keys, the
    ``.json`` beside exported weights, or the run folder's ``log.csv``)."""
    facts: dict[str, Any] = {"train_steps": math.nan, "train_hours": math.nan, "source": "none"}
    side = weights.with_suffix(".json")
    if weights.is_file() and side.is_file():
        data = json.loads(side.read_text())
        if "step" in data:
            facts.update(train_steps=int(data["step"]), source=str(side))
        for key in ("elapsed_seconds", "train_seconds", "seconds"):
            if key in data:
                facts["train_hours"] = float(data[key]) / 3600
    if weights.is_file() and math.isnan(facts["train_steps"]):
        from ichseg.models.registry import read_state

        state = read_state(weights)
        if "step" in state:
            facts.update(train_steps=int(state["step"]), source=f"{weights} (step)")
        if "elapsed_seconds" in state:
            facts["train_hours"] = float(state["elapsed_seconds"]) / 3600
    log = (weights if weights.is_dir() else weights.parent) / "log.csv"
    if log.is_file() and (math.isnan(facts["train_steps"]) or math.isnan(facts["train_hours"])):
        rows = list(csv.DictReader(log.open()))
        steps = [float(r["step"]) for r in rows if r.get("step")]
        secs = [float(r["seconds"]) for r in rows if r.get("seconds")]
        if steps and math.isnan(facts["train_steps"]):
            facts["train_steps"] = int(max(steps))
        if secs and math.isnan(facts["train_hours"]):
            facts["train_hours"] = max(secs) / 3600
        facts["source"] = f"{facts['source']}; {log}" if facts["source"] != "none" else str(log)
    return facts


def model_costs(spec: Any) -> dict[str, float]:
    """Parameters (millions) and GFLOPs of one forward pass on a training patch."""
    if spec.kind == "nnunet":
        return {"params_m": math.nan, "gflops": math.nan, "patch": ""}
    from ichseg.models.flops import count_parameters, model_cost
    from ichseg.models.registry import load_model

    model, _ = load_model(spec.path)
    cfg = getattr(model, "config", {}) or {}
    patch = cfg.get("patch_size") if isinstance(cfg, dict) else None
    out = {"params_m": count_parameters(model) / 1e6, "gflops": math.nan, "patch": ""}
    if patch:
        # the model's own training patch (``example_input_shape``; ``patch_size`` is x, y, z)
        rep = model_cost(model, None, spec.name)
        if rep.total.flops is not None:
            out["gflops"] = rep.total.flops / 1e9
        out["patch"] = "x".join(str(n) for n in patch)
    return out


# ------------------------------------------------------------------------------ predictions
def load_cases(
    path: Path, window: str | None, max_cases: int | None = None
) -> list[tuple[str, Any, Any]]:
    from ichseg.commands._scan import ScanOptions
    from ichseg.data.dataset import open_dataset
    from ichseg.preprocess.windowing import parse_window

    options = ScanOptions(input_window=window)
    ds = open_dataset(path, input_window=parse_window(window) if window else None)
    out = []
    for case in ds.cases:
        if max_cases is not None and len(out) >= max_cases:
            break
        image = options.load_case(case)
        mask = case.load_mask(reference=image)
        if max_cases is not None and not np.asarray(mask.array).any():
            continue  # a CPU-budget subset: only scans with hemorrhage (the table's rows)
        out.append((case.case_id, image, mask))
    return out


def predict_dataset(
    dataset: str,
    cases: list[tuple[str, Any, Any]],
    method: str,
    spec: Any,
    work: Path,
    threads: int,
    reuse: bool,
) -> pd.DataFrame:
    """Per-case metrics and timings of one automatic model on one dataset."""
    from rich.progress import track

    from ichseg.commands.predict import Segmenter
    from ichseg.evaluation.metrics import evaluate_case
    from ichseg.io.reader import load_mask, save_mask

    folder = work / "pred" / dataset / method
    folder.mkdir(parents=True, exist_ok=True)
    timing_path = folder / "timing.csv"
    timing = {}
    if reuse and timing_path.is_file():
        timing = {r["case_id"]: r for r in csv.DictReader(timing_path.open())}
    seg = None
    rows = []
    for case_id, image, gt in track(cases, description=f"{dataset} · {method}"):
        path = folder / f"{case_id}.nii.gz"
        if reuse and path.is_file() and case_id in timing:
            mask = load_mask(path, reference=image)
            cpu, wall = float(timing[case_id]["cpu_s"]), float(timing[case_id]["wall_s"])
        else:
            if seg is None:
                seg = Segmenter(spec, threads=threads)
            t, c = time.perf_counter(), time.process_time()
            mask = seg.mask_of(image)
            cpu, wall = time.process_time() - c, time.perf_counter() - t
            save_mask(mask, path, overwrite=True)
        m = evaluate_case(np.asarray(mask.array) > 0, np.asarray(gt.array) > 0, image.spacing)
        rows.append(
            {
                "dataset": dataset,
                "method": method,
                "case_id": case_id,
                "has_hemorrhage": bool(np.asarray(gt.array).any()),
                **{k: m[k] for k in ("dice", "jaccard", "hd95", "abs_vol_err_ml")},
                "vol_pred_ml": m["vol_pred_ml"],
                "vol_gt_ml": m["vol_gt_ml"],
                "cpu_s": cpu,
                "wall_s": wall,
            }
        )
    df = pd.DataFrame(rows)
    df[["case_id", "cpu_s", "wall_s"]].to_csv(timing_path, index=False)
    return df


# ------------------------------------------------------------------------------ table rows
def summary_row(method: str, d: pd.DataFrame, n_resamples: int, **extra: Any) -> dict[str, Any]:
    from ichseg.evaluation.statistics import bootstrap_ci

    ci = bootstrap_ci(d["dice"].to_numpy(float), n_resamples=n_resamples)
    hd = d["hd95"].to_numpy(float)
    hd = hd[np.isfinite(hd)]
    row = {
        "method": method,
        "dice": ci.mean,
        "dice_ci_lo": ci.lo,
        "dice_ci_hi": ci.hi,
        "iou": float(d["jaccard"].mean()),
        "hd95_mm": float(hd.mean()) if hd.size else math.nan,
        "vol_err_ml": float(d["abs_vol_err_ml"].mean()),
        "params_m": math.nan,
        "gflops": math.nan,
        "cpu_s_per_scan": math.nan,
        "train_steps": math.nan,
        "train_hours": math.nan,
    }
    row.update(extra)
    return row


def interactive_rows(
    results: Path,
    n_resamples: int,
    extra: dict[str, dict[str, Any]],
    case_ids: set[str] | None = None,
):
    """``METHOD@1``, ``METHOD@3`` and ``METHOD`` (round 8 or the last) of a results.csv (only
    ``case_ids`` when given, the scans the automatic models were run on); the seconds column is
    the summed wall time of the rounds so far plus encoding."""
    from ichseg.evaluation.tables import at_round, read_results

    df = read_results(results)
    if case_ids is not None:
        df = df[df["case_id"].astype(str).isin(case_ids)]
    last = int(df["round"].max())
    rows = []
    for method in dict.fromkeys(df["method"]):
        d = df[df["method"] == method].copy()
        for r in (*ROUNDS, min(FINAL_ROUND, last)):
            at = at_round(d, r)
            secs = d[d["round"] <= r].groupby("case_id")["seconds"].sum()
            enc = d.groupby("case_id")["set_volume_seconds"].first()
            label = method if r == min(FINAL_ROUND, last) else f"{method}@{r}"
            base = method.split("+")[-1]
            rows.append(
                summary_row(
                    label,
                    at,
                    n_resamples,
                    cpu_s_per_scan=float((secs + enc).mean()),
                    **extra.get(base, {}),
                )
            )
    return rows


def corrected_rows(folder: Path, n_resamples: int) -> list[dict[str, Any]]:
    """Rows of an ``ichseg evaluate --initial-masks`` folder: ``LABEL+METHOD@r``."""
    from ichseg.evaluation.tables import at_round, read_results

    rows = []
    df = read_results(folder / "results.csv")
    last = int(df["round"].max())
    for method in dict.fromkeys(df["method"]):
        d = df[df["method"] == method]
        for r in sorted({*ROUNDS, last}):
            if r <= last:
                rows.append(summary_row(f"{method}@{r}", at_round(d, r), n_resamples))
    return rows


# ------------------------------------------------------------------------------ outputs
def plot_dice(per_case: pd.DataFrame, interactive: Path | None, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ichseg.evaluation.tables import at_round, read_results

    groups: dict[str, np.ndarray] = {}
    d = per_case[(per_case["dataset"] == "synth") & per_case["has_hemorrhage"]]
    for method in dict.fromkeys(d["method"]):
        groups[method] = d[d["method"] == method]["dice"].to_numpy(float)
    if interactive is not None and interactive.is_file():
        df = read_results(interactive)
        for method in dict.fromkeys(df["method"]):
            for r in (1, FINAL_ROUND):
                at = at_round(df[df["method"] == method], r)
                groups[f"{method}@{r}"] = at["dice"].to_numpy(float)
    if not groups:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(groups)), 4.5))
    names = list(groups)
    ax.boxplot([groups[n] for n in names], showfliers=False)
    rng = np.random.default_rng(0)
    for i, n in enumerate(names, 1):
        ax.plot(i + rng.uniform(-0.15, 0.15, groups[n].size), groups[n], ".", alpha=0.6)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=40, ha="right")
    ax.set_ylabel("Dice per scan")
    ax.set_ylim(0, 1)
    ax.set_title("Held-out synthetic scans with hemorrhage")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def fmt(v: Any, nd: int = 3) -> str:
    if isinstance(v, float):
        return "n/a" if not math.isfinite(v) else f"{v:.{nd}f}"
    return str(v)


def markdown(table: pd.DataFrame) -> list[str]:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for _, r in table.iterrows():
        lines.append("| " + " | ".join(fmt(r[c]) for c in COLUMNS) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--synth", type=Path, help="held-out synthetic test set")
    ap.add_argument("--case166", type=Path, help="the real case166 folder")
    ap.add_argument("--case166-window", default="50.5,85")
    ap.add_argument("--model", action="append", default=[], help="NAME=WEIGHTS (repeatable)")
    ap.add_argument("--fold", default="0", help="nnU-Net fold")
    ap.add_argument("--interactive", action="append", default=[], help="DATASET=results.csv")
    ap.add_argument("--corrected", action="append", default=[], help="DATASET=evaluate folder")
    ap.add_argument("--interactive-weights", type=Path, default=None, help="HPINet weights")
    ap.add_argument("--work", type=Path, default=Path("/work/runs/hemseg_baselines"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/hemseg_baselines"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--max-cases",
        type=int,
        default=None,
        help="only the first N scans with hemorrhage per set (CPU budget)",
    )
    ap.add_argument("--n-resamples", type=int, default=5000)
    ap.add_argument("--reuse", action="store_true", help="reuse masks/timings in --work")
    args = ap.parse_args(argv)

    import torch

    from ichseg.commands.predict import resolve_model
    from ichseg.errors import IchsegError

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "benchmarks/hemseg_baselines.py", *(argv or sys.argv[1:])])
    datasets = {"synth": (args.synth, None), "case166": (args.case166, args.case166_window)}
    notes: list[str] = []
    specs: dict[str, Any] = {}
    facts: dict[str, dict[str, Any]] = {}
    for name, path in _pairs(args.model, "--model"):
        p = Path(path)
        if not p.exists():
            notes.append(f"`{name}`: skipped, {p} does not exist (not trained yet?)")
            continue
        try:
            specs[name] = resolve_model(p, fold=args.fold)
        except IchsegError as exc:
            notes.append(f"`{name}`: skipped, {exc}")
            continue
        facts[name] = {**training_facts(p), **model_costs(specs[name])}
    for name in BASELINES:
        if name not in specs and not any(n.startswith(f"`{name}`") for n in notes):
            notes.append(f"`{name}`: no --model given")

    hp_extra: dict[str, dict[str, Any]] = {}
    try:  # interactive rows: parameters and training steps of the HPINet weights used
        from ichseg.models.flops import count_parameters
        from ichseg.models.pretrained import load_weights

        model, wpath = load_weights(args.interactive_weights)
        hp = training_facts(Path(wpath))
        params = count_parameters(model) / 1e6
        for m in ("hpinet", "hpinet_paper", "hpinet_refined"):
            hp_extra[m] = {
                "params_m": params,
                "train_steps": hp["train_steps"],
                "train_hours": hp["train_hours"],
            }
        hp_extra["random_walker"] = {"params_m": 0.0, "train_steps": 0, "train_hours": 0.0}
    except (ImportError, IchsegError) as exc:
        notes.append(f"HPINet facts not read ({exc})")

    interactive = dict(_pairs(args.interactive, "--interactive"))
    corrected = _pairs(args.corrected, "--corrected")
    per_case = []
    tables = {}
    for dataset, (path, window) in datasets.items():
        if path is None:
            continue
        cases = load_cases(path, window, args.max_cases)
        rows = []
        for method, spec in specs.items():
            d = predict_dataset(dataset, cases, method, spec, args.work, args.threads, args.reuse)
            per_case.append(d)
            hem = d[d["has_hemorrhage"]]
            f = facts[method]
            rows.append(
                summary_row(
                    method,
                    hem,
                    args.n_resamples,
                    params_m=f["params_m"],
                    gflops=f["gflops"],
                    cpu_s_per_scan=float(d["cpu_s"].mean()),
                    train_steps=f["train_steps"],
                    train_hours=f["train_hours"],
                )
            )
            empty = d[~d["has_hemorrhage"]]
            if len(empty):
                notes.append(
                    f"{dataset} `{method}`: {len(empty)} scan(s) without hemorrhage, predicted "
                    f"{empty['vol_pred_ml'].mean():.2f} mL on average (not in the table)"
                )
        if dataset in interactive:
            rows += interactive_rows(
                Path(interactive[dataset]),
                args.n_resamples,
                hp_extra,
                {c[0] for c in cases} if args.max_cases is not None else None,
            )
        for ds, folder in corrected:
            if ds == dataset:
                if (Path(folder) / "results.csv").is_file():
                    rows += corrected_rows(Path(folder), args.n_resamples)
                else:
                    notes.append(f"--corrected {folder}: no results.csv, skipped")
        table = pd.DataFrame(rows, columns=list(COLUMNS))
        table.to_csv(args.out / TABLE_FILES[dataset], index=False, float_format="%.4f")
        tables[dataset] = table

    cases_df = pd.concat(per_case, ignore_index=True) if per_case else pd.DataFrame()
    if not cases_df.empty:
        cases_df.to_csv(args.out / "per_case.csv", index=False, float_format="%.5f")
    plot = plot_dice(
        cases_df if not cases_df.empty else pd.DataFrame(columns=["dataset", "has_hemorrhage"]),
        Path(interactive["synth"]) if "synth" in interactive else None,
        args.out / "dice_per_method.png",
    )
    write_report(args, command, tables, facts, notes, plot)
    print(f"report: {args.out / 'report.md'}")
    return 0


def write_report(args, command, tables, facts, notes, plot) -> None:
    md = [
        "# HemSeg-200 baselines on ichseg's test sets",
        "",
        f"Command: `{command}`",
        "",
        "Automatic models segment every scan (`ichseg predict`'s code, "
        f"{args.threads} torch thread(s), CPU seconds per scan measured with "
        "`time.process_time`); metrics on the source grid over the scans with hemorrhage; "
        "Dice with its percentile-bootstrap 95 % CI over cases "
        f"({args.n_resamples} resamples). Interactive rows come from the simulated-clinician "
        "results (`METHOD@r` after r scribble rounds, plain `METHOD` after round 8); their "
        "seconds column is the summed wall time of encoding and rounds so far in that run. "
        "`LABEL+METHOD@r` rows start from LABEL's automatic mask (round 0) and correct it "
        "(`ichseg evaluate --initial-masks`). GFLOPs: one forward pass on one training patch "
        "(`ichseg info`); a whole scan needs several patches.",
        "",
    ]
    for dataset, table in tables.items():
        md += [f"## {dataset} (`{TABLE_FILES[dataset]}`)", "", *markdown(table), ""]
    md += ["## Training budget of each model", ""]
    md += ["| model | steps | hours | patch | from |", "|---|---|---|---|---|"]
    for name, f in facts.items():
        md.append(
            f"| {name} | {fmt(f['train_steps'])} | {fmt(f['train_hours'], 2)} | "
            f"{f.get('patch', '')} | {f['source']} |"
        )
    md += [
        "",
        "**Under-training.** Every baseline here was trained on 2 shared CPU cores within the "
        "budget above, orders of magnitude below the paper's GPU schedules; their numbers are "
        "those of under-trained models and say nothing about the architectures at convergence. "
        "Each run's own log records whether its validation Dice had stopped rising.",
        "",
    ]
    if plot is not None:
        md += ["## Dice per method (synthetic)", "", f"![Dice per method]({plot.name})", ""]
    if notes:
        md += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    (args.out / "report.md").write_text("\n".join(md), encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
