"""Synthetic previous-round masks: mode statistics and the geometry of each mode."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from skimage.draw import ellipse

from ichseg.errors import ConfigError, DimensionalityError, IntensityError
from ichseg.interaction.previous_mask import (
    ball_dilate,
    ball_erode,
    ball_open,
    lesion_half_extent,
    shift_z,
    synthesize_previous_mask,
)

SHAPE = (16, 48, 48)


def _gt() -> np.ndarray:
    gt = np.zeros(SHAPE, dtype=bool)
    radii = [(4, 5), (7, 9), (9, 12), (10, 14), (8, 10), (6, 7), (3, 4)]
    for z, (ry, rx) in zip(range(5, 12), radii, strict=True):
        rr, cc = ellipse(24, 22, ry, rx, shape=SHAPE[1:])
        gt[z, rr, cc] = True
    return gt


def test_default_mode_statistics():
    gt = _gt()
    rng = np.random.default_rng(0)
    modes = Counter()
    for _ in range(300):
        pm, mode = synthesize_previous_mask(gt, rng)
        assert pm.shape == SHAPE and pm.dtype == np.float32
        assert set(np.unique(pm)) <= {0.0, 1.0}
        assert (pm.sum() == 0) == (mode == "zero") or mode != "zero"
        modes[mode] += 1
    assert 0.4 < modes["zero"] / 300 < 0.6
    assert set(modes) == {"zero", "morphology", "opening", "z_shift"}
    for m in ("morphology", "opening", "z_shift"):
        assert modes[m] > 25


def test_morphology_erodes_or_dilates():
    gt = _gt()
    grew = shrank = 0
    for s in range(30):
        pm, mode = synthesize_previous_mask(gt, np.random.default_rng(s), mode="morphology")
        pm = pm.astype(bool)
        assert mode == "morphology"
        if pm.sum() > gt.sum():
            assert np.all(pm >= gt)
            grew += 1
        else:
            assert np.all(pm <= gt) and pm.sum() < gt.sum()
            shrank += 1
    assert grew > 5 and shrank > 5


def test_opening_and_z_shift():
    gt = _gt()
    gt[8, 5, 5:40] = True  # a thin spur the opening should remove
    pm, _ = synthesize_previous_mask(gt, np.random.default_rng(1), mode="opening")
    assert np.all(pm.astype(bool) <= gt) and not pm[8, 5].any()
    zc = np.average(np.arange(16), weights=gt.sum(axis=(1, 2)))
    moved = set()
    for s in range(12):
        pm, mode = synthesize_previous_mask(gt, np.random.default_rng(s), mode="z_shift")
        c = np.average(np.arange(16), weights=pm.sum(axis=(1, 2)))
        assert mode == "z_shift" and abs(c - zc) >= 0.9
        moved.add(np.sign(c - zc))
    assert moved == {-1.0, 1.0}


def test_shift_z_pads_with_edge_slice():
    m = np.zeros((5, 2, 2), bool)
    m[0] = True
    up = shift_z(m, 2)
    assert up[:3].all() and not up[3:].any()  # slice 0 repeated into the gap
    assert np.array_equal(shift_z(up, -2)[0], up[2])


def test_anisotropic_ball_uses_spacing():
    m = np.zeros((9, 21, 21), bool)
    m[4, 10, 10] = True
    thick = ball_dilate(m, 4, (5.0, 1.0, 1.0))
    assert np.flatnonzero(thick.any(axis=(1, 2))).tolist() == [4]  # 4 mm < 5 mm slice
    assert thick[4, 10].sum() == 9  # in-plane radius 4 px
    iso = ball_dilate(m, 4, (1.0, 1.0, 1.0))
    assert np.flatnonzero(iso.any(axis=(1, 2))).tolist() == list(range(0, 9))
    mid = ball_dilate(m, 6, (5.0, 1.0, 1.0))
    assert np.flatnonzero(mid.any(axis=(1, 2))).tolist() == [3, 4, 5]
    gt = _gt()
    er = ball_erode(gt, 2, (5.0, 1.0, 1.0))
    assert np.all(er <= gt) and er.sum() < gt.sum()
    assert np.all(ball_open(gt, 2, (5.0, 1.0, 1.0)) <= gt)
    box = np.ones((3, 5, 5), bool)  # touching the array border: outside counts as background
    assert ball_erode(box, 1, (1.0, 1.0, 1.0)).sum() == 9  # 1 x 3 x 3 core


def test_noisy_mode_and_empty_gt_and_determinism():
    gt = _gt()
    pm, mode = synthesize_previous_mask(gt, np.random.default_rng(2), mode="noisy")
    assert mode == "noisy" and (pm.astype(bool) & ~gt).any() and (gt & ~pm.astype(bool)).any()
    a = synthesize_previous_mask(gt, np.random.default_rng(9))
    b = synthesize_previous_mask(gt, np.random.default_rng(9))
    assert a[1] == b[1] and np.array_equal(a[0], b[0])
    for m in ("morphology", "opening", "z_shift", "noisy"):
        pm, mode = synthesize_previous_mask(np.zeros(SHAPE), np.random.default_rng(0), mode=m)
        assert mode == m and pm.sum() == 0
    assert lesion_half_extent(gt) == pytest.approx(9.5)  # largest slice spans 19 x 27 px
    only = synthesize_previous_mask(gt, np.random.default_rng(0), probs={"opening": 1.0})
    assert only[1] == "opening"


def test_bad_inputs():
    rng = np.random.default_rng(0)
    with pytest.raises(DimensionalityError):
        synthesize_previous_mask(np.zeros((4, 4)), rng)
    with pytest.raises(IntensityError):
        synthesize_previous_mask(np.full(SHAPE, np.nan), rng)
    with pytest.raises(ConfigError):
        synthesize_previous_mask(_gt(), rng, probs={"blur": 1.0})
    with pytest.raises(ConfigError):
        synthesize_previous_mask(_gt(), rng, probs={"zero": 0.0})
    with pytest.raises(ConfigError):
        synthesize_previous_mask(_gt(), rng, probs={"zero": -1.0})
    with pytest.raises(ConfigError):
        synthesize_previous_mask(_gt(), rng, spacing_zyx=(0, 1, 1))
    with pytest.raises(ConfigError):
        synthesize_previous_mask(_gt(), rng, mode="blur")
