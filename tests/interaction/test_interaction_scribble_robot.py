"""Scribble robot: strokes lie in the right error regions, fallbacks, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk, ellipse

from ichseg.errors import ConfigError, DimensionalityError, PromptError
from ichseg.interaction.hints import rasterize_polyline
from ichseg.interaction.scribble_robot import ScribbleRobot, disc_opening, skeleton_paths

SHAPE = (64, 64)


def _ellipse(cy: float, cx: float, ry: float, rx: float, rot: float = 0.0) -> np.ndarray:
    m = np.zeros(SHAPE, dtype=bool)
    rr, cc = ellipse(cy, cx, ry, rx, shape=SHAPE, rotation=rot)
    m[rr, cc] = True
    return m


def _drawn(stroke) -> np.ndarray:
    return rasterize_polyline(stroke.points, SHAPE)


def _random_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = _ellipse(*rng.uniform(24, 40, 2), *rng.uniform(6, 16, 2), rng.uniform(0, 3))
    pred = _ellipse(*rng.uniform(24, 40, 2), *rng.uniform(6, 16, 2), rng.uniform(0, 3))
    return pred, gt


@pytest.mark.parametrize("seed", range(6))
def test_strokes_lie_in_their_error_regions(seed):
    pred, gt = _random_case(seed)
    fn, fp = gt & ~pred, pred & ~gt
    strokes = ScribbleRobot().strokes(pred, gt)
    assert strokes
    for s in strokes:
        region = fn if s.positive else fp
        assert region.any()
        assert not np.any(_drawn(s) & ~region)
    assert any(s.positive for s in strokes) == bool(fn.any())
    assert any(not s.positive for s in strokes) == bool(fp.any())


def test_zero_prediction_gives_only_positive_strokes_spanning_the_lesion():
    gt = _ellipse(32, 32, 10, 20)
    strokes = ScribbleRobot().strokes(np.zeros(SHAPE), gt.astype(np.uint8))
    assert strokes and all(s.positive for s in strokes)
    drawn = _drawn(strokes[0])
    assert not np.any(drawn & ~gt)
    xs = np.nonzero(drawn)[1]
    assert xs.max() - xs.min() >= 20  # medial axis of a 40 px wide ellipse is long


def test_perfect_prediction_gives_no_strokes():
    gt = _ellipse(32, 32, 10, 20)
    assert ScribbleRobot().strokes(gt, gt) == []


@pytest.mark.parametrize("pixels", [[(10, 10)], [(10, 10), (10, 11), (11, 10), (11, 11)]])
def test_tiny_error_region_gives_a_short_stroke_or_dot(pixels):
    gt = np.zeros(SHAPE, dtype=bool)
    for p in pixels:
        gt[p] = True
    strokes = ScribbleRobot().strokes(np.zeros(SHAPE, bool), gt)
    assert len(strokes) == 1 and strokes[0].positive
    assert not np.any(_drawn(strokes[0]) & ~gt)
    assert ScribbleRobot(dot_fallback=False).strokes(np.zeros(SHAPE, bool), gt) == []


def test_ring_region_cycle_is_cut_and_stroke_stays_inside():
    gt = _ellipse(32, 32, 20, 20) & ~_ellipse(32, 32, 10, 10)
    strokes = ScribbleRobot().strokes(np.zeros(SHAPE, bool), gt)
    assert len(strokes) == 1
    drawn = _drawn(strokes[0])
    assert not np.any(drawn & ~gt) and drawn.sum() > 40


def test_strokes_are_deterministic_and_jitter_uses_rng():
    pred, gt = _random_case(3)
    a = ScribbleRobot().strokes(pred, gt)
    assert a == ScribbleRobot().strokes(pred, gt)
    robot = ScribbleRobot(kernel_jitter=0.5)
    r1 = robot.strokes(pred, gt, np.random.default_rng(7))
    assert r1 == robot.strokes(pred, gt, np.random.default_rng(7))
    with pytest.raises(ConfigError):
        robot.strokes(pred, gt)


def test_opening_removes_thin_sliver_so_strokes_target_the_big_error():
    gt = _ellipse(32, 20, 12, 16)
    gt[5, 5:60] = True  # a 1-px sliver
    strokes = ScribbleRobot(kernel_size=0.3).strokes(np.zeros(SHAPE, bool), gt)
    assert len(strokes) == 1
    ys = np.nonzero(_drawn(strokes[0]))[0]
    assert ys.min() > 10
    # a disc's medial axis is ~1 pixel (no tree with 4 nodes): fallback stroke at its centre
    disc = _ellipse(32, 32, 12, 12)
    disc[5, 5:60] = True
    (s,) = ScribbleRobot(kernel_size=0.3).strokes(np.zeros(SHAPE, bool), disc)
    assert np.all(np.abs(np.asarray(s.points) - 32) <= 2)


def test_skeleton_paths_longest_path_of_a_tree():
    sk = np.zeros((20, 20), dtype=bool)
    sk[10, 2:18] = True  # 16 px bar
    sk[7:10, 9] = True  # 3 px spur
    paths = skeleton_paths(sk, min_nodes=4)
    assert len(paths) == 1
    ends = {tuple(paths[0][0]), tuple(paths[0][-1])}
    assert ends == {(10, 2), (10, 17)}
    assert skeleton_paths(sk, min_nodes=100) == []
    assert skeleton_paths(np.zeros((5, 5), bool)) == []


def test_disc_opening_is_anti_extensive():
    m = _ellipse(32, 32, 10, 20)
    m[0:3, :] = True
    o = disc_opening(m, 3)
    assert not np.any(o & ~m) and not o[0:3].any() and o[32, 32]


def test_bad_inputs():
    with pytest.raises(PromptError):
        ScribbleRobot().strokes(np.zeros((4, 4)), np.zeros((5, 5)))
    with pytest.raises(DimensionalityError):
        ScribbleRobot().strokes(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)))
    with pytest.raises(PromptError):
        ScribbleRobot().strokes(np.full((4, 4), np.nan), np.zeros((4, 4)))
    with pytest.raises(ConfigError):
        ScribbleRobot(min_nb_nodes=0)
    with pytest.raises(ConfigError):
        ScribbleRobot(skeleton_method="magic")


def test_thin_skeleton_variant_also_stays_inside():
    pred, gt = _random_case(1)
    gt = gt | _ellipse(50, 50, 5, 5)
    pred[disk((32, 32), 4, shape=SHAPE)] = True
    for s in ScribbleRobot(skeleton_method="thin", width=2.0).strokes(pred, gt):
        region = (gt & ~pred) if s.positive else (pred & ~gt)
        assert not np.any(_drawn(s) & ~region) and s.width_vox == 2.0
