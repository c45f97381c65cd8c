"""Subtype metrics on known confusion matrices, pooled Dice/IoU, scan presence, figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ichseg.errors import ConfigError
from ichseg.evaluation.classification import (
    IGNORE,
    SegCounts,
    binary_metrics,
    classification_metrics,
    plot_confusion_matrices,
    plot_roc_curves,
    scan_presence,
)


def test_binary_metrics_known_matrix() -> None:
    m = binary_metrics(tp=8, fp=2, fn=4, tn=86)
    assert m["accuracy"] == pytest.approx(0.94)
    assert m["precision"] == pytest.approx(0.8)
    assert m["recall"] == pytest.approx(8 / 12)
    assert m["specificity"] == pytest.approx(86 / 88)
    assert m["f1"] == pytest.approx(16 / 22)
    assert np.isnan(binary_metrics(0, 0, 0, 5)["precision"])
    with pytest.raises(ConfigError):
        binary_metrics(-1, 0, 0, 0)


def test_classification_metrics_per_class_and_auc() -> None:
    y = np.array([[1, 0], [1, 0], [0, 1], [0, 0]])
    p = np.array([[0.9, 0.1], [0.4, 0.2], [0.6, 0.8], [0.1, 0.7]])
    r = classification_metrics(y, p, names=("A", "B"))
    a, b = r["per_class"]["A"], r["per_class"]["B"]
    assert (a["tp"], a["fp"], a["fn"], a["tn"]) == (1, 1, 1, 1)
    assert a["precision"] == 0.5 and a["recall"] == 0.5 and a["accuracy"] == 0.5
    assert a["auc"] == pytest.approx(0.75)  # pairs (0.9>0.6, 0.9>0.1, 0.4<0.6, 0.4>0.1) = 3/4
    assert (b["tp"], b["fp"], b["fn"], b["tn"]) == (1, 1, 0, 2)
    assert b["auc"] == pytest.approx(1.0)
    assert r["macro"]["f1"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert r["exact_match"] == pytest.approx(0.25)
    constant = classification_metrics(np.ones((3, 1), int), np.full((3, 1), 0.7), names=("A",))
    assert np.isnan(constant["per_class"]["A"]["auc"])
    with pytest.raises(ConfigError):
        classification_metrics(y, p[:, :1], names=("A",))


def test_seg_counts_dice_iou_and_ignore() -> None:
    truth = np.zeros((2, 4, 4), np.uint8)
    truth[0, :2, :2] = 2  # 4 px IPH
    truth[1, 0, :] = 1  # 4 px EDH
    pred = np.zeros_like(truth)
    pred[0, :2, :1] = 2  # 2 px right
    pred[0, 3, 3] = 2  # 1 px wrong
    pred[1, 0, :] = 1
    c = SegCounts()
    c.update(pred, truth)
    s = c.scores()
    assert s["IPH"]["dice"] == pytest.approx(2 * 2 / (3 + 4))
    assert s["IPH"]["iou"] == pytest.approx(2 / 5)
    assert s["EDH"]["dice"] == 1.0 and np.isnan(s["SDH"]["dice"])
    truth2 = truth.copy()
    truth2[0, 3, 3] = IGNORE  # the wrong pixel is not counted any more
    c2 = SegCounts()
    c2.update(pred, truth2)
    assert c2.scores()["IPH"]["precision"] == 1.0


def test_scan_presence_and_plots(tmp_path: Path) -> None:
    probs = np.array([[0.1, 0.7, 0.0, 0.0, 0.2, 0.1], [0.2, 0.3, 0.0, 0.0, 0.4, 0.9]])
    pres = scan_presence(probs)
    assert pres["IPH"] == {"probability": 0.7, "present": True}
    assert pres["SDH"]["present"] is False and pres["EDH"]["probability"] == 0.2
    rng = np.random.default_rng(0)
    y = (rng.random((40, 6)) < 0.3).astype(int)
    y[:, 2] = 0  # constant class: drawn as n/a
    p = np.clip(y * 0.5 + rng.random((40, 6)) * 0.5, 0, 1)
    roc = plot_roc_curves(y, p, tmp_path / "roc.png")
    cm = plot_confusion_matrices(y, p, tmp_path / "cm.png")
    assert roc.stat().st_size > 1000 and cm.stat().st_size > 1000
