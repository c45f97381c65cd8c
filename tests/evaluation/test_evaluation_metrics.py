"""Tests for ichseg.evaluation.metrics: known answers, empty-mask conventions, MONAI agreement."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import ndimage

from ichseg.errors import ConfigError, DimensionalityError, GeometryError, IntensityError
from ichseg.evaluation import metrics as M

ANISO = (2.5, 0.7, 0.9)


def cube(shape: tuple[int, int, int], lo: tuple[int, int, int], size: int) -> np.ndarray:
    a = np.zeros(shape, dtype=bool)
    a[lo[0] : lo[0] + size, lo[1] : lo[1] + size, lo[2] : lo[2] + size] = True
    return a


def sphere(shape: tuple[int, ...], centre: tuple[float, ...], r: float) -> np.ndarray:
    grid = np.indices(shape, dtype=float)
    d2 = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))
    return d2 <= r * r


def blob(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.random(shape), 2.0)
    return noise > np.quantile(noise, 0.7)


# --- overlap ---------------------------------------------------------------------------------
def test_dice_jaccard_known_offset_cubes() -> None:
    g = cube((16, 16, 16), (2, 2, 2), 4)
    p = cube((16, 16, 16), (4, 2, 2), 4)  # shifted by 2 voxels: overlap 2*4*4 = 32
    assert M.dice(p, g) == pytest.approx(2 * 32 / 128)
    assert M.jaccard(p, g) == pytest.approx(32 / 96)
    assert M.dice(g, g) == 1.0 and M.jaccard(g, g) == 1.0


def test_accepts_0_1_numeric_and_rejects_non_binary() -> None:
    g = cube((8, 8, 8), (2, 2, 2), 3)
    assert M.dice(g.astype(np.float32), g.astype(np.uint8)) == 1.0
    with pytest.raises(IntensityError, match="not binary"):
        M.dice(g * 0.7, g)
    with pytest.raises(IntensityError, match="NaN"):
        M.dice(np.full((2, 2, 2), np.nan), g[:2, :2, :2])
    with pytest.raises(GeometryError, match="does not match"):
        M.dice(g, g[:-1])


# --- surface distances -----------------------------------------------------------------------
def test_hausdorff_shifted_cube_anisotropic() -> None:
    g = cube((20, 20, 20), (4, 4, 4), 8)
    p = np.roll(g, 2, axis=0)  # 2 voxels along the 2.5 mm axis
    assert M.hausdorff(p, g, ANISO) == pytest.approx(5.0)
    p1 = np.roll(g, 3, axis=1)  # 3 voxels along the 0.7 mm axis
    assert M.hausdorff(p1, g, ANISO) == pytest.approx(2.1)


def test_hd95_ignores_a_small_outlier_but_hd_does_not() -> None:
    g = cube((24, 40, 40), (4, 4, 4), 12)
    p = g.copy()
    p[20, 36, 36] = True  # one far-away false-positive voxel
    far = math.dist((20 * 2.5, 36 * 0.7, 36 * 0.9), (15 * 2.5, 15 * 0.7, 15 * 0.9))
    assert M.hausdorff(p, g, ANISO) == pytest.approx(far)
    assert M.hd95(p, g, ANISO) == pytest.approx(0.0)
    assert M.normalized_surface_dice(p, g, ANISO, 2.0) < 1.0


def test_concentric_spheres_hausdorff_close_to_radius_gap() -> None:
    shape = (32, 32, 32)
    g = sphere(shape, (16, 16, 16), 9.0)
    p = sphere(shape, (16, 16, 16), 6.0)
    hd = M.hausdorff(p, g, 1.0)
    assert 2.0 <= hd <= 4.0
    assert M.hd95(p, g, 1.0) <= hd
    # doubling the voxel size doubles all distances
    assert M.hausdorff(p, g, 2.0) == pytest.approx(2 * hd)


def test_surface_is_one_voxel_shell() -> None:
    g = cube((10, 10, 10), (2, 2, 2), 5)
    s = M.surface(g)
    assert s.sum() == 5**3 - 3**3
    edge = np.ones((3, 3, 3), dtype=bool)  # touches the border: every voxel but the centre
    assert M.surface(edge).sum() == 26


def test_distances_do_not_depend_on_padding() -> None:
    rng = np.random.default_rng(3)
    p, g = blob((12, 20, 20), rng), blob((12, 20, 20), rng)
    padded = [np.pad(x, 5) for x in (p, g)]
    assert M.hd95(*padded, ANISO) == pytest.approx(M.hd95(p, g, ANISO))
    assert M.normalized_surface_dice(*padded, ANISO) == pytest.approx(
        M.normalized_surface_dice(p, g, ANISO)
    )


def test_spacing_validation() -> None:
    g = cube((8, 8, 8), (2, 2, 2), 3)
    with pytest.raises(GeometryError, match="3 axes"):
        M.hd95(g, g, (1.0, 1.0))
    with pytest.raises(GeometryError, match="positive"):
        M.hd95(g, g, (1.0, 0.0, 1.0))
    with pytest.raises(ConfigError, match="percentile"):
        M.hd_percentile(g, g, 1.0, percentile=120)


# --- empty-mask conventions ------------------------------------------------------------------
def test_empty_mask_conventions() -> None:
    z = np.zeros((6, 6, 6), dtype=bool)
    g = cube((6, 6, 6), (1, 1, 1), 3)
    assert M.dice(z, z) == M.DICE_BOTH_EMPTY == 1.0
    assert M.jaccard(z, z) == 1.0
    assert M.hausdorff(z, z, 1.0) == 0.0 and M.hd95(z, z, 1.0) == 0.0
    assert M.normalized_surface_dice(z, z, 1.0) == 1.0
    for a, b in ((z, g), (g, z)):
        assert M.dice(a, b) == 0.0 and M.jaccard(a, b) == 0.0
        assert math.isnan(M.hausdorff(a, b, 1.0)) and math.isnan(M.hd95(a, b, 1.0))
        assert M.normalized_surface_dice(a, b, 1.0) == 0.0
    d_pg, d_gp = M.surface_distances(z, g, 1.0)
    assert d_pg.size == 0 and np.all(np.isinf(d_gp))


def test_evaluate_case_flags_and_keys() -> None:
    z = np.zeros((6, 10, 10), dtype=bool)
    g = cube((6, 10, 10), (1, 2, 2), 4)
    out = M.evaluate_case(z, g, ANISO)
    assert out["hd_undefined"] == 1.0 and math.isnan(out["hd95"]) and out["dice"] == 0.0
    assert out["vol_pred_ml"] == 0.0
    assert out["vol_gt_ml"] == pytest.approx(64 * 2.5 * 0.7 * 0.9 / 1000)
    assert out["legacy_row_hd_inf"] == 4.0 and math.isnan(out["legacy_row_hd"])
    both = M.evaluate_case(z, z, ANISO)
    assert both["hd_undefined"] == 0.0 and both["hd"] == 0.0 and both["nsd2mm"] == 1.0
    assert "mae" not in both
    prob = g * 0.8
    full = M.evaluate_case(g, g, ANISO, prob=prob)
    assert set(M.METRIC_KEYS) <= set(full)
    assert full["mae"] == pytest.approx(0.2 * g.sum() / g.size)
    assert full["dice"] == 1.0 and full["hd"] == 0.0 and full["legacy_row_hd"] == 0.0
    with pytest.raises(DimensionalityError):
        M.evaluate_case(g[0], g[0], (1.0, 1.0))


def test_evaluate_case_matches_single_functions() -> None:
    rng = np.random.default_rng(5)
    p, g = blob((10, 24, 24), rng), blob((10, 24, 24), rng)
    out = M.evaluate_case(p, g, ANISO)
    assert out["hd"] == pytest.approx(M.hausdorff(p, g, ANISO))
    assert out["hd95"] == pytest.approx(M.hd95(p, g, ANISO))
    assert out["nsd2mm"] == pytest.approx(M.normalized_surface_dice(p, g, ANISO, 2.0))
    assert out["abs_vol_err_ml"] == pytest.approx(M.abs_volume_error_ml(p, g, ANISO))


def test_aggregate_reports_nan_counts() -> None:
    cases = [{"dice": 0.8, "hd95": 3.0}, {"dice": 0.6, "hd95": math.nan}, {"dice": 1.0}]
    agg = M.aggregate_cases(cases)
    assert agg["dice"].mean == pytest.approx(0.8) and agg["dice"].n == 3
    assert agg["hd95"].n == 1 and agg["hd95"].n_nan == 2 and agg["hd95"].mean == 3.0
    empty = M.summarize([math.nan])
    assert empty.n == 0 and empty.n_nan == 1 and math.isnan(empty.mean)


# --- probabilities and volumes ---------------------------------------------------------------
def test_mae_and_volume() -> None:
    g = cube((4, 4, 4), (0, 0, 0), 2)
    assert M.mae(g.astype(float), g) == 0.0
    assert M.mae(np.full(g.shape, 0.5), g) == pytest.approx(0.5)
    with pytest.raises(IntensityError, match=r"\[0, 1\]"):
        M.mae(np.full(g.shape, 1.5), g)
    assert M.volume_ml(g, (2.0, 3.0, 5.0)) == pytest.approx(8 * 30 / 1000)
    assert M.volume_ml(g, voxel_volume_ml=0.5) == pytest.approx(4.0)
    with pytest.raises(ConfigError):
        M.volume_ml(g, 1.0, voxel_volume_ml=0.5)
    with pytest.raises(GeometryError):
        M.volume_ml(g, voxel_volume_ml=-1.0)


# --- legacy row "Hausdorff" ------------------------------------------------------------------
def brute_row_hd(a: np.ndarray, b: np.ndarray) -> float:
    """Literal definition: rows are points in R^W, symmetric Hausdorff between the row sets."""
    d = np.array([[np.linalg.norm(ra.astype(float) - rb) for rb in b] for ra in a])
    return float(max(d.min(axis=1).max(), d.min(axis=0).max()))


def test_legacy_row_hd_two_pixel_dilation_scores_two() -> None:
    yy, xx = np.mgrid[:64, :64]
    gt = (yy - 32) ** 2 / 200 + (xx - 30) ** 2 / 90 < 1
    pred = ndimage.binary_dilation(gt, iterations=2)
    assert M.legacy_row_hausdorff(pred, gt) == pytest.approx(2.0)
    assert M.legacy_row_hausdorff(gt, gt) == 0.0


def test_legacy_row_hd_matches_literal_definition_and_is_not_a_real_hd() -> None:
    rng = np.random.default_rng(11)
    for _ in range(3):
        a = rng.random((12, 15)) > 0.7
        b = rng.random((12, 15)) > 0.6
        assert M.legacy_row_hausdorff(a, b) == pytest.approx(brute_row_hd(a, b))
    # a far-away false positive: real HD is large, the legacy value stays tiny (saturation)
    gt = np.zeros((64, 64), dtype=bool)
    gt[10:20, 10:20] = True
    pred = gt.copy()
    pred[55:58, 55:58] = True
    assert M.legacy_row_hausdorff(pred, gt) <= math.sqrt(10) + 1e-9
    assert M.hausdorff(pred, gt, 1.0) > 40


def test_legacy_empty_and_slice_mean() -> None:
    z2 = np.zeros((5, 5), dtype=bool)
    o2 = z2.copy()
    o2[2, 2] = True
    assert M.legacy_row_hausdorff(z2, z2) == 0.0
    assert math.isinf(M.legacy_row_hausdorff(o2, z2))
    with pytest.raises(DimensionalityError):
        M.legacy_row_hausdorff(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))
    gt = np.zeros((4, 5, 5), dtype=bool)
    pred = gt.copy()
    gt[0, 1:3, 1:3] = True
    pred[0, 1:3, 1:4] = True  # slice 0: one extra pixel in each of two rows -> 1.0
    gt[1, 2, 2] = True  # slice 1: GT only -> inf, skipped
    res = M.legacy_slice_mean_row_hd(pred, gt)
    assert (res.mean, res.n_slices, res.n_inf) == (pytest.approx(1.0), 2, 1)
    # "ijk" layout gives the same answer on the transposed arrays
    res_ijk = M.legacy_slice_mean_row_hd(pred.transpose(2, 1, 0), gt.transpose(2, 1, 0), "ijk")
    assert res_ijk == res
    with pytest.raises(ConfigError):
        M.legacy_slice_mean_row_hd(pred, gt, "xyz")  # type: ignore[arg-type]


# --- cross-checks against MONAI --------------------------------------------------------------
def _monai(fn_name: str, p: np.ndarray, g: np.ndarray, **kw: object) -> float:
    import torch
    from monai import metrics as mm

    pt = torch.from_numpy(p[None, None].astype(np.float32))
    gt = torch.from_numpy(g[None, None].astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(getattr(mm, fn_name)(pt, gt, include_background=True, **kw).item())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_monai_on_random_shapes_anisotropic(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (16, 48, 48)
    p, g = blob(shape, rng), blob(shape, rng)
    spacing = (float(rng.uniform(2, 6)), float(rng.uniform(0.4, 1)), float(rng.uniform(0.4, 1)))
    assert M.dice(p, g) == pytest.approx(_monai("compute_dice", p, g), abs=1e-5)
    assert M.jaccard(p, g) == pytest.approx(_monai("compute_iou", p, g), abs=1e-5)
    assert M.hausdorff(p, g, spacing) == pytest.approx(
        _monai("compute_hausdorff_distance", p, g, spacing=spacing), rel=1e-4
    )
    assert M.hd95(p, g, spacing) == pytest.approx(
        _monai("compute_hausdorff_distance", p, g, percentile=95, spacing=spacing), rel=1e-4
    )
    assert M.normalized_surface_dice(p, g, spacing, 2.0) == pytest.approx(
        _monai("compute_surface_dice", p, g, class_thresholds=[2.0], spacing=spacing), abs=1e-4
    )


def test_one_sided_shapes_match_monai() -> None:
    """A shape inside another: the two directed percentiles differ; MONAI takes the max."""
    shape = (12, 40, 40)
    g = np.zeros(shape, dtype=bool)
    g[2:10, 5:35, 5:35] = True
    p = np.zeros(shape, dtype=bool)
    p[4:8, 12:20, 12:30] = True
    sp = (4.0, 0.5, 0.8)
    assert M.hd95(p, g, sp) == pytest.approx(
        _monai("compute_hausdorff_distance", p, g, percentile=95, spacing=sp), rel=1e-4
    )


def test_hd95_is_max_of_directed_percentiles_not_pooled() -> None:
    """A far-away extra blob in the prediction: MONAI's HD95 (max of the directed P95) differs
    from the P95 of the pooled distances; ours must follow MONAI."""
    shape = (12, 40, 40)
    g = np.zeros(shape, dtype=bool)
    g[2:10, 5:20, 5:20] = True
    p = g.copy()
    p[3:9, 28:35, 28:35] = True
    sp = (4.0, 0.5, 0.8)
    d_pg, d_gp = M.surface_distances(p, g, sp)
    pooled = float(np.percentile(np.r_[d_pg, d_gp], 95))
    ours = M.hd95(p, g, sp)
    assert ours == pytest.approx(float(np.percentile(d_pg, 95)))
    assert abs(ours - pooled) > 0.5
    assert ours == pytest.approx(
        _monai("compute_hausdorff_distance", p, g, percentile=95, spacing=sp), rel=1e-4
    )
