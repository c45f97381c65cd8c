"""MUNet training: loss values on known inputs, SMOTE balance, sampling, one step, resume."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ichseg.data.slices import IGNORE, label_combination_keys
from ichseg.errors import ConfigError
from ichseg.models.registry import read_state
from ichseg.training.munet import (
    Config,
    Trainer,
    dice_loss,
    focal_loss,
    munet_loss,
    sampling_weights,
    smote_balance,
    train,
)

TINY = {"slice_size": 64, "widths": [4, 8, 8, 16, 16], "decoder_channels": 8, "cls_hidden": 16}


def test_focal_loss_known_values() -> None:
    logits = torch.tensor([[0.0, 2.0], [-1.0, 0.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.sigmoid(logits)
    pt = torch.where(target > 0, p, 1 - p)
    expected = float((-((1 - pt) ** 2) * torch.log(pt)).mean())
    assert float(focal_loss(logits, target, 2.0, None)) == pytest.approx(expected, rel=1e-5)
    # gamma 0 is binary cross-entropy
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert float(focal_loss(logits, target, 0.0, None)) == pytest.approx(float(bce), rel=1e-5)


def test_dice_loss_known_values() -> None:
    seg = torch.zeros(1, 4, 4, dtype=torch.uint8)
    seg[0, :2, :2] = 2  # 4 pixels of class 2
    big = 30.0
    perfect = torch.full((1, 6, 4, 4), -big)
    perfect[:, 0] = big
    perfect[0, 0, :2, :2] = -big
    perfect[0, 2, :2, :2] = big
    # class 2 matches; the absent classes 1, 3, 4, 5 predict nothing -> Dice ~1 (smoothed)
    assert float(dice_loss(perfect, seg)) == pytest.approx(0.0, abs=1e-4)
    half = perfect.clone()
    half[0, 2, :2, :2] = -big
    half[0, 0, :2, :2] = big
    half[0, 2, 0, :2] = big  # 2 of 4 pixels predicted -> Dice 2*2/(2+4) = 2/3 for class 2
    half[0, 0, 0, :2] = -big
    assert float(dice_loss(half, seg)) == pytest.approx((1 - 2 / 3) / 5, abs=1e-4)
    # IGNORE pixels are not counted: marking the missed pixels ignored gives Dice 1 again
    seg_ign = seg.clone()
    seg_ign[0, 1, :2] = IGNORE
    assert float(dice_loss(half, seg_ign)) == pytest.approx(0.0, abs=1e-4)


def test_dice_with_background_sees_how_far_an_absent_subtype_floods() -> None:
    seg = torch.zeros(1, 8, 8, dtype=torch.uint8)
    seg[0, :2, :2] = 2
    big = 30.0
    base = torch.full((1, 6, 8, 8), -big)
    base[:, 0] = big
    base[0, 0, :2, :2] = -big
    base[0, 2, :2, :2] = big

    def flood(n: int) -> torch.Tensor:  # class 4 (absent) wins on n background pixels
        out = base.clone()
        rows, cols = np.unravel_index(np.arange(n) + 16, (8, 8))
        out[0, 4, rows, cols] = big
        out[0, 0, rows, cols] = -big
        return out

    one, many = flood(1), flood(40)
    # without background the absent class's Dice is saturated: one pixel or 40, same loss
    assert float(dice_loss(one, seg)) == pytest.approx(float(dice_loss(many, seg)), abs=1e-4)
    # with it, the background channel's Dice grows worse with every flooded pixel
    assert float(dice_loss(many, seg, True)) > float(dice_loss(one, seg, True)) + 0.05


def test_seg_ce_weight_adds_pixel_cross_entropy_ignoring_unknown_pixels() -> None:
    gen = torch.Generator().manual_seed(0)
    seg_logits = torch.randn(2, 6, 4, 4, generator=gen)
    cls_logits = torch.randn(2, 6, generator=gen)
    seg = torch.zeros(2, 4, 4, dtype=torch.long)
    seg[0, 1:3, 1:3] = 2
    seg[1, 0, 0] = IGNORE
    labels = torch.zeros(2, 6)
    labels[0, 1] = 1
    labels[1, 5] = 1
    out = {"seg_logits": seg_logits, "cls_logits": cls_logits}
    paper = munet_loss(out, seg, labels, Config(aux_weight=0.0))
    assert float(paper["total"]) == pytest.approx(float(paper["focal"] + paper["dice"]))
    with_ce = munet_loss(out, seg, labels, Config(aux_weight=0.0, seg_ce_weight=0.5))
    known = seg != IGNORE
    ce = torch.nn.functional.cross_entropy(
        seg_logits.permute(0, 2, 3, 1)[known], seg[known], reduction="mean"
    )
    assert float(with_ce["total"]) == pytest.approx(float(paper["total"] + 0.5 * ce), abs=1e-5)
    with pytest.raises(ConfigError, match="seg_ce_weight"):
        Config(data="x", seg_ce_weight=-1.0).validate()


def test_smote_balances_label_combinations() -> None:
    rng = np.random.default_rng(0)
    labels = np.array(
        [[0, 0, 0, 0, 0, 1]] * 40 + [[0, 1, 0, 0, 0, 0]] * 8 + [[1, 0, 0, 1, 0, 0]] * 3
    )
    x = rng.normal(size=(len(labels), 5)) + labels[:, :5] * 3
    xs, ys = smote_balance(x, labels, k=5, seed=1)
    _, counts = np.unique(label_combination_keys(ys), return_counts=True)
    assert counts.tolist() == [40, 40, 40]
    assert np.array_equal(xs[: len(x)], x.astype(np.float32))  # originals first
    assert np.array_equal(ys[: len(x)], labels)
    # synthetic IPH samples lie between IPH samples (interpolation), not near "none"
    synth_iph = xs[len(x) :][ys[len(x) :, 1] == 1]
    assert synth_iph[:, 1].mean() > 2.0


def test_sampling_weights() -> None:
    labels = np.array([[0, 0, 0, 0, 0, 1]] * 6 + [[0, 1, 0, 0, 0, 0]] * 2)
    cw = sampling_weights(labels, "class_weighted", None)
    assert cw[:6].sum() == pytest.approx(0.5) and cw[6:].sum() == pytest.approx(0.5)
    assert sampling_weights(labels, "uniform", None) == pytest.approx(np.full(8, 1 / 8))
    pf = sampling_weights(labels, "uniform", 0.25)
    assert pf[6:].sum() == pytest.approx(0.25)


def _cfg(data: Path, out: Path, **kw: object) -> Config:
    base = dict(
        data=str(data),
        out=str(out),
        folds=3,
        batch_size=4,
        val_every=2,
        log_every=1,
        ckpt_every=1,
        num_threads=1,
        model_overrides=TINY,
        smote_bank=64,
        val_slices=16,
        cache_dir=str(out.parent / "cache"),
    )
    base.update(kw)
    return Config(**base)  # type: ignore[arg-type]


def test_one_step_changes_weights_and_resume_is_exact(tiny_physionet: Path, tmp_path: Path) -> None:
    t = Trainer(_cfg(tiny_physionet, tmp_path / "a", max_steps=1), progress=False)
    t.setup()
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    r = t.train_step(0)
    assert math.isfinite(r["loss"]) and r["smote_samples"] >= 0
    changed = [k for k, v in t.model.state_dict().items() if not torch.equal(v, before[k])]
    assert any("cls_head" in k for k in changed) and any("encoder" in k for k in changed)

    full = train(_cfg(tiny_physionet, tmp_path / "full", max_steps=4), progress=False)
    assert full["steps"] == 4 and (tmp_path / "full" / "best.pt").exists()
    train(_cfg(tiny_physionet, tmp_path / "res", max_steps=2), progress=False)
    resumed = train(_cfg(tiny_physionet, tmp_path / "res", max_steps=4), progress=False)
    assert resumed["steps"] == 4
    a = read_state(tmp_path / "full" / "last.pt")
    b = read_state(tmp_path / "res" / "last.pt")
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    with (tmp_path / "res" / "log.csv").open() as fh:
        steps = [int(row["step"]) for row in csv.DictReader(fh) if row["kind"] == "train"]
    assert steps == [1, 2, 3, 4]
    state = torch.load(tmp_path / "res" / "last.pt", weights_only=True)
    assert {"optimizer", "scheduler", "smote_bank", "rng"} <= set(state)


def test_config_roundtrip_and_errors(tmp_path: Path) -> None:
    cfg = Config(data="d", smote=False, sampling="class_weighted", fpn=False)
    cfg.save(tmp_path / "c.yaml")
    assert Config.load(tmp_path / "c.yaml") == cfg
    with pytest.raises(ConfigError, match="unknown"):
        Config.from_dict({"data": "d", "smot": True})
    with pytest.raises(ConfigError, match="sampling"):
        Config(data="d", sampling="oversample").validate()
