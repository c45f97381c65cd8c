"""Tests for ichseg.quantify.volume: planimetric volume, ABC/2, expansion, components."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ichseg.errors import ConfigError, IntensityError
from ichseg.io.volume import Intensity, Volume, make_affine, reorient
from ichseg.quantify import volume as Q

SPACING = (0.5, 0.6, 5.0)
REAL = Path("/work/shared/data/real/case166")


def ellipsoid_mask(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    semi_axes_mm: tuple[float, float, float],
    centre_vox: tuple[float, float, float],
    angle_deg: float = 0.0,
) -> np.ndarray:
    """Ellipsoid (semi-axes a, b in-plane rotated by ``angle_deg``, c along k) on an LPS grid."""
    ii, jj, kk = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    x = (ii - centre_vox[0]) * spacing[0]
    y = (jj - centre_vox[1]) * spacing[1]
    z = (kk - centre_vox[2]) * spacing[2]
    t = math.radians(angle_deg)
    xr = x * math.cos(t) + y * math.sin(t)
    yr = -x * math.sin(t) + y * math.cos(t)
    a, b, c = semi_axes_mm
    return (xr / a) ** 2 + (yr / b) ** 2 + (z / c) ** 2 <= 1.0


def as_volume(mask: np.ndarray, spacing: tuple[float, float, float], codes: str = "LPS") -> Volume:
    return Volume(mask.astype(np.uint8), make_affine(spacing, codes), Intensity.label())


@pytest.fixture(scope="module")
def ellipsoid() -> tuple[Volume, float]:
    a, b, c = 20.0, 12.0, 40.0
    m = ellipsoid_mask((100, 90, 20), SPACING, (a, b, c), (50.3, 45.2, 9.7), angle_deg=30)
    return as_volume(m, SPACING), 4.0 / 3.0 * math.pi * a * b * c / 1000.0


def test_planimetric_exact_voxel_count(ellipsoid: tuple[Volume, float]) -> None:
    vol, true_ml = ellipsoid
    n = int(vol.array.sum())
    assert Q.planimetric_volume_ml(vol) == pytest.approx(n * 0.5 * 0.6 * 5.0 / 1000)
    assert Q.planimetric_volume_ml(vol) == pytest.approx(true_ml, rel=0.02)
    box = np.zeros((10, 10, 10), dtype=np.uint8)
    box[2:5, 2:6, 3:8] = 1  # 60 voxels of 0.5*0.6*5 = 1.5 mm^3
    assert Q.planimetric_volume_ml(as_volume(box, SPACING)) == pytest.approx(60 * 1.5 / 1000)


def test_abc2_on_ellipsoid(ellipsoid: tuple[Volume, float]) -> None:
    vol, true_ml = ellipsoid
    r = Q.abc2(vol)
    assert r.a_mm == pytest.approx(40.0, abs=1.5)  # 2a, edge-to-edge on the pixel squares
    assert r.b_mm == pytest.approx(24.0, abs=1.5)  # 2b
    assert r.slice_axis == 2 and r.slice_index in (9, 10)
    assert r.slice_thickness_mm == 5.0
    # Kothari weights follow the slice areas exactly
    areas = vol.array.sum(axis=(0, 1)).astype(float)
    ratio = areas[areas > 0] / areas.max()
    expected_w = np.where(ratio >= 0.75, 1.0, np.where(ratio >= 0.25, 0.5, 0.0)).sum()
    assert r.weighted_slices == expected_w
    assert r.n_slices == int((areas > 0).sum())
    assert r.c_mm == expected_w * 5.0
    assert r.volume_ml == pytest.approx(r.a_mm * r.b_mm * r.c_mm / 2000)
    # unweighted ABC/2 is close to the true ellipsoid volume; Kothari-weighted is lower
    unweighted = Q.abc2(vol, weighting="unweighted")
    assert unweighted.volume_ml == pytest.approx(true_ml, rel=0.10)
    assert 0.5 * true_ml < r.volume_ml < unweighted.volume_ml


def test_abc2_calipers_are_perpendicular_and_on_the_lesion(ellipsoid: tuple[Volume, float]) -> None:
    vol, _ = ellipsoid
    r = Q.abc2(vol)
    assert r.a is not None and r.b is not None
    da = r.a.ras[1] - r.a.ras[0]
    db = r.b.ras[1] - r.b.ras[0]
    assert np.linalg.norm(da) == pytest.approx(r.a_mm)
    assert np.linalg.norm(db) == pytest.approx(r.b_mm)
    assert abs(da @ db) / (r.a_mm * r.b_mm) < 1e-6
    assert np.allclose(r.a.ijk[:, 2], r.slice_index) and np.allclose(r.b.ijk[:, 2], r.slice_index)
    # A is oriented like the rotated long axis (30 degrees in the i/j mm plane)
    dmm = (r.a.ijk[1] - r.a.ijk[0])[:2] * np.array(SPACING[:2])
    angle = math.degrees(math.atan2(dmm[1], dmm[0])) % 180
    assert angle == pytest.approx(30, abs=4)
    # endpoints lie within ~1 voxel of lesion voxels
    lesion = np.argwhere(vol.array[:, :, r.slice_index] > 0)
    for p in (*r.a.ijk, *r.b.ijk):
        assert np.min(np.linalg.norm(lesion - p[:2], axis=1)) <= 1.0


def test_abc2_cylinder_known_a_b_c() -> None:
    """An axis-aligned elliptic cylinder: every slice weighs 1, A and B along the axes."""
    sp = (0.8, 0.8, 3.0)
    m = ellipsoid_mask((60, 60, 12), sp, (16.0, 8.0, 1e9), (30, 30, 6))
    m[:, :, :3] = False
    m[:, :, 10:] = False  # 7 slices
    r = Q.abc2(as_volume(m, sp))
    assert r.c_mm == pytest.approx(7 * 3.0) and r.n_slices == 7 and r.weighted_slices == 7
    rows = m[:, :, 5].any(axis=1).sum()  # extent along i in voxels
    cols = m[:, :, 5].any(axis=0).sum()
    assert r.a_mm == pytest.approx(rows * 0.8, abs=0.9)
    assert r.b_mm == pytest.approx(cols * 0.8, abs=0.5)


@pytest.mark.parametrize("codes", ["RAS", "PSL", "LAI"])
def test_same_numbers_in_any_orientation(ellipsoid: tuple[Volume, float], codes: str) -> None:
    vol, _ = ellipsoid
    other, _ = reorient(vol, codes)
    assert other.axcodes == tuple(codes)
    assert Q.planimetric_volume_ml(other) == pytest.approx(Q.planimetric_volume_ml(vol))
    r0, r1 = Q.abc2(vol), Q.abc2(other)
    for key in ("volume_ml", "a_mm", "b_mm", "c_mm", "weighted_slices", "max_area_mm2"):
        assert getattr(r1, key) == pytest.approx(getattr(r0, key)), key
    assert r1.slice_axis == codes.index(next(c for c in codes if c in "SI"))
    # the calipers point at the same world positions (endpoint order may differ)
    assert r0.a is not None and r1.a is not None
    assert np.allclose(np.sort(r1.a.ras, axis=0), np.sort(r0.a.ras, axis=0), atol=1e-6)
    # input-grid voxel indices map back to the same world points
    assert np.allclose(other.voxel_to_world(r1.a.ijk), r1.a.ras, atol=1e-6)
    c0, c1 = Q.components_report(vol)[0], Q.components_report(other)[0]
    assert np.allclose(c0.centroid_ras, c1.centroid_ras, atol=1e-6)
    assert c0.n_slices == c1.n_slices


def test_empty_mask_gives_zero_without_crashing() -> None:
    empty = as_volume(np.zeros((8, 8, 4), dtype=bool), SPACING)
    assert Q.planimetric_volume_ml(empty) == 0.0
    r = Q.abc2(empty)
    assert (r.volume_ml, r.a_mm, r.b_mm, r.c_mm, r.n_slices) == (0.0, 0.0, 0.0, 0.0, 0)
    assert r.a is None and r.slice_index == -1
    assert Q.components_report(empty) == []
    rep = Q.volume_report(empty).as_dict()
    assert rep["planimetric_ml"] == 0.0 and rep["abc2"]["a"] is None


def test_single_voxel_abc2() -> None:
    m = np.zeros((8, 8, 4), dtype=bool)
    m[3, 4, 2] = True
    r = Q.abc2(as_volume(m, (1.0, 1.0, 2.0)))
    assert r.a_mm == pytest.approx(math.sqrt(2))
    assert r.b_mm > 0 and r.c_mm == 2.0


def test_mask_validation_and_labels() -> None:
    prob = np.random.default_rng(0).random((6, 6, 3)).astype(np.float32)
    with pytest.raises(IntensityError, match="threshold"):
        Q.planimetric_volume_ml(Volume(prob, make_affine(SPACING)))
    lab = np.zeros((6, 6, 3), dtype=np.uint8)
    lab[0:2, 0:2, 0] = 2  # 4 voxels IPH
    lab[4, 4, 1:3] = 3  # 2 voxels IVH
    v = as_volume(lab, (1.0, 1.0, 1.0))
    assert Q.volumes_by_label(v) == {2: pytest.approx(0.004), 3: pytest.approx(0.002)}
    assert Q.planimetric_volume_ml(v, label=3) == pytest.approx(0.002)
    assert Q.planimetric_volume_ml(v) == pytest.approx(0.006)
    with pytest.raises(ConfigError):
        Q.abc2(v, weighting="simpson")  # type: ignore[arg-type]


def test_components_report() -> None:
    m = np.zeros((20, 20, 10), dtype=bool)
    m[2:6, 2:6, 1:3] = True  # 32 voxels, slices 1-2
    m[10:15, 10:15, 4:8] = True  # 100 voxels, slices 4-7
    m[18, 18, 9] = True
    vol = as_volume(m, (1.0, 2.0, 3.0))
    comps = Q.components_report(vol)
    assert [c.n_voxels for c in comps] == [100, 32, 1]
    assert [c.index for c in comps] == [1, 2, 3]
    big = comps[0]
    assert big.volume_ml == pytest.approx(100 * 6 / 1000)
    assert big.slices == (4, 5, 6, 7) and big.n_slices == 4
    assert big.centroid_ijk == pytest.approx((12.0, 12.0, 5.5))
    assert big.centroid_ras == pytest.approx(tuple(vol.voxel_to_world(np.array([12, 12, 5.5]))[0]))
    # diagonal touching voxels: one component with 26-connectivity, two with 6
    d = np.zeros((5, 5, 5), dtype=bool)
    d[1, 1, 1] = d[2, 2, 2] = True
    assert len(Q.components_report(as_volume(d, (1, 1, 1)))) == 1
    assert len(Q.components_report(as_volume(d, (1, 1, 1)), connectivity=1)) == 2
    with pytest.raises(ConfigError):
        Q.components_report(vol, connectivity=4)


def test_expansion_definitions_and_boundaries() -> None:
    e = Q.expansion(10.0, 14.0, hours=2.0, interval_hours=8.0)
    assert e.abs_change_ml == pytest.approx(4.0)
    assert e.rel_change == pytest.approx(0.4) and e.ratio == pytest.approx(1.4)
    assert e.flags == {"dowlatshahi": True, "kazui": True, "jcm2025": True}
    assert e.expanded and e.criterion == "dowlatshahi"
    assert e.uhg_ml_per_h == pytest.approx(5.0) and e.uhg_high is False
    assert e.growth_ml_per_h == pytest.approx(0.5)
    # exactly 6 mL on a large bleed: not "> 6 mL", not > 33 %
    big = Q.expansion(60.0, 66.0)
    assert big.flags["dowlatshahi"] is False and big.flags["jcm2025"] is False
    # exactly 12.5 mL counts for Kazui / JCM (>=)
    k = Q.expansion(60.0, 72.5)
    assert k.flags["kazui"] and k.flags["jcm2025"] and k.flags["dowlatshahi"]
    # 30 % (JCM) but not 33 % and below 6 mL
    j = Q.expansion(10.0, 13.0, criterion="jcm2025")
    assert j.expanded and not j.flags["dowlatshahi"] and not j.flags["kazui"]
    shrink = Q.expansion(20.0, 10.0)
    assert not any(shrink.flags.values()) and shrink.rel_change == pytest.approx(-0.5)
    new = Q.expansion(0.0, 2.0)
    assert math.isinf(new.rel_change) and all(new.flags.values())
    none = Q.expansion(0.0, 0.0)
    assert not any(none.flags.values())
    assert Q.expansion(30.0, 31.0, hours=3.0).uhg_high is True
    for bad in (
        {"baseline_ml": -1.0, "followup_ml": 1.0},
        {"baseline_ml": math.nan, "followup_ml": 1.0},
    ):
        with pytest.raises(ConfigError):
            Q.expansion(**bad)
    with pytest.raises(ConfigError):
        Q.expansion(1.0, 2.0, hours=0.0)
    with pytest.raises(ConfigError):
        Q.expansion(1.0, 2.0, criterion="brott")
    assert e.as_dict()["expanded"] is True


@pytest.mark.skipif(not (REAL / "mask.nii.gz").exists(), reason="real case 166 not available")
def test_real_case_sanity() -> None:
    from ichseg.io.nifti import read_nifti

    mask = read_nifti(REAL / "mask.nii.gz", Intensity.label())
    rep = Q.volume_report(mask)
    n = int((mask.array > 0).sum())
    assert rep.planimetric_ml == pytest.approx(n * mask.voxel_volume_ml)
    assert 0.3 * rep.planimetric_ml < rep.abc2.volume_ml < 1.5 * rep.planimetric_ml
    assert rep.components and rep.components[0].volume_ml <= rep.planimetric_ml
