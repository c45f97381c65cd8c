"""Subtype segmentation and classification metrics (IHSNet / MUNet) and their figures.

* :class:`SegCounts` — per-class pixel counts accumulated over many slices or scans; Dice and
  IoU per subtype pooled over the whole set (the paper's per-type Dice), ignoring
  :data:`~ichseg.data.slices.IGNORE` pixels.
* :func:`binary_metrics` — accuracy, precision, recall (sensitivity), specificity and F1 from one
  2x2 confusion matrix; :func:`classification_metrics` — those per class for multi-label
  predictions plus one-vs-rest AUC-ROC (scikit-learn) and macro averages.
* :func:`scan_presence` — scan-level subtype presence from slice probabilities (a subtype is
  present in a scan when any slice's probability reaches the threshold; the scan's probability
  is the maximum over its slices).
* :func:`plot_roc_curves`, :func:`plot_confusion_matrices` — PNG figures (matplotlib, Agg).

Conventions: a ratio with a zero denominator is ``nan`` (not 0 or 1) and is skipped by macro
averages; AUC is ``nan`` for a class whose truth is constant in the set.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from ichseg.data.subtypes import SUBTYPE_NAMES
from ichseg.errors import ConfigError

CLASS_NAMES: tuple[str, ...] = (*SUBTYPE_NAMES, "none")
IGNORE = 255


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


class SegCounts:
    """Pixel counts per segmentation class (0 = background, 1..5 = subtypes)."""

    def __init__(self, num_classes: int = 6, names: Sequence[str] | None = None) -> None:
        self.num_classes = num_classes
        self.names = tuple(names) if names is not None else ("background", *SUBTYPE_NAMES)
        self.tp = np.zeros(num_classes, np.int64)
        self.fp = np.zeros(num_classes, np.int64)
        self.fn = np.zeros(num_classes, np.int64)

    def update(self, pred: np.ndarray, truth: np.ndarray) -> None:
        """Add one batch of label maps (any shape, equal); IGNORE truth pixels are skipped."""
        p, t = np.asarray(pred), np.asarray(truth)
        if p.shape != t.shape:
            raise ConfigError(f"prediction shape {p.shape} differs from truth shape {t.shape}")
        keep = t != IGNORE
        p, t = p[keep].astype(np.int64), t[keep].astype(np.int64)
        n = self.num_classes
        cm = np.bincount(t * n + np.clip(p, 0, n - 1), minlength=n * n).reshape(n, n)
        diag = np.diag(cm)
        self.tp += diag
        self.fp += cm.sum(axis=0) - diag
        self.fn += cm.sum(axis=1) - diag

    def scores(self) -> dict[str, dict[str, float]]:
        """``{name: {"dice", "iou", "precision", "recall", "support_pixels"}}`` for classes 1..;
        Dice/IoU are ``nan`` for a class absent from both prediction and truth."""
        out = {}
        for c in range(1, self.num_classes):
            tp, fp, fn = int(self.tp[c]), int(self.fp[c]), int(self.fn[c])
            out[self.names[c]] = {
                "dice": _ratio(2 * tp, 2 * tp + fp + fn),
                "iou": _ratio(tp, tp + fp + fn),
                "precision": _ratio(tp, tp + fp),
                "recall": _ratio(tp, tp + fn),
                "support_pixels": float(tp + fn),
            }
        return out


def binary_metrics(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """Accuracy, precision, recall, specificity and F1 of one confusion matrix."""
    if min(tp, fp, fn, tn) < 0:
        raise ConfigError("confusion-matrix counts must be >= 0")
    return {
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def _check(y_true: np.ndarray, y_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true).astype(np.int64)
    p = np.asarray(y_prob, np.float64)
    if t.ndim != 2 or t.shape != p.shape:
        raise ConfigError(f"y_true {t.shape} and y_prob {p.shape} must both be (N, classes)")
    if not np.isin(t, (0, 1)).all():
        raise ConfigError("y_true must be 0/1 (multi-hot)")
    return t, p


def classification_metrics(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    names: Sequence[str] = CLASS_NAMES,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Per-class metrics of multi-label predictions (``y_prob >= threshold`` is positive):
    ``{"per_class": {name: {..., "auc", "support", "tp", "fp", "fn", "tn"}}, "macro": {...},
    "exact_match": fraction of samples with every label right}``."""
    from sklearn.metrics import roc_auc_score

    t, p = _check(y_true, y_prob)
    if len(names) != t.shape[1]:
        raise ConfigError(f"{len(names)} class names for {t.shape[1]} columns")
    pred = p >= threshold
    per: dict[str, dict[str, float]] = {}
    for c, name in enumerate(names):
        tc, pc = t[:, c] == 1, pred[:, c]
        counts = {
            "tp": int((tc & pc).sum()),
            "fp": int((~tc & pc).sum()),
            "fn": int((tc & ~pc).sum()),
            "tn": int((~tc & ~pc).sum()),
        }
        m = binary_metrics(counts["tp"], counts["fp"], counts["fn"], counts["tn"])
        both = 0 < tc.sum() < len(tc)
        m["auc"] = float(roc_auc_score(tc, p[:, c])) if both else float("nan")
        per[name] = {**m, "support": float(tc.sum()), **counts}
    keys = ("accuracy", "precision", "recall", "specificity", "f1", "auc")
    macro = {}
    for k in keys:
        vals = [v[k] for v in per.values() if not np.isnan(v[k])]
        macro[k] = float(np.mean(vals)) if vals else float("nan")
    exact = float((pred == (t == 1)).all(axis=1).mean()) if len(t) else float("nan")
    return {"per_class": per, "macro": macro, "exact_match": exact, "threshold": threshold}


def scan_presence(
    slice_probs: np.ndarray, names: Sequence[str] = SUBTYPE_NAMES, threshold: float = 0.5
) -> dict[str, dict[str, float | bool]]:
    """Scan-level ``{name: {"probability": max over slices, "present": bool}}`` from ``(Z, C)``
    slice probabilities (the first ``len(names)`` columns are used)."""
    p = np.asarray(slice_probs, np.float64)
    if p.ndim != 2 or p.shape[1] < len(names):
        raise ConfigError(f"slice probabilities must be (Z, >= {len(names)}), got {p.shape}")
    out: dict[str, dict[str, float | bool]] = {}
    for c, name in enumerate(names):
        prob = float(p[:, c].max()) if p.shape[0] else 0.0
        out[name] = {"probability": prob, "present": bool(prob >= threshold)}
    return out


def plot_roc_curves(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    out_png: str | Path,
    names: Sequence[str] = CLASS_NAMES,
    title: str = "One-vs-rest ROC",
) -> Path:
    """One ROC curve per class with its AUC in the legend (classes with constant truth are
    listed as n/a)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    t, p = _check(y_true, y_prob)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for c, name in enumerate(names):
        if not 0 < t[:, c].sum() < len(t):
            ax.plot([], [], label=f"{name}: n/a (one class only)")
            continue
        fpr, tpr, _ = roc_curve(t[:, c], p[:, c])
        ax.plot(fpr, tpr, label=f"{name}: AUC {roc_auc_score(t[:, c], p[:, c]):.3f}")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, out_png)


def plot_confusion_matrices(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    out_png: str | Path,
    names: Sequence[str] = CLASS_NAMES,
    threshold: float = 0.5,
    title: str = "",
) -> Path:
    """One 2x2 confusion matrix per class (rows: true yes/no, columns: predicted yes/no)."""
    t, p = _check(y_true, y_prob)
    pred = p >= threshold
    fig, axes = plt.subplots(1, len(names), figsize=(2.3 * len(names), 2.8))
    for c, (ax, name) in enumerate(zip(np.atleast_1d(axes), names, strict=True)):
        tc, pc = t[:, c] == 1, pred[:, c]
        cm = np.array([[(tc & pc).sum(), (tc & ~pc).sum()], [(~tc & pc).sum(), (~tc & ~pc).sum()]])
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            color = "white" if v > cm.max() / 2 else "black"
            ax.text(j, i, str(int(v)), ha="center", va="center", color=color)
        ax.set_xticks([0, 1], ["yes", "no"])
        ax.set_yticks([0, 1], ["yes", "no"])
        ax.set_title(name)
        ax.set_xlabel("predicted")
        if c == 0:
            ax.set_ylabel("true")
    if title:
        fig.suptitle(title)
    return _save(fig, out_png)


def _save(fig: plt.Figure, out_png: str | Path) -> Path:
    p = Path(out_png)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p
