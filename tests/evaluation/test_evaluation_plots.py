"""Tests for ichseg.evaluation.plots: figures are written and non-empty, inputs validated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ichseg.errors import ConfigError, GeometryError
from ichseg.evaluation import plots as P
from ichseg.io.volume import Window

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for method, gain in (("ours", 0.05), ("baseline", 0.02)):
        for case in range(6):
            gt_ml = float(rng.uniform(5, 40))
            for r in range(1, 4):
                rows.append(
                    {
                        "method": method,
                        "fold": case % 2,
                        "case_id": f"c{case}",
                        "round": r,
                        "dice": min(1.0, 0.6 + gain * r + rng.normal(0, 0.02)),
                        "vol_gt_ml": gt_ml,
                        "vol_pred_ml": gt_ml + rng.normal(1.0, 0.5),
                    }
                )
    return pd.DataFrame(rows)


def _is_png(p: Path) -> bool:
    return p.is_file() and p.stat().st_size > 1000 and p.read_bytes()[:8] == PNG_MAGIC


def test_metric_vs_round_png(tmp_path: Path) -> None:
    out = P.plot_metric_vs_round(_frame(), "dice", tmp_path / "sub" / "dice.png", n_resamples=200)
    assert _is_png(out)


def test_volume_agreement_png_and_stats(tmp_path: Path) -> None:
    df = _frame()
    stats = P.plot_volume_agreement(df, tmp_path / "ba.png")
    assert _is_png(tmp_path / "ba.png")
    assert set(stats) == {"ours", "baseline"}
    final = df[df["round"] == 3]
    ours = final[final.method == "ours"]
    assert stats["ours"].bias == pytest.approx((ours.vol_pred_ml - ours.vol_gt_ml).mean())
    assert stats["ours"].n == 6


def test_overlay_comparison_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    vol = rng.uniform(0, 80, (48, 40, 5))
    gt = np.zeros(vol.shape, dtype=bool)
    gt[10:30, 12:25, 1:4] = True
    pred = np.roll(gt, 3, axis=0)
    ks = P.pick_slices(gt, n=2)
    assert len(ks) == 2 and all(1 <= k <= 3 for k in ks)
    imgs = [vol[:, :, k] for k in ks]
    out = P.plot_overlay_comparison(
        imgs,
        [gt[:, :, k] for k in ks],
        {"ours": [pred[:, :, k] for k in ks], "empty": np.zeros((2, 48, 40), dtype=bool)},
        tmp_path / "grid.png",
        Window(40, 80),
        row_labels=[f"k={k}" for k in ks],
    )
    assert _is_png(out)
    with pytest.raises(GeometryError):
        P.plot_overlay_comparison(imgs, [gt[:, :, 0]], {}, tmp_path / "x.png", (0, 80))
    with pytest.raises(ConfigError):
        P.plot_overlay_comparison(imgs, [gt[:, :, k] for k in ks], {}, tmp_path / "x.png", (80, 0))


def test_training_log_png_with_two_stages(tmp_path: Path) -> None:
    rows = ["step,kind,loss,vsl,ssl,fcl,val_dice,val_vim_dice,lr,seconds"]
    for s in range(10, 101, 10):
        rows.append(f"{s},train,{3 - s / 50},0,0,0,,,0.001,{s}")
        if s % 50 == 0:
            rows.append(f"{s},val,,,,,{s / 200},0.1,,{s}")
    (tmp_path / "a.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "b.csv").write_text("\n".join(rows) + "\n")
    out = P.plot_training_log(
        [("one", tmp_path / "a.csv"), ("two", tmp_path / "b.csv")], tmp_path / "curve.png"
    )
    assert _is_png(out)
    with pytest.raises(ConfigError):
        P.plot_training_log([("x", tmp_path / "missing.csv")], tmp_path / "x.png")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="not an ichseg training log"):
        P.plot_training_log([("x", tmp_path / "bad.csv")], tmp_path / "x.png")


def test_method_volume_agreement_png(tmp_path: Path) -> None:
    df = _frame()
    final = df[(df["round"] == 3) & (df["method"] == "ours")]
    pred, gt = final.vol_pred_ml.to_numpy(), final.vol_gt_ml.to_numpy()
    ba, icc = P.plot_method_volume_agreement(pred, gt, tmp_path / "ours.png", method="ours")
    assert _is_png(tmp_path / "ours.png")
    assert ba.bias == pytest.approx((pred - gt).mean()) and ba.n == 6
    assert 0.5 < icc.icc <= 1.0 and icc.n == 6
    with pytest.raises(ConfigError):
        P.plot_method_volume_agreement(pred, gt[:3], tmp_path / "x.png", method="x")
