"""Training prompts: paper-style random points and robot scribbles on the requested slice."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import ellipse

from ichseg.errors import ConfigError, DimensionalityError, EmptyMaskError, PromptError
from ichseg.interaction.hints import rasterize_prompts
from ichseg.interaction.point_sampler import (
    choose_prompt_slice,
    sample_points_2d,
    simulate_training_prompts,
)
from ichseg.interaction.prompts import Click, Scribble

SHAPE = (16, 48, 48)


def _gt() -> np.ndarray:
    gt = np.zeros(SHAPE, dtype=np.uint8)
    radii = [(3, 4), (6, 8), (8, 10), (9, 12), (7, 9), (5, 6), (2, 3)]
    for z, (ry, rx) in zip(range(5, 12), radii, strict=True):
        rr, cc = ellipse(24, 22, ry, rx, shape=SHAPE[1:])
        gt[z, rr, cc] = 1
    return gt


@pytest.mark.parametrize("seed", range(5))
def test_points_counts_and_placement(seed):
    gt = _gt()[8].astype(bool)
    clicks = sample_points_2d(gt, np.random.default_rng(seed), radius_vox=2.0, band_px=6.0)
    pos = [c for c in clicks if c.positive]
    neg = [c for c in clicks if not c.positive]
    assert 3 <= len(pos) <= 7 and len(neg) == len(pos)
    assert len({(c.y, c.x) for c in pos}) == len(pos)  # no duplicates
    outside = ndi.distance_transform_edt(~gt)
    inside = ndi.distance_transform_edt(gt)
    for c in pos:
        assert inside[int(c.y), int(c.x)] > 2.0  # the whole disc lies in the lesion
    for c in neg:
        assert outside[int(c.y), int(c.x)] > 3.0  # the disc does not touch the lesion
    assert all(c.radius_vox == 2.0 for c in clicks)


def test_points_deterministic_and_band_and_region_choices():
    gt = _gt()[8].astype(bool)
    a = sample_points_2d(gt, np.random.default_rng(3))
    assert a == sample_points_2d(gt, np.random.default_rng(3))
    outside = ndi.distance_transform_edt(~gt)
    band = sample_points_2d(gt, np.random.default_rng(1), band_px=5.0, band_fraction=1.0)
    assert all(outside[int(c.y), int(c.x)] <= 5.0 + 3.0 for c in band if not c.positive)
    region = np.zeros_like(gt)
    region[:, 40:] = True
    far = sample_points_2d(gt, np.random.default_rng(1), band_fraction=0.0, region=region)
    assert all(c.x >= 40 for c in far if not c.positive)


def test_points_edge_cases():
    with pytest.raises(EmptyMaskError):
        sample_points_2d(np.zeros((8, 8)), np.random.default_rng(0))
    full = np.ones((8, 8), dtype=bool)
    clicks = sample_points_2d(full, np.random.default_rng(0))
    assert clicks and all(c.positive for c in clicks)  # no background left to click
    with pytest.raises(ConfigError):
        sample_points_2d(full, np.random.default_rng(0), n_range=(4, 2))
    with pytest.raises(DimensionalityError):
        sample_points_2d(np.ones((2, 8, 8)), np.random.default_rng(0))
    with pytest.raises(PromptError):
        sample_points_2d(full, np.random.default_rng(0), region=np.ones((4, 4)))


def test_simulate_training_prompts_points_and_scribbles_on_requested_slice():
    gt = _gt()
    rng = np.random.default_rng(0)
    pts = simulate_training_prompts(gt, 8, rng, mode="points")
    assert pts and all(isinstance(p, Click) and p.z == 8 for p in pts)
    h = rasterize_prompts(pts, SHAPE)
    assert np.all(h[0] <= gt)  # positive discs inside the GT
    assert simulate_training_prompts(gt, 0, rng, mode="points") == []

    prev = np.zeros(SHAPE, np.float32)
    prev[8, 10:20, 30:45] = 1.0  # a false positive on slice 8
    scr = simulate_training_prompts(gt, 8, rng, mode="scribble", prev_zyx=prev)
    assert all(isinstance(p, Scribble) and p.z == 8 for p in scr)
    assert {p.positive for p in scr} == {True, False}
    h = rasterize_prompts(scr, SHAPE).astype(bool)
    pred = prev > 0.5
    assert not np.any(h[0] & ~(gt.astype(bool) & ~pred))
    assert not np.any(h[1] & ~(pred & ~gt.astype(bool)))
    zero = simulate_training_prompts(gt, 8, rng, mode="scribble")
    assert zero and all(p.positive for p in zero)
    with pytest.raises(ConfigError):
        simulate_training_prompts(gt, 8, rng, mode="boxes")  # type: ignore[arg-type]
    with pytest.raises(PromptError):
        simulate_training_prompts(gt, 16, rng)


def test_choose_prompt_slice_rules():
    gt = _gt()  # positive slices 5..11 (n = 7): band [0.2 n, 0.8 n) = ranks 2..5 -> z 7..10
    seen = {choose_prompt_slice(gt, np.random.default_rng(s)) for s in range(40)}
    assert seen == {7, 8, 9, 10}
    prev = np.zeros(SHAPE)
    prev[[3, 13]] = 1
    seen = {choose_prompt_slice(gt, np.random.default_rng(s), prev) for s in range(20)}
    assert seen == {3, 13}
    with pytest.raises(EmptyMaskError):
        choose_prompt_slice(np.zeros(SHAPE), np.random.default_rng(0))
