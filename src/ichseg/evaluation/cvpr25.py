"""The CVPR 2025 interactive 3D segmentation challenge protocol: its metrics and its files.

The challenge ("Foundation Models for Interactive 3D Biomedical Image Segmentation", CVPR 2025)
evaluates a method on each case with a bounding box and then up to 5 clicks, each placed by a
robot at the centre of the largest error of the current prediction, and ranks by the area under
the Dice and NSD curves over those clicks, the final Dice and NSD and the run time.
``ichseg evaluate --protocol cvpr25`` (``evaluate_interactive(protocol="cvpr25")``) runs it with
:class:`~ichseg.interaction.simulated_user.Cvpr25Clinician`:

* **Round 1**: the tight 2D :class:`~ichseg.interaction.prompts.Box` of the ground truth on the
  slice with the largest GT area (``--cvpr25-box``, default; ``--no-cvpr25-box`` leaves it out)
  **plus** the first click; every later round one more click, up to ``N`` = 5 clicks in all
  (``--rounds``). The session keeps all earlier prompts and hands the engine the previous
  prediction, as the challenge's ``prev_pred``.
* **Click rule** (:func:`~ichseg.interaction.simulated_user.largest_error_click`): the error
  ``FN | FP`` of the current prediction on the canonical grid, its 26-connected 3D components,
  the largest one, and in it the voxel with the largest Euclidean distance (mm, with the voxel
  spacing) to the component's outside; positive click if that voxel is a false negative,
  negative if it is a false positive. An exact prediction gets no click and the case stops (its
  last values are carried to the remaining interactions).
* **Metrics** per case, after interaction ``i = 1..N``: Dice and NSD at 2 mm tolerance on the
  original voxel grid (:func:`~ichseg.evaluation.metrics.evaluate_case`); as in the challenge's
  script, NSD counts as 0 when Dice <= 0.2 (:data:`NSD_MIN_DICE`). ``DSC_AUC`` / ``NSD_AUC`` are
  the trapezoid areas under the curve over interactions ``1..N`` with unit steps
  (:func:`interaction_auc`), **not normalised**, as the challenge reports them (at most
  ``N - 1`` = 4); ``DSC_AUC_norm`` / ``NSD_AUC_norm`` divide by ``N - 1`` (in [0, 1]).
  ``DSC_final`` / ``NSD_final`` are the values after interaction ``N``; ``s/interaction`` is the
  mean wall time of one session round (the engine's per-scan encoding, ``set_volume``, is
  reported apart as ``set_volume s``). NoC@85 / NoC@90 use a cap of
  :data:`~ichseg.evaluation.tables.NOC_CAP` = 20 interactions; with only ``N`` < 20 run, an
  unreached case counts as ``N + 1`` (:mod:`ichseg.evaluation.tables`).

Deviations from the challenge, and why:

* The challenge's first prediction uses the box alone, its AUC then covers the 5 click
  predictions only. ichseg's engines need a positive prompt (a box gives background hints only,
  :mod:`ichseg.interaction.hints`), so the box comes with the first click and the 5 predictions
  are those after clicks 1..5 with the box in effect from the start; the AUC covers the same 5
  points. Without the box this is exactly the challenge's no-box setting.
* The challenge's box is the middle slice's 2D box plus the object's top and bottom slices; a
  :class:`~ichseg.interaction.prompts.Box` is 2D, on the largest-area slice, with no z extent.
* The challenge's click search measures distances in voxels and draws one of several maximal
  voxels at random (seed 42); ichseg measures in mm with the voxel spacing (slices are ~10x
  thicker than pixels on head CT, so voxel units would favour the slice direction) and takes
  the first maximal voxel in ``(z, y, x)`` order (deterministic without a random draw). A click
  is a disc of 2 px on its slice (the session's default) rather than a single voxel.
* Single class (hemorrhage), so no averaging over classes; the time is ichseg's round time on
  a loaded scan, not the challenge's container run time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ichseg.errors import ConfigError
from ichseg.evaluation.tables import (
    NOC_CAP,
    at_round,
    methods_in_order,
    noc,
    to_markdown,
    validate_results,
)

N_CLICKS = 5  #: the challenge's number of clicks (interactions)
NSD_MIN_DICE = 0.2  #: the challenge's script scores NSD as 0 when Dice <= this
NOC_THRESHOLDS: tuple[float, ...] = (0.85, 0.90)
#: files :func:`write_cvpr25` writes into the output folder
CVPR25_FILES: tuple[str, ...] = ("cvpr25.csv", "cvpr25_cases.csv", "cvpr25.md")


def interaction_auc(values: Sequence[float], *, normalise: bool = False) -> float:
    """Trapezoid area under a metric-vs-interaction curve sampled at interactions ``1..N``.

    Unit steps between interactions, as the challenge: ``sum_i (v_i + v_{i+1}) / 2`` for
    ``i = 1..N-1`` (at most ``N - 1`` for values in [0, 1]). ``normalise`` divides by ``N - 1``
    (a curve at constant ``v`` then gives ``v``); with ``N = 1`` the area is 0 and the
    normalised value is ``v_1``. NaN if any value is NaN.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ConfigError("interaction_auc needs at least one value")
    if np.isnan(v).any():
        return math.nan
    if v.size == 1:
        return float(v[0]) if normalise else 0.0
    area = float(((v[1:] + v[:-1]) / 2.0).sum())
    return area / (v.size - 1) if normalise else area


def challenge_nsd(dice: float, nsd: float, min_dice: float | None = NSD_MIN_DICE) -> float:
    """NSD as the challenge scores it: 0 when ``dice <= min_dice`` (``None``: unchanged)."""
    if min_dice is not None and not math.isnan(dice) and dice <= min_dice:
        return 0.0
    return float(nsd)


def _interactions(d: pd.DataFrame, n_interactions: int | None) -> int:
    n = int(d["round"].max()) if n_interactions is None else n_interactions
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ConfigError(f"n_interactions must be an integer >= 1, got {n_interactions!r}")
    return int(n)


def case_table(
    results: pd.DataFrame,
    n_interactions: int | None = None,
    *,
    nsd_min_dice: float | None = NSD_MIN_DICE,
) -> pd.DataFrame:
    """Per (method, fold, case): the Dice/NSD curve over interactions ``1..N`` and its scores.

    ``n_interactions`` = ``N`` (default: the largest round in ``results``). A case that stopped
    early keeps its last values (:func:`~ichseg.evaluation.tables.at_round`). Columns: method,
    fold, case_id, ``interactions`` (rounds it ran), ``box`` (a box was given), ``dsc_1..N``,
    ``nsd_1..N`` (challenge NSD, see :func:`challenge_nsd`), ``dsc_auc``, ``nsd_auc``,
    ``dsc_auc_norm``, ``nsd_auc_norm``, ``dsc_final``, ``nsd_final``, ``seconds`` (mean per
    round) and ``set_volume_seconds``.
    """
    d = validate_results(results, ["dice", "nsd2mm"])
    n = _interactions(d, n_interactions)
    keys = ["method", "fold", "case_id"]
    out = d[keys].drop_duplicates().reset_index(drop=True)
    g = d.groupby(keys, sort=False)
    out = out.join(g.size().rename("interactions"), on=keys)
    box = d["box"].astype(bool) if "box" in d.columns else pd.Series(False, index=d.index)
    out = out.join(box.groupby([d[k] for k in keys], sort=False).any().rename("box"), on=keys)
    for r in range(1, n + 1):
        at = at_round(d, r).set_index(keys)
        dice = at["dice"].reindex(pd.MultiIndex.from_frame(out[keys]))
        nsd = at["nsd2mm"].reindex(pd.MultiIndex.from_frame(out[keys]))
        out[f"dsc_{r}"] = dice.to_numpy(dtype=float)
        out[f"nsd_{r}"] = [
            challenge_nsd(a, b, nsd_min_dice) for a, b in zip(dice, nsd, strict=True)
        ]
    dsc_cols = [f"dsc_{r}" for r in range(1, n + 1)]
    nsd_cols = [f"nsd_{r}" for r in range(1, n + 1)]
    for name, cols in (("dsc", dsc_cols), ("nsd", nsd_cols)):
        curves = out[cols].to_numpy(dtype=float)
        out[f"{name}_auc"] = [interaction_auc(c) for c in curves]
        out[f"{name}_auc_norm"] = [interaction_auc(c, normalise=True) for c in curves]
        out[f"{name}_final"] = curves[:, -1]
    for col in ("seconds", "set_volume_seconds"):
        if col in d.columns:
            secs = pd.to_numeric(d[col], errors="coerce")
            out = out.join(
                secs.groupby([d[k] for k in keys], sort=False).mean().rename(col), on=keys
            )
    out.attrs["n_interactions"] = n
    return out


def summary_table(
    results: pd.DataFrame,
    n_interactions: int | None = None,
    *,
    nsd_min_dice: float | None = NSD_MIN_DICE,
    noc_cap: int = NOC_CAP,
) -> pd.DataFrame:
    """Per method: the challenge's scores (means over cases) plus NoC@85/90 (cap ``noc_cap``).

    Columns: ``cases``, ``DSC_AUC``, ``NSD_AUC``, ``DSC_AUC_norm``, ``NSD_AUC_norm``,
    ``DSC_final``, ``NSD_final``, ``NoC@85``, ``failed@85``, ``NoC@90``, ``failed@90``,
    ``s/interaction`` (mean over all rounds run) and ``set_volume s`` (mean over cases).
    """
    d = validate_results(results, ["dice", "nsd2mm"])
    n = _interactions(d, n_interactions)
    cases = case_table(d, n, nsd_min_dice=nsd_min_dice)
    methods = methods_in_order(d)
    g = cases.groupby("method", sort=False)
    table = pd.DataFrame(index=pd.Index(methods, name="method"))
    table["cases"] = g.size().reindex(methods).astype(int)
    for col, src in (
        ("DSC_AUC", "dsc_auc"),
        ("NSD_AUC", "nsd_auc"),
        ("DSC_AUC_norm", "dsc_auc_norm"),
        ("NSD_AUC_norm", "nsd_auc_norm"),
        ("DSC_final", "dsc_final"),
        ("NSD_final", "nsd_final"),
    ):
        table[col] = g[src].mean().reindex(methods).astype(float)
    t_noc = noc(d[d["round"] <= n], NOC_THRESHOLDS, max_rounds=n, cap=noc_cap)
    for col in t_noc.columns:
        if col != "n_cases":
            table[col] = t_noc[col].reindex(methods)
    if "seconds" in d.columns:
        secs = pd.to_numeric(d["seconds"], errors="coerce")
        table["s/interaction"] = secs.groupby(d["method"], sort=False).mean().reindex(methods)
    if "set_volume_seconds" in cases.columns:
        table["set_volume s"] = g["set_volume_seconds"].mean().reindex(methods)
    table.attrs.update(n_interactions=n, **t_noc.attrs)
    return table


def curve_table(
    results: pd.DataFrame,
    metric: str = "dsc",
    n_interactions: int | None = None,
    *,
    nsd_min_dice: float | None = NSD_MIN_DICE,
) -> pd.DataFrame:
    """Mean ``dsc`` or ``nsd`` (challenge NSD) after each interaction, methods x interactions."""
    if metric not in ("dsc", "nsd"):
        raise ConfigError(f"metric must be 'dsc' or 'nsd', got {metric!r}")
    cases = case_table(results, n_interactions, nsd_min_dice=nsd_min_dice)
    n = cases.attrs["n_interactions"]
    methods = methods_in_order(cases)
    cols = [f"{metric}_{r}" for r in range(1, n + 1)]
    table = cases.groupby("method", sort=False)[cols].mean().reindex(methods)
    table.columns = [f"{r}" for r in range(1, n + 1)]
    table.index.name = "method"
    return table


def _command_block(command: str) -> str:
    return "\n".join(["Produced by:", "", "```bash", command.strip(), "```", ""])


def write_cvpr25(
    results: pd.DataFrame,
    out_dir: str | Path,
    command: str,
    n_interactions: int | None = None,
    *,
    nsd_min_dice: float | None = NSD_MIN_DICE,
) -> dict[str, Path]:
    """Write ``cvpr25.csv`` (per method, :func:`summary_table`), ``cvpr25_cases.csv`` (per
    case, :func:`case_table`) and ``cvpr25.md`` into ``out_dir``; returns their paths."""
    if not command.strip():
        raise ConfigError("write_cvpr25 needs the command that produced the results")
    d = validate_results(results, ["dice", "nsd2mm"])
    n = _interactions(d, n_interactions)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summary_table(d, n, nsd_min_dice=nsd_min_dice)
    cases = case_table(d, n, nsd_min_dice=nsd_min_dice)
    paths = {"cvpr25": out / "cvpr25.csv", "cvpr25_cases": out / "cvpr25_cases.csv"}
    summary.to_csv(paths["cvpr25"])
    cases.to_csv(paths["cvpr25_cases"], index=False)

    boxes = bool(cases["box"].any())
    n_cases = int(summary["cases"].max())
    unreached = summary.attrs.get("unreached_counts_as")
    cap = summary.attrs.get("noc_cap")
    md = [
        _command_block(command),
        "## CVPR 2025 challenge protocol",
        "",
        f"- {n_cases} case(s), {len(summary)} method(s), up to {n} interactions (clicks) per case",
        "- round 1: "
        + (
            "the tight 2D box of the ground truth on its largest-area slice plus the first click"
            if boxes
            else "the first click only (no box)"
        ),
        "- each click: centre (largest distance in mm to the outside) of the largest "
        "26-connected 3D error component of the current prediction; positive on a false "
        "negative, negative on a false positive",
        "",
        to_markdown(summary, 3),
        "`DSC_AUC` / `NSD_AUC`: trapezoid area under the curve over interactions "
        f"1..{n} with unit steps, not normalised (at most {max(n - 1, 0)}), as the challenge "
        f"reports them; `_norm` divides by {max(n - 1, 1)}. NSD at 2 mm tolerance on the "
        "original voxel grid, "
        + (
            f"scored 0 when Dice <= {nsd_min_dice:g} (the challenge's rule). "
            if nsd_min_dice is not None
            else "without the challenge's Dice floor. "
        )
        + f"NoC@t: interactions to reach Dice >= t with a cap of {cap}; a case that never does "
        f"counts as {unreached} and in `failed@t`"
        + (f" (only {n} interactions were run, so NoC is a lower bound)." if n < NOC_CAP else ".")
        + " `s/interaction`: mean wall time of one round; `set_volume s`: the per-scan encoding.",
        "",
        "### Dice after each interaction",
        "",
        to_markdown(curve_table(d, "dsc", n, nsd_min_dice=nsd_min_dice), 3),
        "### NSD (challenge scoring) after each interaction",
        "",
        to_markdown(curve_table(d, "nsd", n, nsd_min_dice=nsd_min_dice), 3),
        "Deviations from the challenge (first prediction with box and click together, 2D box "
        "without z extent, distances in mm, deterministic ties, 2 px click discs) are listed in "
        "`ichseg.evaluation.cvpr25`.",
        "",
    ]
    paths["cvpr25_md"] = out / "cvpr25.md"
    paths["cvpr25_md"].write_text("\n".join(md), encoding="utf-8")
    return paths


def format_cvpr25(summary: pd.DataFrame) -> list[tuple[str, dict[str, Any]]]:
    """``(method, {column: value})`` pairs of the headline columns, for printing."""
    cols = ["DSC_AUC", "NSD_AUC", "DSC_final", "NSD_final", "s/interaction"]
    return [
        (str(m), {c: float(row[c]) for c in cols if c in summary.columns})
        for m, row in summary.iterrows()
    ]
