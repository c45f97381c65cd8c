"""Write the tables and figures of an interactive evaluation run into a folder.

:func:`write_report` takes the long-format frame of
:func:`ichseg.evaluation.interactive.evaluate_interactive` (one row per method, fold, case and
round; several methods concatenated) and writes:

========================  =====================================================================
``results.csv``           every row of the run
``report.md``             all tables below, starting with the exact command of the run
``table_final.csv``       Table-1 layout, numeric: per method and metric at each case's final
                          round: mean and sample std over folds, 95 % bootstrap CI of the mean
                          over cases (5000 resamples, seed 47), NaN counts
``table_rounds.csv``      Table-5 layout: mean metric after rounds 1..R (cases that stopped
                          early carry their last values)
``noc.csv``               NoC@0.80/0.85/0.90: mean rounds to reach the Dice threshold (never
                          reached = R, counted in ``failed@``)
``paired_tests.csv``      paired t-tests of every method against the reference method on the
                          per-case final values, Bonferroni-adjusted over all tests in the table
``timing.csv``            seconds per round (mean, median, 95th percentile, max) per method
``dice_vs_round.png``     mean Dice per round with 95 % bootstrap band
``volume_agreement.png``  Bland–Altman plot of final predicted vs GT volume (mL), all methods
``volume_agreement.csv``  per method, final round: Bland–Altman bias, SD and 95 % limits of
                          agreement, ICC(2,1) (two-way random, absolute agreement, single
                          measure) with its 95 % CI, number of cases
``volume_agreement_<method>.png``  per method: predicted vs GT scatter with ICC(2,1), and its
                          Bland–Altman plot
``overlay.png``           paper Fig. 2 style image / GT / methods grid (only with ``kept`` masks)
========================  =====================================================================

The authors' per-slice "row HD" is shown only as a column labelled *legacy* (it is not a
Hausdorff distance and has no unit, see :func:`ichseg.evaluation.metrics.legacy_row_hausdorff`);
HD95 in mm is the distance metric to read.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ichseg.errors import ConfigError
from ichseg.evaluation.statistics import (
    bland_altman,
    bonferroni,
    compare_to_reference,
    icc_agreement,
)
from ichseg.evaluation.tables import (
    at_round,
    methods_in_order,
    noc,
    summarize_methods,
    table_methods,
    table_rounds,
    to_markdown,
    validate_results,
)

#: Final-round metrics of the Table-1 layout, with their display labels.
FINAL_METRICS: dict[str, str] = {
    "dice": "Dice",
    "jaccard": "Jaccard",
    "hd95": "HD95 (mm)",
    "nsd2mm": "NSD@2mm",
    "mae": "MAE",
    "abs_vol_err_ml": "abs vol err (mL)",
    "legacy_row_hd": "legacy row-HD (authors', unitless)",
}
#: Metrics shown per round (Table-5 layout).
ROUND_METRICS: tuple[str, ...] = ("dice", "jaccard", "hd95", "nsd2mm", "mae", "legacy_row_hd")
#: Metrics compared with the reference method by paired t-tests.
TEST_METRICS: tuple[str, ...] = ("dice", "jaccard", "hd95", "nsd2mm", "abs_vol_err_ml", "mae")
NOC_THRESHOLDS: tuple[float, ...] = (0.80, 0.85, 0.90)


def _command_block(command: str) -> str:
    return "```bash\n" + command.strip() + "\n```\n"


def _present(df: pd.DataFrame, metrics: Sequence[str]) -> list[str]:
    return [m for m in metrics if m in df.columns and df[m].notna().any()]


def paired_tests(
    df: pd.DataFrame, reference: str, metrics: Sequence[str] = TEST_METRICS
) -> pd.DataFrame:
    """Paired t-tests (final round) of every method against ``reference``, per metric.

    Cases are paired on ``(fold, case_id)``; pairs with a NaN on either side are dropped and
    counted. ``p_bonferroni`` multiplies by the number of tests in the returned table.
    """
    d = at_round(validate_results(df, metrics), "final")
    methods = methods_in_order(d)
    if reference not in methods:
        raise ConfigError(f"reference method {reference!r} is not in the results {methods}")
    rows: list[dict[str, object]] = []
    for metric in metrics:
        wide = d.set_index(["fold", "case_id", "method"])[metric].unstack("method")
        wide = wide.reindex(columns=methods)
        values = {m: wide[m].to_numpy(dtype=float) for m in methods}
        with warnings.catch_warnings():  # scipy warns on (near-)identical pairs; p is still set
            warnings.simplefilter("ignore", RuntimeWarning)
            compared = compare_to_reference(values, reference, "ttest")
        for r in compared:
            rows.append({"metric": metric, **r})
    out = pd.DataFrame(rows)
    if not out.empty:
        out["p_bonferroni"] = bonferroni(out["p_raw"].to_numpy(dtype=float))
    return out


def timing_table(df: pd.DataFrame) -> pd.DataFrame:
    """Seconds per interaction round per method (rows with prompts only)."""
    d = validate_results(df, ["seconds"])
    if "n_prompts" in d.columns:
        d = d[pd.to_numeric(d["n_prompts"], errors="coerce").fillna(1) > 0]
    methods = methods_in_order(d)
    table = pd.DataFrame(index=pd.Index(methods, name="method"))
    g = d.groupby("method", sort=False)["seconds"]
    table["rounds"] = g.size().reindex(methods).astype(int)
    table["mean s"] = g.mean().reindex(methods)
    table["median s"] = g.median().reindex(methods)
    table["p95 s"] = g.quantile(0.95).reindex(methods)
    table["max s"] = g.max().reindex(methods)
    if "set_volume_seconds" in d.columns:
        per_case = d.groupby(["method", "fold", "case_id"], sort=False)[
            "set_volume_seconds"
        ].first()
        table["set_volume s"] = per_case.groupby(level=0).mean().reindex(methods)
    return table


def volume_agreement(
    df: pd.DataFrame, pred_col: str = "vol_pred_ml", gt_col: str = "vol_gt_ml"
) -> pd.DataFrame:
    """Per method, on each case's final round: Bland–Altman bias, SD and 95 % limits of
    agreement of predicted minus GT volume (mL), and ICC(2,1) with its 95 % CI and p-value.

    Cases with a NaN volume are dropped and counted (``n_dropped``).
    """
    d = at_round(validate_results(df, [pred_col, gt_col]), "final")
    rows = []
    for method in methods_in_order(d):
        dm = d[d["method"] == method]
        pred = dm[pred_col].to_numpy(dtype=float)
        gt = dm[gt_col].to_numpy(dtype=float)
        ba = bland_altman(pred, gt)
        icc = icc_agreement(pred, gt)
        rows.append(
            {
                "method": method,
                "n": ba.n,
                "n_dropped": ba.n_dropped,
                "bias_ml": ba.bias,
                "sd_ml": ba.sd,
                "loa_lo_ml": ba.loa_lo,
                "loa_hi_ml": ba.loa_hi,
                "icc_2_1": icc.icc,
                "icc_ci_lo": icc.lo,
                "icc_ci_hi": icc.hi,
                "icc_p": icc.pvalue,
            }
        )
    return pd.DataFrame(rows).set_index("method")


def method_file_name(method: str) -> str:
    """``method`` made safe for a file name (anything but letters, digits, ``_.-`` -> ``_``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", method).strip("._") or "method"


def _overlay(kept: Mapping[str, object], methods: list[str], path: Path) -> Path | None:
    from ichseg.evaluation.plots import pick_slices, plot_overlay_comparison

    images, gts, labels = [], [], []
    preds: dict[str, list[np.ndarray]] = {}
    cases = [k for k in kept.values() if all(m in k.preds for m in methods)]  # type: ignore[attr-defined]
    shown = [m for m in methods if cases]
    if not cases or not shown:
        return None
    for case in cases:
        for k in pick_slices(case.gt, 2):  # type: ignore[attr-defined]
            images.append(case.image01[:, :, k])  # type: ignore[attr-defined]
            gts.append(case.gt[:, :, k])  # type: ignore[attr-defined]
            labels.append(f"case {case.case_id}, slice {k}")  # type: ignore[attr-defined]
            for m in shown:
                preds.setdefault(m, []).append(case.preds[m][:, :, k])  # type: ignore[attr-defined]
    return plot_overlay_comparison(images, gts, preds, path, (0.0, 1.0), row_labels=labels)


def _describe_run(d: pd.DataFrame) -> list[str]:
    lines = []
    n_cases = d[["fold", "case_id"]].drop_duplicates().shape[0]
    folds = sorted(pd.unique(d["fold"]).tolist())
    lines.append(f"- cases: {n_cases} (folds: {', '.join(str(f) for f in folds)})")
    lines.append(f"- methods: {', '.join(methods_in_order(d))}")
    lines.append(f"- rounds: up to {int(d['round'].max())}")
    for col, what in (("mode", "clinician prompts"), ("start_rule", "round-1 slice rule")):
        if col in d.columns:
            vals = ", ".join(str(v) for v in pd.unique(d[col].dropna()))
            lines.append(f"- {what}: {vals}")
    if "clinician_stop" in d.columns:
        stops = d[d["clinician_stop"].astype(bool)]
        n = stops[["method", "fold", "case_id"]].drop_duplicates().shape[0]
        lines.append(f"- case runs stopped early by the clinician (perfect mask): {n}")
    if "vol_gt_ml" in d.columns:
        empty = d[pd.to_numeric(d["vol_gt_ml"], errors="coerce") == 0]
        n = empty[["fold", "case_id"]].drop_duplicates().shape[0]
        if n:
            lines.append(f"- cases without hemorrhage included (Dice 1 if left empty): {n}")
    return lines


def write_report(
    df: pd.DataFrame,
    out_dir: str | Path,
    *,
    command: str,
    reference_method: str | None = None,
    kept: Mapping[str, object] | None = None,
    title: str = "Interactive segmentation evaluation",
    n_resamples: int = 5000,
    seed: int = 47,
) -> dict[str, Path]:
    """Write the CSV, Markdown and PNG outputs of a run (see module docstring); returns paths.

    ``reference_method`` defaults to the first method in the frame; ``kept`` holds final masks
    (:class:`~ichseg.evaluation.interactive.KeptCase` by case id) for the overlay figure.
    """
    if not isinstance(command, str) or not command.strip():
        raise ConfigError("write_report needs the command that produced the results")
    metric_cols = [m for m in FINAL_METRICS if m in df.columns]
    d = validate_results(df, metric_cols)
    if "dice" not in d.columns:
        raise ConfigError("results frame has no 'dice' column")
    methods = methods_in_order(d)
    reference = reference_method if reference_method is not None else methods[0]
    if reference not in methods:
        raise ConfigError(f"reference method {reference!r} is not in the results {methods}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    max_round = int(d["round"].max())

    paths["results"] = out / "results.csv"
    d.to_csv(paths["results"], index=False)

    final_metrics = _present(d, list(FINAL_METRICS))
    t1 = table_methods(d, final_metrics, "final", n_resamples=n_resamples, seed=seed)
    t1 = t1.rename(columns=FINAL_METRICS)
    summary = summarize_methods(d, final_metrics, "final", n_resamples=n_resamples, seed=seed)
    paths["table_final"] = out / "table_final.csv"
    summary.to_csv(paths["table_final"], index=False)

    round_metrics = _present(d, ROUND_METRICS)
    per_round = {m: table_rounds(d, m) for m in round_metrics}
    long = pd.concat(
        [t.reset_index().assign(metric=m) for m, t in per_round.items()], ignore_index=True
    )
    paths["table_rounds"] = out / "table_rounds.csv"
    long[["metric", "method", *[c for c in long.columns if c.startswith("round ")]]].to_csv(
        paths["table_rounds"], index=False
    )

    t_noc = noc(d, NOC_THRESHOLDS, max_rounds=max_round)
    paths["noc"] = out / "noc.csv"
    t_noc.to_csv(paths["noc"])

    t_time = timing_table(d)
    paths["timing"] = out / "timing.csv"
    t_time.to_csv(paths["timing"])

    tests = pd.DataFrame()
    if len(methods) > 1:
        tests = paired_tests(d, reference, _present(d, TEST_METRICS))
        paths["paired_tests"] = out / "paired_tests.csv"
        tests.to_csv(paths["paired_tests"], index=False)

    from ichseg.evaluation.plots import plot_metric_vs_round, plot_volume_agreement

    paths["dice_vs_round"] = plot_metric_vs_round(
        d, "dice", out / "dice_vs_round.png", n_resamples=min(n_resamples, 2000)
    )
    agreement = pd.DataFrame()
    per_method_png: dict[str, str] = {}
    if {"vol_pred_ml", "vol_gt_ml"} <= set(d.columns):
        from ichseg.evaluation.plots import plot_method_volume_agreement

        paths["volume_agreement"] = out / "volume_agreement.png"
        plot_volume_agreement(d, paths["volume_agreement"])
        agreement = volume_agreement(d)
        paths["volume_agreement_table"] = out / "volume_agreement.csv"
        agreement.to_csv(paths["volume_agreement_table"])
        final = at_round(d, "final")
        for method in agreement.index:
            dm = final[final["method"] == method]
            name = f"volume_agreement_{method_file_name(str(method))}.png"
            paths[f"volume_agreement[{method}]"] = out / name
            plot_method_volume_agreement(
                dm["vol_pred_ml"].to_numpy(dtype=float),
                dm["vol_gt_ml"].to_numpy(dtype=float),
                out / name,
                method=str(method),
            )
            per_method_png[str(method)] = name
    if kept:
        overlay = _overlay(kept, methods, out / "overlay.png")
        if overlay is not None:
            paths["overlay"] = overlay

    md = [_command_block(command), f"# {title}", "", *_describe_run(d), ""]
    md += [
        "## Final round (Table-1 layout)",
        "",
        "Each case's last round; `mean ± std` over folds of the per-fold case means, `[lo, hi]` "
        f"95 % bootstrap CI of the mean over cases ({n_resamples} resamples, seed {seed}); "
        "`(NaN: k)` counts undefined values (e.g. HD95 with an empty prediction). HD95 in mm "
        "on the original voxel grid; NSD at 2 mm tolerance; MAE of the probabilities over all "
        "voxels; abs vol err = absolute volume error. The *legacy* column is the ICH-HPINet authors' "
        "per-slice row-HD, not a Hausdorff distance, shown only for comparison with the paper.",
        "",
        to_markdown(t1),
        "## Metric after each round (Table-5 layout)",
        "",
        "Mean over folds of the per-fold case means; a case that stopped early keeps its last "
        "values.",
        "",
    ]
    for m, t in per_round.items():
        md += [f"### {FINAL_METRICS.get(m, m)}", "", to_markdown(t)]
    md += [
        "## Rounds to reach a Dice threshold (NoC)",
        "",
        f"Mean rounds to reach Dice ≥ t; a case that never does counts as {max_round} and in "
        "`failed@t`.",
        "",
        to_markdown(t_noc, 2),
    ]
    if len(methods) > 1:
        md += [
            f"## Paired t-tests against `{reference}` (final round)",
            "",
            "Per-case pairs on (fold, case_id), two-sided paired t-test; `p_bonferroni` = "
            f"min(1, p × {int(tests['p_raw'].notna().sum()) if not tests.empty else 0}) over "
            "all tests in this table.",
            "",
        ]
        if not tests.empty:
            cols = ["metric", "method", "n", "n_dropped", "mean_method", "mean_reference"]
            cols += ["mean_diff", "statistic", "p_raw", "p_bonferroni"]
            md.append(to_markdown(tests[cols].set_index("metric"), 4))
    md += ["## Time per interaction round (seconds)", "", to_markdown(t_time, 3)]
    if not agreement.empty:
        md += [
            "## Volume agreement (final round)",
            "",
            "Predicted against ground-truth volume (mL) at each case's final round. Bland–Altman: "
            "bias = mean of predicted - GT, 95 % limits of agreement = bias ± 1.96 SD. ICC(2,1): "
            "two-way random effects, absolute agreement, single measure (Shrout & Fleiss 1979), "
            "from the two-way ANOVA; 95 % CI of McGraw & Wong (1996).",
            "",
        ]
        rows = pd.DataFrame(
            {
                "n": agreement["n"].astype(int),
                "bias mL": agreement["bias_ml"],
                "LoA low mL": agreement["loa_lo_ml"],
                "LoA high mL": agreement["loa_hi_ml"],
                "ICC(2,1)": agreement["icc_2_1"].map(lambda v: f"{v:.3f}"),
                "ICC 95% CI": [
                    f"[{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else "–"
                    for lo, hi in zip(agreement["icc_ci_lo"], agreement["icc_ci_hi"], strict=True)
                ],
            },
            index=agreement.index,
        )
        md += [to_markdown(rows, 2), "![volume agreement](volume_agreement.png)", ""]
        for method, name in per_method_png.items():
            md += [f"![volume agreement, {method}]({name})", ""]
    md += ["## Figures", "", "![Dice per round](dice_vs_round.png)", ""]
    if "overlay" in paths:
        md += ["![final masks](overlay.png)", ""]
    paths["report"] = out / "report.md"
    paths["report"].write_text("\n".join(md), encoding="utf-8")
    return paths


def format_summary(df: pd.DataFrame) -> pd.DataFrame:
    """A compact per-method summary (final round means, NoC@0.85, mean s/round) for printing."""
    d = validate_results(df, _present(df, ["dice", "hd95", "nsd2mm", "abs_vol_err_ml"]))
    final = at_round(d, "final")
    methods = methods_in_order(d)
    out = pd.DataFrame(index=pd.Index(methods, name="method"))
    out["cases"] = final.groupby("method", sort=False).size().reindex(methods)
    for col in ("dice", "hd95", "nsd2mm", "abs_vol_err_ml"):
        if col in final.columns:
            out[col] = final.groupby("method", sort=False)[col].mean().reindex(methods)
    max_round = int(d["round"].max())
    out["NoC@85"] = noc(d, (0.85,), max_rounds=max_round)["NoC@85"].reindex(methods)
    if "seconds" in d.columns:
        out["s/round"] = timing_table(d)["mean s"].reindex(methods)
    return out.replace({math.inf: np.nan})
