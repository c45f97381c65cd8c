"""Result figures (matplotlib, Agg backend, no display needed).

* :func:`plot_metric_vs_round` – mean metric per interaction round with a 95 % bootstrap band.
* :func:`plot_volume_agreement` – Bland–Altman plot of predicted vs ground-truth volume (mL).
* :func:`plot_method_volume_agreement` – one method: predicted vs GT scatter with ICC(2,1) and
  its Bland–Altman plot.
* :func:`plot_overlay_comparison` – paper Fig. 2 style grid: rows = slices, columns = image, GT,
  each method. Slices are ``(i, j)`` arrays of a canonical LPS volume and are drawn as
  ``slice.T`` (radiological convention: patient's right on the left, anterior at the top).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ichseg.errors import ConfigError, DimensionalityError, GeometryError
from ichseg.evaluation.metrics import as_mask, dice
from ichseg.evaluation.statistics import (
    ICC,
    BlandAltman,
    bland_altman,
    bootstrap_ci,
    icc_agreement,
)
from ichseg.evaluation.tables import at_round, methods_in_order, validate_results
from ichseg.io.volume import Window

_COLORS = plt.get_cmap("tab10").colors


def _save(fig: plt.Figure, out_png: str | Path, dpi: int) -> Path:
    p = Path(out_png)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return p


def plot_metric_vs_round(
    df: pd.DataFrame,
    metric: str,
    out_png: str | Path,
    *,
    title: str | None = None,
    n_resamples: int = 2000,
    dpi: int = 150,
) -> Path:
    """Mean ``metric`` after each round per method, with a 95 % bootstrap CI band over cases.

    A case's value at round r is its last result at or before r (see
    :mod:`ichseg.evaluation.tables`). Returns the PNG path.
    """
    d = validate_results(df, [metric])
    rounds = list(range(1, int(d["round"].max()) + 1))
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for n, method in enumerate(methods_in_order(d)):
        dm = d[d["method"] == method]
        mean, lo, hi = [], [], []
        for r in rounds:
            ci = bootstrap_ci(at_round(dm, r)[metric].to_numpy(), n_resamples=n_resamples)
            mean.append(ci.mean)
            lo.append(ci.lo)
            hi.append(ci.hi)
        color = _COLORS[n % len(_COLORS)]
        ax.plot(rounds, mean, marker="o", ms=3, color=color, label=method)
        ax.fill_between(rounds, lo, hi, color=color, alpha=0.2, linewidth=0)
    ax.set_xlabel("interaction round")
    ax.set_ylabel(metric)
    ax.set_xticks(rounds)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or f"{metric} per round (mean, 95% bootstrap CI)")
    return _save(fig, out_png, dpi)


def plot_volume_agreement(
    df: pd.DataFrame,
    out_png: str | Path,
    *,
    pred_col: str = "vol_pred_ml",
    gt_col: str = "vol_gt_ml",
    round: int | str = "final",
    title: str | None = None,
    dpi: int = 150,
) -> dict[str, BlandAltman]:
    """Bland–Altman plot (one panel per method) of predicted vs GT volume in mL.

    x = mean of the two volumes, y = predicted - GT, with the bias and 95 % limits of agreement.
    Writes ``out_png`` and returns the agreement statistics per method.
    """
    d = at_round(validate_results(df, [pred_col, gt_col]), round)  # type: ignore[arg-type]
    methods = methods_in_order(d)
    fig, axes = plt.subplots(
        1, len(methods), figsize=(4.2 * len(methods), 3.6), squeeze=False, sharey=True
    )
    stats_by_method: dict[str, BlandAltman] = {}
    for n, (ax, method) in enumerate(zip(axes[0], methods, strict=True)):
        dm = d[d["method"] == method]
        pred = dm[pred_col].to_numpy(dtype=float)
        gt = dm[gt_col].to_numpy(dtype=float)
        ba = bland_altman(pred, gt)
        stats_by_method[method] = ba
        ax.scatter((pred + gt) / 2.0, pred - gt, s=12, color=_COLORS[n % len(_COLORS)], alpha=0.8)
        ax.axhline(ba.bias, color="k", lw=1, label=f"bias {ba.bias:+.2f} mL")
        if np.isfinite(ba.sd):
            for v in (ba.loa_lo, ba.loa_hi):
                ax.axhline(v, color="k", lw=0.8, ls="--")
            ax.plot(
                [], [], color="k", ls="--", lw=0.8, label=f"LoA [{ba.loa_lo:.2f}, {ba.loa_hi:.2f}]"
            )
        ax.axhline(0.0, color="grey", lw=0.5)
        ax.set_title(f"{method} (n={ba.n})", fontsize=9)
        ax.set_xlabel("mean of predicted and GT volume (mL)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("predicted - GT volume (mL)")
    fig.suptitle(title or "Volume agreement (Bland–Altman)", fontsize=10)
    _save(fig, out_png, dpi)
    return stats_by_method


def plot_method_volume_agreement(
    pred_ml: Sequence[float] | np.ndarray,
    gt_ml: Sequence[float] | np.ndarray,
    out_png: str | Path,
    *,
    method: str,
    dpi: int = 150,
) -> tuple[BlandAltman, ICC]:
    """One method's volume agreement: predicted vs GT scatter with the identity line and
    ICC(2,1) (left), Bland–Altman plot with bias and 95 % limits of agreement (right).

    Pairs with a NaN are dropped (and counted in the returned statistics). Writes ``out_png``.
    """
    pred = np.asarray(pred_ml, dtype=float).ravel()
    gt = np.asarray(gt_ml, dtype=float).ravel()
    if pred.shape != gt.shape:
        raise ConfigError(f"predicted and GT volumes differ in length: {pred.size} vs {gt.size}")
    ba = bland_altman(pred, gt)
    icc = icc_agreement(pred, gt)
    ok = ~(np.isnan(pred) | np.isnan(gt))
    p, g = pred[ok], gt[ok]
    fig, (ax_s, ax_b) = plt.subplots(1, 2, figsize=(8.6, 3.8))
    ax_s.scatter(g, p, s=14, color=_COLORS[0], alpha=0.8)
    top = float(max(p.max(), g.max())) * 1.05 if p.size else 1.0
    ax_s.plot([0, top], [0, top], color="grey", lw=0.8, ls="--", label="identity")
    ax_s.set_xlim(0, top)
    ax_s.set_ylim(0, top)
    ax_s.set_aspect("equal")
    ax_s.set_xlabel("ground-truth volume (mL)")
    ax_s.set_ylabel("predicted volume (mL)")
    icc_text = (
        f"ICC(2,1) {icc.icc:.3f} [{icc.lo:.3f}, {icc.hi:.3f}]"
        if np.isfinite(icc.lo)
        else f"ICC(2,1) {icc.icc:.3f}"
    )
    ax_s.set_title(icc_text, fontsize=9)
    ax_s.legend(fontsize=7, loc="upper left")
    ax_s.grid(alpha=0.3)
    ax_b.scatter((p + g) / 2.0, p - g, s=14, color=_COLORS[0], alpha=0.8)
    ax_b.axhline(ba.bias, color="k", lw=1, label=f"bias {ba.bias:+.2f} mL")
    if np.isfinite(ba.sd):
        for v in (ba.loa_lo, ba.loa_hi):
            ax_b.axhline(v, color="k", lw=0.8, ls="--")
        ax_b.plot(
            [], [], color="k", ls="--", lw=0.8, label=f"95% LoA [{ba.loa_lo:.2f}, {ba.loa_hi:.2f}]"
        )
    ax_b.axhline(0.0, color="grey", lw=0.5)
    ax_b.set_xlabel("mean of predicted and GT volume (mL)")
    ax_b.set_ylabel("predicted - GT volume (mL)")
    ax_b.set_title(f"Bland–Altman (n={ba.n})", fontsize=9)
    ax_b.legend(fontsize=7)
    ax_b.grid(alpha=0.3)
    fig.suptitle(f"{method}: volume agreement, final round", fontsize=10)
    fig.tight_layout()
    _save(fig, out_png, dpi)
    return ba, icc


def _as_slices(x: np.ndarray | Sequence[np.ndarray], name: str) -> list[np.ndarray]:
    if isinstance(x, np.ndarray):
        if x.ndim == 2:
            return [x]
        if x.ndim == 3:
            return [x[n] for n in range(x.shape[0])]
        raise DimensionalityError(f"{name} must be 2D slices or (n, I, J), got shape {x.shape}")
    out = [np.asarray(s) for s in x]
    for s in out:
        if s.ndim != 2:
            raise DimensionalityError(f"every {name} slice must be 2D (i, j), got shape {s.shape}")
    return out


def pick_slices(gt_ijk: np.ndarray, n: int = 3) -> list[int]:
    """Indices ``k`` of the ``n`` axial slices with the largest GT area (sorted ascending)."""
    g = as_mask(gt_ijk, "ground truth")
    if g.ndim != 3:
        raise DimensionalityError(f"expected a 3D (i, j, k) mask, got shape {g.shape}")
    area = g.sum(axis=(0, 1))
    order = np.argsort(-area, kind="stable")[: max(1, n)]
    return sorted(int(k) for k in order)


def plot_overlay_comparison(
    image_slices: np.ndarray | Sequence[np.ndarray],
    gt: np.ndarray | Sequence[np.ndarray],
    preds: Mapping[str, np.ndarray | Sequence[np.ndarray]],
    out_png: str | Path,
    window: Window | tuple[float, float],
    *,
    row_labels: Sequence[str] | None = None,
    dpi: int = 120,
) -> Path:
    """Grid of slices: rows = slices, columns = image, GT, then each method (with slice Dice).

    ``image_slices``, ``gt`` and every entry of ``preds`` are lists of ``(i, j)`` slices (or
    ``(n, i, j)`` arrays) of a canonical LPS volume; each is displayed as ``slice.T``.
    ``window`` is the display window in the image's own units (a :class:`Window` or ``(lo, hi)``).
    """
    imgs = _as_slices(image_slices, "image")
    gts = [as_mask(s, "ground truth") for s in _as_slices(gt, "ground truth")]
    pred_lists = {m: [as_mask(s, m) for s in _as_slices(v, m)] for m, v in preds.items()}
    if len(gts) != len(imgs) or any(len(v) != len(imgs) for v in pred_lists.values()):
        raise GeometryError("image, GT and every prediction need the same number of slices")
    for n, img in enumerate(imgs):
        shapes = {gts[n].shape, *(v[n].shape for v in pred_lists.values())}
        if shapes != {img.shape}:
            raise GeometryError(f"slice {n}: image {img.shape} and masks {sorted(shapes)} differ")
    lo, hi = (window.lo, window.hi) if isinstance(window, Window) else map(float, window)
    if not hi > lo:
        raise ConfigError(f"display window must have hi > lo, got ({lo}, {hi})")
    if row_labels is not None and len(row_labels) != len(imgs):
        raise ConfigError("row_labels must have one label per slice")

    cols = ["image", "GT", *pred_lists]
    fig, axes = plt.subplots(
        len(imgs), len(cols), figsize=(2.3 * len(cols), 2.3 * len(imgs)), squeeze=False
    )
    for r, img in enumerate(imgs):
        masks: list[np.ndarray | None] = [None, gts[r], *(v[r] for v in pred_lists.values())]
        for c, (name, mask) in enumerate(zip(cols, masks, strict=True)):
            ax = axes[r][c]
            ax.imshow(img.T, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            if mask is not None:
                color = (0.1, 0.9, 0.1) if c == 1 else _COLORS[(c - 2) % len(_COLORS)]
                rgba = np.zeros((*mask.T.shape, 4))
                rgba[mask.T] = (*color[:3], 0.45)
                ax.imshow(rgba, interpolation="nearest")
                if mask.any():
                    ax.contour(mask.T.astype(float), levels=[0.5], colors=[color], linewidths=0.6)
            label = name if c < 2 else f"{name}\nDice {dice(masks[c], gts[r]):.3f}"  # type: ignore[arg-type]
            if r == 0 or c >= 2:
                ax.set_title(label, fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
        if row_labels is not None:
            axes[r][0].set_ylabel(row_labels[r], fontsize=7)
    return _save(fig, out_png, dpi)


def plot_training_log(
    stages: Sequence[tuple[str, str | Path]],
    out_png: str | Path,
    *,
    smooth: int = 10,
    dpi: int = 150,
) -> Path:
    """Training loss (moving average of the logged means) and validation Dice against the step.

    ``stages`` are ``(label, log.csv)`` pairs of consecutive runs (e.g. a warm-started second
    stage); each stage's steps continue where the previous stage ended.
    """
    if not stages:
        raise ConfigError("plot_training_log needs at least one (label, log.csv) stage")
    fig, (ax_l, ax_v) = plt.subplots(1, 2, figsize=(9.5, 3.6))
    offset = 0
    for n, (label, path) in enumerate(stages):
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: training log not found")
        log = pd.read_csv(p)
        missing = {"step", "kind", "loss", "val_dice"} - set(log.columns)
        if missing:
            raise ConfigError(f"{p}: not an ichseg training log (missing {sorted(missing)})")
        log = log.drop_duplicates(subset=["step", "kind"], keep="last")
        train = log[log["kind"] == "train"].sort_values("step")
        val = log[log["kind"] == "val"].sort_values("step")
        color = _COLORS[n % len(_COLORS)]
        if len(train):
            loss = train["loss"].rolling(max(1, smooth), min_periods=1).mean()
            ax_l.plot(train["step"] + offset, loss, color=color, label=label)
        if len(val):
            ax_v.plot(
                val["step"] + offset, val["val_dice"], marker="o", ms=3, color=color, label=label
            )
        steps = pd.concat([train["step"], val["step"]])
        offset += int(steps.max()) if len(steps) else 0
    ax_l.set_xlabel("step")
    ax_l.set_ylabel(f"training loss (moving mean of {smooth} logs)")
    ax_v.set_xlabel("step")
    ax_v.set_ylabel("validation Dice")
    for ax in (ax_l, ax_v):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out_png, dpi)
