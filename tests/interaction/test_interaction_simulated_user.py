"""Simulated clinician: slice choice, prompt placement, stopping, determinism, a short loop."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from skimage.draw import ellipse

from ichseg.errors import ConfigError, DimensionalityError, PromptError
from ichseg.interaction.hints import HINT_NEGATIVE, HINT_POSITIVE, rasterize_prompts
from ichseg.interaction.prompts import Box, Click, PromptSet, Scribble
from ichseg.interaction.scribble_robot import ScribbleRobot
from ichseg.interaction.simulated_user import (
    Cvpr25Clinician,
    SimulatedClinician,
    band_slices,
    error_clicks,
    largest_area_slice,
    largest_error_click,
    largest_slice_box,
    worst_slice,
)

SHAPE = (16, 48, 48)
AREAS = [(3, 4), (5, 6), (7, 9), (9, 12), (8, 10), (6, 7), (4, 5), (2, 3), (3, 3), (2, 2)]
REAL = Path("/work/shared/data/real/case166/mask.nii.gz")


def _gt() -> np.ndarray:
    gt = np.zeros(SHAPE, dtype=np.uint8)
    for z, (ry, rx) in zip(
        range(3, 13), AREAS, strict=True
    ):  # positive slices 3..12, largest at z = 6
        rr, cc = ellipse(24, 22, ry, rx, shape=SHAPE[1:])
        gt[z, rr, cc] = 1
    return gt


def test_round_one_largest_then_worst_slice():
    gt = _gt()
    doc = SimulatedClinician(mode="scribble", start="largest")
    turn = doc.step(np.zeros(SHAPE), gt)
    assert turn.info["slice"] == largest_area_slice(gt) == 6
    assert turn.info["reason"] == "start_largest" and not turn.stop
    assert turn.prompts and all(p.positive and p.z == 6 for p in turn.prompts)
    pred = gt.astype(np.float32).copy()
    pred[7] = 0  # misses slice 7 (8x10 ellipse, ~240 px)
    pred[4, 0:5, 0:5] = 0.9  # a small false positive (25 px)
    pred[11, 30:40, 30:40] = 0.8  # a larger false positive (100 px)
    wrong = (pred > 0.5) != gt.astype(bool)
    turn = doc.step(pred, gt)
    assert turn.info["slice"] == int(np.argmax(wrong.sum(axis=(1, 2)))) == 7
    assert turn.info["reason"] == "worst_slice" and turn.info["round"] == 2
    assert worst_slice(pred, gt) == 7
    assert turn.info["wrong_on_slice"] == int(wrong[7].sum())
    pred[7] = gt[7]  # now the 100 px false positive on slice 11 is the worst
    turn = doc.step(pred, gt)
    assert turn.info["slice"] == 11 and all(not p.positive for p in turn.prompts)


def test_band_start_lies_in_band_and_is_reported():
    gt = _gt()  # n = 10 positive slices 3..12: band [10 %, 90 %) -> ranks 1..8 -> z 4..11
    assert band_slices(gt, (0.1, 0.9)).tolist() == list(range(4, 12))
    seen = set()
    for seed in range(30):
        doc = SimulatedClinician(start="random_band", seed=seed)
        info = doc.step(np.zeros(SHAPE), gt).info
        assert 4 <= info["slice"] <= 11 and info["reason"] == "start_random_band"
        assert 1 <= info["start_rank"] < 9 and info["band_candidates"] == list(range(4, 12))
        seen.add(info["slice"])
    assert len(seen) >= 5
    tiny = np.zeros(SHAPE)
    tiny[7, 3, 3] = 1
    assert band_slices(tiny, (0.1, 0.9)).tolist() == [7]  # empty band -> middle slice


def test_scribbles_on_correct_error_regions():
    gt = _gt()
    pred = np.zeros(SHAPE, np.float32)
    rr, cc = ellipse(28, 30, 9, 12, shape=SHAPE[1:])
    pred[6, rr, cc] = 1  # shifted prediction on the largest slice
    turn = SimulatedClinician(mode="scribble").step(pred, gt)
    z = turn.info["slice"]
    assert z == 6 and all(isinstance(p, Scribble) and p.z == 6 for p in turn.prompts)
    h = rasterize_prompts(turn.prompts, SHAPE).astype(bool)
    fn, fp = gt.astype(bool) & ~(pred > 0.5), (pred > 0.5) & ~gt.astype(bool)
    assert h[HINT_POSITIVE].any() and h[HINT_NEGATIVE].any()
    assert not np.any(h[HINT_POSITIVE] & ~fn) and not np.any(h[HINT_NEGATIVE] & ~fp)
    assert turn.info["n_positive"] >= 1 and turn.info["n_negative"] >= 1


def test_click_mode_deepest_point_and_label():
    gt = np.zeros((48, 48), bool)
    gt[10:19, 10:19] = True  # 9x9 missed square: deepest pixel is its centre
    pred = np.zeros_like(gt)
    pred[30:35, 30:35] = True  # 5x5 false positive
    (c,) = error_clicks(pred, gt, 1, 2.0)
    assert (c.y, c.x, c.positive) == (14, 14, True)
    c1, c2 = error_clicks(pred, gt, 2, 2.0)
    assert c1.positive and not c2.positive and (c2.y, c2.x) == (32, 32)
    vol_gt = np.zeros(SHAPE, bool)
    vol_gt[5] = gt
    vol_pred = np.zeros(SHAPE, bool)
    vol_pred[5] = pred
    vol_pred[9, 0:20, 0:20] = True  # 400 wrong px: becomes the worst slice in round 2
    doc = SimulatedClinician(mode="click", clicks_per_round=1)
    (p,) = doc.step(vol_pred, vol_gt).prompts
    assert isinstance(p, Click) and (p.z, p.y, p.x, p.positive) == (5, 14, 14, True)
    (p,) = doc.step(vol_pred, vol_gt).prompts
    assert p.z == 9 and not p.positive and vol_pred[9, int(p.y), int(p.x)]


def test_stopping_rules_and_empty_gt():
    gt = _gt()
    doc = SimulatedClinician()
    turn = doc.step(gt, gt)
    assert turn.stop and turn.prompts == () and turn.info["reason"] == "prediction_correct"
    empty = np.zeros(SHAPE)
    doc.reset()
    assert doc.step(empty, empty).stop
    fp = np.zeros(SHAPE)
    fp[2, 5:15, 5:15] = 1
    doc.reset()
    turn = doc.step(fp, empty)
    assert not turn.stop and turn.info["reason"] == "gt_empty_false_positives"
    assert turn.prompts and all((not p.positive) and p.z == 2 for p in turn.prompts)
    # prediction already right on the start slice -> worst slice instead
    pred = gt.copy()
    pred[10] = 0
    doc.reset()
    turn = doc.step(pred, gt)
    assert turn.info["slice"] == 10 and turn.info["reason"] == "start_slice_correct_used_worst"


def test_deterministic_per_seed_and_reset():
    gt = _gt()
    robot = ScribbleRobot(kernel_jitter=0.3)
    a = SimulatedClinician(start="random_band", seed=5, robot=robot)
    b = SimulatedClinician(start="random_band", seed=5, robot=robot)
    ta = [a.step(np.zeros(SHAPE), gt) for _ in range(2)]
    tb = [b.step(np.zeros(SHAPE), gt) for _ in range(2)]
    assert [t.prompts for t in ta] == [t.prompts for t in tb]
    a.reset()
    assert a.step(np.zeros(SHAPE), gt).prompts == ta[0].prompts and a.rounds_done == 1


@pytest.mark.parametrize("mode", ["scribble", "click"])
def test_short_correction_loop_reduces_errors(mode):
    """A fake model that obeys the hints (paints positive, erases negative) converges."""
    gt = _gt().astype(bool)
    pred = np.zeros(SHAPE, bool)
    doc = SimulatedClinician(mode=mode, start="random_band", seed=1, clicks_per_round=3)
    ps = PromptSet()
    wrong = [int((pred != gt).sum())]
    for _ in range(8):
        turn = doc.step(pred, gt)
        if turn.stop:
            break
        ps = ps.add_round(turn.prompts, turn.info)
        h = rasterize_prompts(turn.prompts, SHAPE, click_radius=3.0, scribble_width=3.0) > 0
        z = turn.info["slice"]
        pred[z] |= h[HINT_POSITIVE, z] & gt[z]  # a perfect model fills what was marked
        pred[z] &= ~(h[HINT_NEGATIVE, z] & ~gt[z])
        wrong.append(int((pred != gt).sum()))
    assert all(b <= a for a, b in itertools.pairwise(wrong))
    assert wrong[-1] < wrong[0] and len(ps.rounds) == 8
    assert PromptSet.from_json(ps.to_json()) == ps


def test_bad_arguments():
    with pytest.raises(ConfigError):
        SimulatedClinician(mode="lasso")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        SimulatedClinician(start="middle")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        SimulatedClinician(band=(0.9, 0.1))
    with pytest.raises(ConfigError):
        SimulatedClinician(clicks_per_round=0)
    doc = SimulatedClinician()
    with pytest.raises(PromptError):
        doc.step(np.zeros((4, 8, 8)), np.zeros((4, 8, 9)))
    with pytest.raises(DimensionalityError):
        doc.step(np.zeros((8, 8)), np.zeros((8, 8)))


@pytest.mark.skipif(not REAL.exists(), reason="real case 166 not available")
def test_real_case_round_one_strokes_inside_lesion():
    import nibabel as nib

    gt = np.asarray(nib.load(REAL).dataobj).transpose(2, 1, 0) > 0.5  # (Z, Y, X)
    for start in ("largest", "random_band"):
        doc = SimulatedClinician(start=start, seed=0)
        turn = doc.step(np.zeros(gt.shape, bool), gt)
        z = turn.info["slice"]
        assert 9 <= z <= 15 and turn.prompts
        h = rasterize_prompts(turn.prompts, gt.shape).astype(bool)
        assert not np.any(h[HINT_POSITIVE] & ~gt) and h[HINT_NEGATIVE].sum() == 0


# ------------------------------------------------------------------- CVPR 2025 protocol user
def test_cvpr25_click_goes_to_the_largest_error_with_its_sign():
    gt = np.zeros((8, 30, 30), bool)
    pred = np.zeros_like(gt)
    gt[1:6, 2:7, 2:7] = True  # FN cube: 125 voxels, deepest voxel (3, 4, 4)
    pred[2, 20:25, 20:25] = True  # FP square: 25 voxels
    found = largest_error_click(pred, gt)
    assert found is not None and found.n_components == 2
    assert found.component_voxels == 125 and found.distance_mm == pytest.approx(3.0)
    assert found.click == Click(3, 4.0, 4.0, True, 2.0)
    # make the false positive the larger error: a negative click at its centre
    pred[0:7, 16:23, 16:23] = True  # 343 voxels (with the square: one component)
    found = largest_error_click(pred, gt, radius_vox=1.0)
    assert found.click == Click(3, 19.0, 19.0, False, 1.0)
    assert found.component_voxels == 343 + 25 - 3 * 3
    assert largest_error_click(gt, gt) is None  # exact prediction: no click


def test_cvpr25_click_sign_is_that_of_the_chosen_voxel_in_a_mixed_component():
    gt = np.zeros((1, 20, 20), bool)
    gt[0, 2:12, 2:12] = True
    pred = np.zeros_like(gt)
    pred[0, 12:15, 2:12] = True  # FP strip touching the FN square: one 26-connected error
    found = largest_error_click(pred, gt)
    assert found.n_components == 1 and found.component_voxels == 130
    assert found.click.positive and 2 <= found.click.y < 12  # deepest voxel is in the FN part


def test_cvpr25_click_uses_the_voxel_spacing():
    """One error component: a 1-slice 9x9 plate joined to a 5-slice 3x3 column. In voxel units
    the column's middle is deepest; with 5 mm slices and 1 mm pixels the plate's centre is."""
    gt = np.zeros((8, 20, 20), bool)
    gt[0, 0:9, 0:9] = True
    gt[0:5, 8:11, 8:11] = True
    pred = np.zeros_like(gt)
    vox = largest_error_click(pred, gt, (1.0, 1.0, 1.0))
    assert vox.n_components == 1
    assert (vox.click.z, vox.click.y, vox.click.x) == (1, 9.0, 9.0)  # first of the ties
    assert vox.distance_mm == pytest.approx(2.0)
    mm = largest_error_click(pred, gt, (5.0, 1.0, 1.0))
    assert (mm.click.z, mm.click.y, mm.click.x) == (0, 4.0, 4.0)
    assert mm.distance_mm == pytest.approx(5.0)
    with pytest.raises(ConfigError):
        largest_error_click(pred, gt, (0.0, 1.0, 1.0))
    with pytest.raises(ConfigError):
        largest_error_click(pred, gt, (1.0, 1.0))
    with pytest.raises(PromptError):
        largest_error_click(pred[:4], gt)


def test_largest_slice_box_is_tight():
    gt = _gt()
    z = largest_area_slice(gt)
    box = largest_slice_box(gt, ring_vox=1)
    ys, xs = np.nonzero(gt[z])
    assert box == Box(z, ys.min() - 0.5, xs.min() - 0.5, ys.max() + 0.5, xs.max() + 0.5, 1)
    with pytest.raises(DimensionalityError):
        largest_slice_box(gt[0])


def test_cvpr25_clinician_rounds():
    gt = _gt().astype(bool)
    user = Cvpr25Clinician((5.0, 0.5, 0.5))
    first = user.step(np.zeros_like(gt), gt)
    box, click = first.prompts
    assert isinstance(box, Box) and box == largest_slice_box(gt)
    assert isinstance(click, Click) and click.positive and gt[click.z, int(click.y), int(click.x)]
    assert first.info["box"] and first.info["reason"] == "largest_error_fn"
    assert (first.info["n_prompts"], first.info["n_positive"], first.info["n_negative"]) == (
        2,
        1,
        0,
    )
    assert first.as_round().prompts == first.prompts
    pred = gt.copy()
    pred[3, 0:6, 0:6] = True  # a false positive, far from the bleed
    second = user.step(pred, gt)
    assert len(second.prompts) == 1 and not second.prompts[0].positive
    assert second.info["reason"] == "largest_error_fp" and not second.info["box"]
    third = user.step(gt, gt)
    assert third.stop and third.prompts == ()
    assert user.rounds_done == 3
    user.reset()
    assert user.rounds_done == 0
    nobox = Cvpr25Clinician((5.0, 0.5, 0.5), box=False).step(np.zeros_like(gt), gt)
    assert [type(p) for p in nobox.prompts] == [Click] and nobox.prompts[0] == click
    empty = np.zeros_like(gt)
    fp = empty.copy()
    fp[2, 5:9, 5:9] = True
    turn = Cvpr25Clinician((1.0, 1.0, 1.0)).step(fp, empty)  # no GT: no box, a negative click
    assert [type(p) for p in turn.prompts] == [Click] and not turn.prompts[0].positive
    for bad in ({"click_radius": -1.0}, {"ring_vox": 0}):
        with pytest.raises((ConfigError, PromptError)):
            Cvpr25Clinician((1.0, 1.0, 1.0), **bad)
