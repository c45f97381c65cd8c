"""Random-walker baseline session: segmentation, prompt-only ROI, geometry, seeds, undo."""

from __future__ import annotations

import numpy as np
import pytest

from ichseg.errors import ConfigError, IntensityError, PromptError
from ichseg.evaluation.metrics import dice
from ichseg.interaction.prompts import Click, Scribble
from ichseg.interaction.random_walker import (
    RandomWalkerConfig,
    RandomWalkerEngine,
    out_of_range_mask,
    random_walk_probability,
)
from ichseg.interaction.session import InteractiveSession
from ichseg.io.volume import Intensity, Volume, Window, make_affine, reorient, to_canonical

SHAPE = (48, 48, 12)  # (i, j, k)
SPACING = (1.0, 1.0, 4.0)
CFG = RandomWalkerConfig(margin_mm=8.0, z_margin=3)


def blob(ii, jj, kk, c, r):
    return ((ii - c[0]) / r[0]) ** 2 + ((jj - c[1]) / r[1]) ** 2 + ((kk - c[2]) / r[2]) ** 2 < 1


def head(blobs=(((15, 22, 6), (5, 4, 2.2)),), hu_blob=72.0, seed=0):
    """Skull ring, brain ~35 HU with noise, bright ellipsoid bleeds; returns (image, mask)."""
    rng = np.random.default_rng(seed)
    ii, jj, kk = np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij")
    r2 = ((ii - 23.5) / 22) ** 2 + ((jj - 23.5) / 22) ** 2
    img = np.full(SHAPE, -1000.0)
    img[r2 < 1] = 1000.0
    img[r2 < 0.8] = 35.0
    mask = np.zeros(SHAPE, bool)
    for c, r in blobs:
        mask |= blob(ii, jj, kk, c, r)
    img[mask] = hu_blob
    img += rng.normal(0, 3, SHAPE) * (r2 < 0.8)
    vol = Volume(img.astype(np.int16), make_affine(SPACING, "LPS", (5.0, 6.0, 7.0)))
    return vol, vol.as_label(mask)


def centre_scribble(mask: Volume, positive: bool = True) -> Scribble:
    gt = to_canonical(mask)[0].zyx()
    z = int(np.argmax(gt.reshape(gt.shape[0], -1).sum(1)))
    ys, xs = np.nonzero(gt[z])
    cy, cx = float(ys.mean()), float(xs.mean())
    return Scribble(z, [(cy - 1, cx - 2), (cy + 1, cx + 2)], positive, 1.0)


def test_segments_bright_blob_from_one_scribble():
    vol, mask = head()
    s = InteractiveSession(RandomWalkerEngine(CFG))
    s.set_volume(vol)
    s.add_prompt(centre_scribble(mask))
    r = s.run_round()
    assert r.mask.shape == vol.shape and r.probability.shape == vol.shape
    assert r.probability.dtype == np.float32
    assert r.probability.min() >= 0.0 and r.probability.max() <= 1.0
    assert dice(r.mask, mask.array) > 0.8
    assert r.volume_ml == pytest.approx(r.mask.sum() * vol.voxel_volume_ml)
    assert s.mask().same_geometry(vol) and s.mask().is_label
    assert s.volume_ml == r.volume_ml and r.index == 1 and r.delta_ml == r.volume_ml


def test_full_resolution_and_downsampled_agree():
    vol, mask = head()
    out = []
    for d in (1, 2):
        s = InteractiveSession(RandomWalkerEngine(RandomWalkerConfig(margin_mm=8.0, downsample=d)))
        s.set_volume(vol)
        s.add_prompt(centre_scribble(mask))
        out.append(s.run_round().mask)
        assert dice(out[-1], mask.array) > 0.8
    assert dice(out[0], out[1]) > 0.85


def test_roi_comes_from_prompts_only():
    a = ((14, 14, 6), (4, 4, 2.0))
    b = ((33, 33, 6), (4, 4, 2.0))
    vol, _ = head(blobs=(a, b))
    _, mask_a = head(blobs=(a,))
    _, mask_b = head(blobs=(b,))
    results = {}
    for name, m in (("a", mask_a), ("b", mask_b)):
        s = InteractiveSession(RandomWalkerEngine(CFG))
        s.set_volume(vol)
        sc = centre_scribble(m)
        s.add_prompt(sc)
        res = s.run_round()
        results[name] = res.mask
        zs, ys, xs = s.state.engine_state
        assert zs == slice(sc.z - 3, sc.z + 4)
        py, px = np.nonzero(s.engine.user_labels(s.prompts)[sc.z] == 1)
        assert ys == slice(max(py.min() - 8, 0), min(py.max() + 9, 48))
        assert xs == slice(max(px.min() - 8, 0), min(px.max() + 9, 48))
        canon = to_canonical(vol.as_label(res.mask))[0].zyx()
        outside = np.ones(canon.shape, bool)
        outside[s.state.engine_state] = False
        assert not canon[outside].any()
        assert dice(res.mask, m.array) > 0.8  # the prompted bleed only, not the other one
    assert not (results["a"] & results["b"]).any()


def test_deterministic():
    vol, mask = head()
    sc = centre_scribble(mask)
    runs = []
    for _ in range(2):
        s = InteractiveSession(RandomWalkerEngine(CFG))
        s.set_volume(vol)
        s.add_prompt(sc)
        runs.append(s.run_round().probability)
    np.testing.assert_array_equal(runs[0], runs[1])


def test_no_positive_prompt_gives_empty_result():
    vol, mask = head()
    s = InteractiveSession(RandomWalkerEngine(CFG))
    s.set_volume(vol)
    s.add_prompt(centre_scribble(mask, positive=False))
    r = s.run_round()
    assert not r.mask.any() and r.probability.max() == 0.0 and s.state.engine_state is None


def test_original_grid_of_reoriented_scan():
    vol, mask = head()
    s = InteractiveSession(RandomWalkerEngine(CFG))
    s.set_volume(vol)
    sc = centre_scribble(mask)
    s.add_prompt(sc)
    ref = s.run_round().mask
    vol_ras, _ = reorient(vol, "RAS")
    s2 = InteractiveSession(RandomWalkerEngine(CFG))
    s2.set_volume(vol_ras)
    assert s2.grid_ref.shape_zyx == s.grid_ref.shape_zyx
    s2.add_prompt(sc)  # canonical indices: the same prompt
    got = s2.run_round().mask
    expected, _ = reorient(vol.as_label(ref), "RAS")
    np.testing.assert_array_equal(got, expected.array)


def test_out_of_range_voxels_and_prompts_override():
    vol, mask = head(hu_blob=300.0)  # a calcification-like bright blob: outside 0..120 HU
    s = InteractiveSession(RandomWalkerEngine(CFG))
    s.set_volume(vol)
    sc = centre_scribble(mask)
    s.add_prompt(sc)
    r = s.run_round()
    canon_prob = to_canonical(s.probability())[0].zyx()
    drawn = s.engine.user_labels(s.prompts)[sc.z] == 1
    assert np.all(canon_prob[sc.z][drawn] == 1.0)  # the user's pixels keep their label
    blob_c = to_canonical(mask)[0].zyx().astype(bool)
    blob_c[sc.z][drawn] = False
    assert canon_prob[blob_c].max() == 0.0  # everything else > 120 HU is background
    assert r.mask.sum() == int(drawn.sum())


def test_background_mode_and_negative_prompt_correction():
    vol, mask = head()
    sc = centre_scribble(mask)
    s = InteractiveSession(
        RandomWalkerEngine(RandomWalkerConfig(margin_mm=8.0, out_of_range="background"))
    )
    s.set_volume(vol)
    s.add_prompt(sc)
    r1 = s.run_round()
    assert dice(r1.mask, mask.array) > 0.8
    # a negative scribble across the blob's middle slice removes it there
    gt = to_canonical(mask)[0].zyx()
    ys, xs = np.nonzero(gt[sc.z])
    s.add_prompt(Scribble(sc.z, list(zip(ys.tolist(), xs.tolist(), strict=True)), False, 1.0))
    r2 = s.run_round()
    canon = to_canonical(vol.as_label(r2.mask))[0].zyx()
    assert not canon[sc.z].any() and r2.volume_ml < r1.volume_ml
    assert len(s.prompts) == 2 and r2.index == 2


def test_undo_redo_and_accumulation():
    vol, mask = head()
    s = InteractiveSession(RandomWalkerEngine(CFG))
    with pytest.raises(PromptError):
        s.add_click(0, 1, 1)
    s.set_volume(vol)
    with pytest.raises(PromptError):
        s.run_round()
    with pytest.raises(PromptError):
        s.add_prompt(Click(99, 1, 1, True))
    sc = centre_scribble(mask)
    s.add_prompt(sc)
    r1 = s.run_round()
    s.add_click(sc.z + 1, sc.points[0][0], sc.points[0][1], positive=True)
    s.run_round()
    assert s.round_index == 2 and len(s.results()) == 2
    s.undo()
    assert s.round_index == 1 and s.volume_ml == r1.volume_ml and s.can_redo
    np.testing.assert_array_equal(s.mask().array, r1.mask)
    s.redo()
    assert s.round_index == 2
    s.undo()
    s.undo()
    assert s.round_index == 0 and not s.mask().array.any()
    with pytest.raises(PromptError):
        s.undo()


def test_windowed_input_and_intensity_errors():
    vol, mask = head()
    w = Window(40, 80)
    stored = np.clip((vol.array - w.lo) / w.width * 255.0, 0, 255).round()
    win = Volume(stored, vol.affine, Intensity.windowed(w))
    oor = out_of_range_mask(win, (0.0, 120.0))
    assert oor is not None and oor[stored == 0].all() and not oor[stored == 255].any()
    s = InteractiveSession(RandomWalkerEngine(CFG))
    s.set_volume(win)
    s.add_prompt(centre_scribble(mask))
    assert dice(s.run_round().mask, mask.array) > 0.8
    unknown = Volume(stored, vol.affine, Intensity.windowed(None))
    assert out_of_range_mask(unknown, (0.0, 120.0)) is None
    with pytest.raises(IntensityError):
        InteractiveSession(RandomWalkerEngine(CFG)).set_volume(unknown)
    with pytest.raises(IntensityError):
        InteractiveSession(RandomWalkerEngine(CFG)).set_volume(mask)


@pytest.mark.parametrize(
    "kw",
    [
        {"beta": 0},
        {"margin_mm": -1},
        {"z_margin": 1.5},
        {"z_margin_mm": -2.0},
        {"downsample": 0},
        {"mode": "amg"},
        {"hu_range": (100, 0)},
        {"out_of_range": "drop"},
        {"solver": "amg"},
        {"min_weight": 0.0},
    ],
)
def test_config_validation(kw):
    with pytest.raises(ConfigError):
        RandomWalkerConfig(**kw)


def test_solver_matches_skimage_random_walker():
    from skimage.segmentation import random_walker

    rng = np.random.default_rng(0)
    data = rng.random((3, 14, 14))
    data[:, 4:9, 4:9] += 1.0
    seeds = np.zeros(data.shape, np.int32)
    seeds[1, 6, 6] = 1
    seeds[:, 0, :] = seeds[:, -1, :] = 2
    for spacing in (None, (3.0, 1.0, 1.0)):
        ref = random_walker(
            data, seeds, beta=130, mode="bf", return_full_prob=True, spacing=spacing
        )
        for solver in ("direct", "cg"):
            got = random_walk_probability(
                data, seeds, beta=130, spacing=spacing, min_weight=1e-12, solver=solver, tol=1e-10
            )
            np.testing.assert_allclose(got, ref[0], atol=1e-4)
    # a pocket of unknown voxels walled off by inactive ones touches no seed: probability 0
    walled = seeds.copy()
    walled[:, 10, :] = -1
    walled[:, 11:13, :] = 0
    walled[:, 13, :] = -1
    got = random_walk_probability(data, walled, beta=130)
    assert np.all(got[:, 11:13] == 0.0) and got[1, 6, 6] == 1.0 and got[1, 5, 6] > 0.5


@pytest.mark.parametrize("solver", ["direct", "skimage"])
def test_other_solvers_segment_the_blob(solver):
    vol, mask = head()
    s = InteractiveSession(RandomWalkerEngine(RandomWalkerConfig(margin_mm=8.0, solver=solver)))
    s.set_volume(vol)
    s.add_prompt(centre_scribble(mask))
    assert dice(s.run_round().mask, mask.array) > 0.8


def test_z_margin_is_physical_and_keeps_typical_scans_at_three_slices():
    """The ROI grows a fixed distance along z, whatever the slice thickness."""
    engine = RandomWalkerEngine(RandomWalkerConfig())
    assert [engine.z_margin_slices(mm) for mm in (4.8, 5.0, 6.0)] == [3, 3, 3]
    assert engine.z_margin_slices(1.0) == 16 and engine.z_margin_slices(10.0) == 2
    fixed = RandomWalkerEngine(RandomWalkerConfig(z_margin=2))
    assert fixed.z_margin_slices(1.0) == 2
    thin = Volume(np.zeros((32, 32, 60), np.int16) + 40, make_affine((1.0, 1.0, 1.0), "LPS"))
    engine.encode(thin)  # LPS: already canonical
    roi = engine.roi_for([Scribble(30, [(10, 10), (10, 14)], True, 1.0)])
    assert roi[0] == slice(14, 47)  # 16 mm above and below slice 30
