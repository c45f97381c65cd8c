"""Domain randomisation and robustness transforms: geometry, determinism, intensities, benchmark."""

from __future__ import annotations

import csv
import importlib.util
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from scipy import ndimage as ndi

from ichseg.data import domain as D
from ichseg.data.subtypes import Subtype
from ichseg.data.synthetic import PhantomConfig, SyntheticCase, Tissue, generate_case, write_dataset
from ichseg.errors import ConfigError, GeometryError
from ichseg.io.nifti import write_nifti
from ichseg.io.volume import Intensity, IntensityKind, Volume, Window, make_affine, reorient

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "robustness.py"


def _case(
    shape: tuple[int, int, int], seed: int, subtype: Subtype = Subtype.IPH, **kw: object
) -> SyntheticCase:
    probs = {s: float(s == subtype) for s in Subtype}
    cfg = PhantomConfig.for_shape(
        shape, hemorrhage_free_fraction=0.0, subtype_probabilities=probs, **kw
    )
    return generate_case(cfg, seed, 0, tissue_map=True)


def _zyx(case: SyntheticCase) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    hu = case.image.zyx().astype(np.float32)
    mask = np.ascontiguousarray(case.mask.zyx())
    return hu, mask, tuple(float(s) for s in case.image.spacing[::-1])  # type: ignore[return-value]


@pytest.fixture(scope="module")
def small() -> SyntheticCase:
    """64 x 64 x 12 phantom with a sizeable IPH (3.4-4 mm pixels, ~15 mm slices)."""
    return _case((64, 64, 12), 11, volume_ml_median=25.0)


@pytest.fixture(scope="module")
def sdh() -> SyntheticCase:
    """A subdural hematoma along the inner table: partial-volume voxels above 200 HU."""
    return _case((96, 96, 14), 2, Subtype.SDH, volume_ml_median=30.0)


@pytest.fixture(scope="module")
def medium() -> SyntheticCase:
    """128 x 128 x 16 phantom with a head holder and no calcifications (2 mm pixels)."""
    return _case(
        (128, 128, 16),
        3,
        volume_ml_median=20.0,
        head_holder_probability=1.0,
        calcification_probability=0.0,
    )


@pytest.fixture(scope="module")
def thin() -> SyntheticCase:
    """64 x 64 x 32 phantom with 5 mm slices, for slice-thickness tests."""
    cfg = PhantomConfig.for_shape((64, 64, 32), hemorrhage_free_fraction=0.0, volume_ml_median=25.0)
    return generate_case(replace(cfg, slice_spacing_mm=(5.0, 5.0)), 7, 0)


def _world_centroid(mask: Volume) -> np.ndarray:
    ijk = np.argwhere(np.asarray(mask.array) > 0).mean(axis=0)
    return mask.voxel_to_world(ijk)[0]


def _ml(mask: Volume) -> float:
    return float(np.asarray(mask.array > 0).sum() * mask.voxel_volume_ml)


# ------------------------------------------------------------------------------ intracranial
@pytest.mark.parametrize("which", ["small", "medium"])
def test_intracranial_mask_contains_lesion_and_excludes_skull(
    which: str, request: pytest.FixtureRequest
) -> None:
    case: SyntheticCase = request.getfixturevalue(which)
    hu, mask, sp = _zyx(case)
    ic = D.intracranial_mask(hu, sp)
    tissue = case.tissue.zyx()
    assert ic.dtype == bool and ic.shape == hu.shape
    assert (ic & (mask > 0)).sum() >= 0.97 * mask.sum()
    assert not (ic & (tissue == Tissue.BONE)).any()
    assert not (ic & (tissue == Tissue.DEVICE)).any()  # the head holder
    assert not (ic & (hu > D.BONE_HU)).any()
    brain = np.isin(tissue, [Tissue.BRAIN, Tissue.CSF, Tissue.HEMORRHAGE])
    assert (ic & brain).sum() >= 0.9 * brain.sum()
    assert (ic & (tissue == Tissue.SOFT)).sum() < 0.1 * ic.sum()  # scalp mostly excluded


def test_intracranial_mask_coarse_matches_full_resolution() -> None:
    case = _case((256, 256, 10), 4)  # ~1 mm pixels: pooled to 2 mm by default
    hu, mask, sp = _zyx(case)
    coarse = D.intracranial_mask(hu, sp)
    full = D.intracranial_mask(hu, sp, coarse_mm=0.0)
    dice = 2 * (coarse & full).sum() / (coarse.sum() + full.sum())
    assert dice > 0.98
    assert (coarse & (mask > 0)).sum() >= 0.97 * mask.sum()
    assert not (coarse & (case.tissue.zyx() == Tissue.BONE)).any()


def test_intracranial_mask_survives_open_ring(medium: SyntheticCase) -> None:
    hu, mask, sp = _zyx(medium)
    ic = D.intracranial_mask(hu, sp)
    cut = D.skull_defect(
        hu, sp, np.random.default_rng(0), 30.0, arc_deg=(120, 120), z_fraction=(0.5, 0.5)
    )
    opened = np.flatnonzero((hu > D.BONE_HU).sum(axis=(1, 2)) > (cut > D.BONE_HU).sum(axis=(1, 2)))
    assert opened.size >= 2
    # without the hull fallback the open slices lose their intracranial space ...
    no_fallback = D.intracranial_mask(cut, sp, open_ratio=0.0)
    assert no_fallback[opened].sum() < 0.5 * ic[opened].sum()
    # ... with it they keep most of it, the lesion included
    ic_cut = D.intracranial_mask(cut, sp)
    assert (ic_cut[opened] & ic[opened]).sum() >= 0.8 * ic[opened].sum()
    assert (ic_cut & (mask > 0)).sum() >= 0.95 * mask.sum()


def test_skull_strip_keeps_extra_axial_blood(sdh: SyntheticCase) -> None:
    hu, mask, sp = _zyx(sdh)
    bright = (mask > 0) & (hu > D.BONE_HU)
    assert bright.any()  # blood mixed with bone: not intracranial by the HU estimate
    assert not (D.intracranial_mask(hu, sp) & bright).any()
    out = D.skull_strip(hu, sp, 0.0, keep=mask)
    np.testing.assert_array_equal(out[mask > 0], hu[mask > 0])
    assert out[mask == 0].max() <= D.BONE_HU
    for name in ("skull_stripped_bg-1000", "skull_defect"):
        img, gt = D.apply_robustness(name, sdh.image, sdh.mask, "s")
        lesion = sdh.image.array[sdh.mask.array > 0]
        np.testing.assert_array_equal(img.array[gt.array > 0], lesion)
    cut = D.skull_defect(hu, sp, np.random.default_rng(0), 30.0, arc_deg=(359, 359))
    assert (cut[bright] != hu[bright]).any()  # without keep= the bright blood would go


def test_no_skull_gives_empty_mask() -> None:
    hu = np.full((4, 32, 32), 30.0, np.float32)
    assert not D.intracranial_mask(hu, (5.0, 1.0, 1.0)).any()


@pytest.mark.parametrize("background", [0.0, -1000.0])
def test_skull_strip_removes_skull(medium: SyntheticCase, background: float) -> None:
    hu, mask, sp = _zyx(medium)
    out = D.skull_strip(hu, sp, background)
    ic = D.intracranial_mask(hu, sp)
    assert out.dtype == np.float32 and out.shape == hu.shape
    assert out.max() <= D.BONE_HU
    np.testing.assert_array_equal(out[~ic], background)
    np.testing.assert_array_equal(out[ic], hu[ic])
    kept = (out == hu) & (mask > 0)
    assert kept.sum() >= 0.97 * mask.sum()


# ------------------------------------------------------------------------------ intensities
def test_hu_affine_and_purity(small: SyntheticCase) -> None:
    hu, _, _ = _zyx(small)
    before = hu.copy()
    out = D.hu_affine(hu, 1.1, -5.0)
    np.testing.assert_allclose(out, hu * 1.1 - 5.0, rtol=1e-6, atol=1e-3)
    np.testing.assert_array_equal(hu, before)  # input untouched


@pytest.mark.parametrize("corr", [0.0, 1.0, 2.0])
def test_add_noise_sigma_matches_request(corr: float) -> None:
    flat = np.zeros((16, 96, 96), np.float32)
    out = D.add_noise(flat, 8.0, corr, np.random.default_rng(1))
    assert out.std() == pytest.approx(8.0, rel=0.05)
    lag1 = np.corrcoef(out[:, :, 1:].ravel(), out[:, :, :-1].ravel())[0, 1]
    expected = {0.0: 0.0, 1.0: np.exp(-1 / 4), 2.0: np.exp(-1 / 16)}[corr]
    assert lag1 == pytest.approx(expected, abs=0.05)


def test_add_noise_deterministic() -> None:
    flat = np.zeros((4, 32, 32), np.float32)
    a = D.add_noise(flat, 5.0, 1.0, np.random.default_rng(3))
    b = D.add_noise(flat, 5.0, 1.0, np.random.default_rng(3))
    c = D.add_noise(flat, 5.0, 1.0, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_kernels_change_noise_and_edges() -> None:
    rng = np.random.default_rng(0)
    img = np.full((2, 64, 64), 30.0, np.float32)
    img[:, :, 32:] = 80.0  # a vertical edge
    noisy = D.add_noise(img, 5.0, 0.0, rng)
    sp = (5.0, 0.5, 0.5)
    smooth = D.smooth_kernel(noisy, 1.0, sp)
    sharp = D.sharp_kernel(noisy, 1.5, 0.7, sp)
    flat = (slice(None), slice(None), slice(5, 25))
    assert smooth[flat].std() < 0.5 * noisy[flat].std()
    assert sharp[flat].std() > 1.5 * noisy[flat].std()
    clean_sharp = D.sharp_kernel(img, 1.5, 0.7, sp)
    assert clean_sharp.max() > 85.0 and clean_sharp.min() < 25.0  # overshoot at the edge
    assert abs(float(smooth.mean() - noisy.mean())) < 0.5


def test_window_quantize_error_bounded() -> None:
    hu = np.linspace(-200.0, 300.0, 4 * 50 * 50, dtype=np.float32).reshape(4, 50, 50)
    for window, levels in (((40.0, 80.0), 256), ((50.5, 85.0), 86)):
        out = D.window_quantize(hu, window, levels)
        lo, hi = window[0] - window[1] / 2, window[0] + window[1] / 2
        step = window[1] / (levels - 1)
        inside = (hu >= lo) & (hu <= hi)
        assert np.abs(out[inside] - hu[inside]).max() <= step / 2 + 1e-4
        np.testing.assert_allclose(out[hu < lo], lo, atol=1e-4)
        np.testing.assert_allclose(out[hu > hi], hi, atol=1e-4)
        assert np.unique(out).size <= levels


def test_streaks_only_inside_head(medium: SyntheticCase) -> None:
    hu, _, sp = _zyx(medium)
    out = D.streaks(hu, 30.0, 3, np.random.default_rng(5), sp)
    diff = out - hu
    head = D.head_mask(hu)
    assert not diff[~head].any()
    assert diff.max() > 5.0 and diff.min() < -5.0
    assert np.abs(diff).max() <= 3 * 30.0 + 1e-3
    again = D.streaks(hu, 30.0, 3, np.random.default_rng(5), sp)
    np.testing.assert_array_equal(out, again)


def test_motion_ghost_blends_a_slab(small: SyntheticCase) -> None:
    hu, _, _ = _zyx(small)
    out = D.motion_ghost(hu, 4.0, 0.2, np.random.default_rng(2))
    changed = np.flatnonzero(np.abs(out - hu).max(axis=(1, 2)) > 1e-3)
    assert changed.size >= hu.shape[0] // 3
    assert np.array_equal(changed, np.arange(changed[0], changed[-1] + 1))  # contiguous
    z = changed[0]
    ghost = (out[z] - 0.8 * hu[z]) / 0.2  # the shifted copy
    shifts = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)]
    assert any(
        np.allclose(ghost[8:-8, 8:-8], np.roll(hu[z], s, (0, 1))[8:-8, 8:-8], atol=0.05)
        for s in shifts
    )


def test_skull_defect_removes_bone_only(medium: SyntheticCase) -> None:
    hu, mask, sp = _zyx(medium)
    ic = D.intracranial_mask(hu, sp)
    out = D.skull_defect(hu, sp, np.random.default_rng(1), 30.0)
    changed = out != hu
    assert changed.any()
    assert not (changed & ic).any() and not (changed & (mask > 0)).any()
    assert (hu[changed] > 120).all()
    assert abs(float(out[changed].mean()) - 30.0) < 2.0
    bone_before, bone_after = (hu > 200).sum(axis=(1, 2)), (out > 200).sum(axis=(1, 2))
    hit = np.flatnonzero(bone_after < bone_before)
    assert hit.size >= 1
    assert (bone_after[hit] < 0.85 * bone_before[hit]).all()  # a real arc, not a few pixels
    air = D.skull_defect(hu, sp, np.random.default_rng(1), -1000.0)
    assert (air[changed] < -900).all()


# ------------------------------------------------------------------------------ geometry
def test_reslice_linear_profile_exact() -> None:
    z = np.arange(10, dtype=np.float32)
    hu = np.broadcast_to(z[:, None, None] * 10.0, (10, 4, 4)).astype(np.float32)
    for t in (2.0, 10.0):  # from 5 mm: thin (linear) and thick (box average)
        out, _, sp = D.reslice_z(hu, None, (5.0, 1.0, 1.0), t)
        n, imap = D.reslice_z_map(10, 5.0, t)
        assert out.shape == (n, 4, 4) and sp == (t, 1.0, 1.0)
        q = imap.offset[0] + imap.scale[0] * np.arange(n)
        inner = (q >= 0.5 * imap.scale[0]) & (q <= 9 - 0.5 * imap.scale[0])
        np.testing.assert_allclose(out[inner, 0, 0], 10.0 * q[inner], atol=1e-3)


@pytest.mark.parametrize("thickness", [1.0, 2.5, 10.0])
def test_reslice_preserves_ml_and_position(thin: SyntheticCase, thickness: float) -> None:
    img, mask = D.apply_robustness(f"slices_{thickness:g}mm", thin.image, thin.mask, "t")
    assert img.same_geometry(mask)
    assert img.spacing[2] == pytest.approx(thickness)
    assert img.spacing[:2] == pytest.approx(thin.image.spacing[:2])
    extent = thin.image.shape[2] * thin.image.spacing[2]
    assert img.shape[2] == round(extent / thickness)
    assert _ml(mask) == pytest.approx(_ml(thin.mask), rel=0.10)
    shift = np.abs(_world_centroid(mask) - _world_centroid(thin.mask))
    assert (shift <= np.array(img.spacing)).all()
    # the stack keeps its centre in world coordinates
    centre = lambda v: v.voxel_to_world((np.array(v.shape) - 1) / 2.0)[0]  # noqa: E731
    np.testing.assert_allclose(centre(img), centre(thin.image), atol=1e-6)


def test_zoom_inplane_geometry(small: SyntheticCase) -> None:
    hu, mask, sp = _zyx(small)
    for f in (0.6, 1.3):
        out, m, sp2 = D.zoom_inplane(hu, mask, sp, f)
        assert out.shape == hu.shape and m is not None and m.shape == mask.shape
        assert sp2 == pytest.approx((sp[0], sp[1] / f, sp[2] / f))
        ml0 = mask.sum() * np.prod(sp)
        ml1 = m.sum() * np.prod(sp2)
        assert ml1 == pytest.approx(ml0, rel=0.15)
        # lesion centroid in mm about the in-plane centre is preserved
        c = (np.array(hu.shape[1:]) - 1) / 2.0
        mm0 = (np.argwhere(mask > 0)[:, 1:].mean(0) - c) * np.array(sp[1:])
        mm1 = (np.argwhere(m > 0)[:, 1:].mean(0) - c) * np.array(sp2[1:])
        assert np.abs(mm1 - mm0).max() <= max(sp2[1:])
    shrunk, _, _ = D.zoom_inplane(hu, None, sp, 0.5)
    np.testing.assert_allclose(shrunk[:, :5, :], -1000.0, atol=1e-3)  # new border is air


def test_crop_fov_keeps_lesion(small: SyntheticCase) -> None:
    hu, mask, _ = _zyx(small)
    starts = set()
    for seed in range(6):
        out, m, (y0, x0) = D.crop_fov(hu, mask, 0.6, np.random.default_rng(seed))
        assert m is not None and m.sum() == mask.sum()
        assert out.shape[1] >= round(0.6 * 64) and out.shape[1] < 64
        np.testing.assert_array_equal(out, hu[:, y0 : y0 + out.shape[1], x0 : x0 + out.shape[2]])
        starts.add((y0, x0))
    assert len(starts) > 1  # the box position is random
    with pytest.raises(ConfigError):
        D.crop_fov(hu, mask, 0.0, np.random.default_rng(0))
    with pytest.raises(GeometryError):
        D.crop_fov(hu, mask[:, :10], 0.5, np.random.default_rng(0))


# ------------------------------------------------------------------------------ randomize
def _all_on() -> D.DomainRandomization:
    cfg = D.DomainRandomization()
    probs = {f: 1.0 for f in cfg.__dataclass_fields__ if f.endswith("_p")}
    probs["smooth_p"], probs["sharp_p"] = 0.0, 1.0
    return replace(cfg, **probs)


def test_randomize_deterministic_and_consistent(small: SyntheticCase) -> None:
    hu, mask, sp = _zyx(small)
    a = D.randomize(hu, mask, sp, np.random.default_rng(42))
    b = D.randomize(hu, mask, sp, np.random.default_rng(42))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2] and a[3] == b[3]
    outs = [D.randomize(hu, mask, sp, np.random.default_rng(s))[3] for s in range(8)]
    assert len({tuple(o) for o in outs}) > 1
    out, m, sp2, applied = D.randomize(hu, mask, sp, np.random.default_rng(0), _all_on())
    names = [s.split("(")[0] for s in applied]
    assert names == [
        "skull_defect",
        "reslice_z",
        "zoom_inplane",
        "crop_fov",
        "hu_affine",
        "sharp_kernel",
        "streaks",
        "motion_ghost",
        "add_noise",
        "skull_strip",
        "window_quantize",
    ]
    assert out.dtype == np.float32 and m is not None and m.shape == out.shape
    assert out.shape[1:] == hu.shape[1:]  # keep_inplane_shape
    assert set(np.unique(m)) <= {0, 1} and m.any()
    assert sp2[0] == pytest.approx(float(applied[1][10:-3]), abs=0.01)
    np.testing.assert_array_equal(hu, small.image.zyx().astype(np.float32))  # input untouched


def test_randomize_runtime_sanity(small: SyntheticCase) -> None:
    hu, mask, sp = _zyx(small)
    t = time.perf_counter()
    for s in range(5):
        D.randomize(hu, mask, sp, np.random.default_rng(s), _all_on())
    assert (time.perf_counter() - t) / 5 < 2.0  # tiny volume: far below this


def test_randomization_config_validation() -> None:
    with pytest.raises(ConfigError, match="noise_p"):
        D.DomainRandomization(noise_p=1.5)
    with pytest.raises(ConfigError, match="zoom_factor"):
        D.DomainRandomization(zoom_factor=(1.2, 0.8))
    with pytest.raises(ConfigError, match="smooth_p"):
        D.DomainRandomization(smooth_p=0.6, sharp_p=0.6)
    with pytest.raises(ConfigError, match="window_levels"):
        D.DomainRandomization(window_levels=(1,))


# ------------------------------------------------------------------------------ benchmark transforms
@pytest.mark.parametrize("name", sorted(D.ROBUSTNESS_TRANSFORMS))
def test_robustness_transforms_geometry_and_determinism(small: SyntheticCase, name: str) -> None:
    img, mask = D.apply_robustness(name, small.image, small.mask, "007")
    again, _ = D.apply_robustness(name, small.image, small.mask, "007")
    np.testing.assert_array_equal(img.array, again.array)
    assert img.same_geometry(mask) and mask.intensity.kind == IntensityKind.LABEL
    assert set(np.unique(mask.array)) <= {0, 1}
    shift = np.abs(_world_centroid(mask) - _world_centroid(small.mask))
    assert (shift <= np.array(img.spacing)).all()
    if name == "none":
        assert img is small.image
    elif name.startswith("slices_"):
        assert _ml(mask) == pytest.approx(_ml(small.mask), rel=0.25)  # 15 mm source slices
    elif name == "wide_fov":  # resampled in-plane onto 1.6x coarser pixels
        assert _ml(mask) == pytest.approx(_ml(small.mask), rel=0.25)
        assert img.shape == small.image.shape
    else:
        assert _ml(mask) == pytest.approx(_ml(small.mask), rel=1e-9)
        if name != "cropped_fov":
            assert img.same_geometry(small.image) or name == "none"
            assert not np.array_equal(img.hu(), small.image.hu())


def test_robustness_random_transforms_depend_on_case_id(small: SyntheticCase) -> None:
    for name in ("noise_x2", "streaks", "skull_defect"):
        a, _ = D.apply_robustness(name, small.image, small.mask, "001")
        b, _ = D.apply_robustness(name, small.image, small.mask, "002")
        assert not np.array_equal(a.array, b.array), name


def test_robustness_cropped_fov_affine(medium: SyntheticCase) -> None:
    img, mask = D.apply_robustness("cropped_fov", medium.image, medium.mask, "x")
    assert img.shape[0] < medium.image.shape[0] and img.shape[2] == medium.image.shape[2]
    np.testing.assert_allclose(_world_centroid(mask), _world_centroid(medium.mask), atol=1e-6)
    # every kept voxel sits where it was in the world
    src = medium.image.world_to_voxel(img.voxel_to_world(np.zeros((1, 3))))[0]
    ijk = np.round(src).astype(int)
    assert img.array[0, 0, 0] == medium.image.array[tuple(ijk)]


def test_robustness_wide_fov_keeps_world_positions(medium: SyntheticCase) -> None:
    img, mask = D.apply_robustness("wide_fov", medium.image, medium.mask, "x")
    assert img.shape == medium.image.shape
    np.testing.assert_allclose(
        np.array(img.spacing[:2]), 1.6 * np.array(medium.image.spacing[:2]), rtol=1e-6
    )
    assert img.spacing[2] == pytest.approx(medium.image.spacing[2])
    shift = np.abs(_world_centroid(mask) - _world_centroid(medium.mask))
    assert (shift <= np.array(img.spacing)).all()
    head = (img.hu() > 0).sum(), (medium.image.hu() > 0).sum()
    assert head[0] < 0.6 * head[1]  # the head covers fewer, larger pixels


def test_robustness_windowed_and_skull_stripped(medium: SyntheticCase) -> None:
    img, _ = D.apply_robustness("windowed_0_255", medium.image, medium.mask, "x")
    assert img.array.dtype == np.uint8 and img.intensity.kind == IntensityKind.WINDOWED
    assert img.intensity.window == D.EXPORT_WINDOW and img.intensity.stored_range == (0.0, 255.0)
    hu = np.clip(medium.image.hu(), 0.0, 80.0)
    assert np.abs(img.hu() - hu).max() <= 80.0 / 255 / 2 + 1e-3
    for name, bg in (("skull_stripped_bg0", 0), ("skull_stripped_bg-1000", -1000)):
        s, gt = D.apply_robustness(name, medium.image, medium.mask, "x")
        assert s.array[gt.array == 0].max() <= 200 and (s.array == bg).mean() > 0.3


def test_robustness_windowed_source(medium: SyntheticCase) -> None:
    """A case166-like input (stored 0..255 from window 50.5/85, bone clipped at 93 HU)."""
    window = Window(50.5, 85.0)
    stored = np.round(np.clip((medium.image.hu() - window.lo) / window.width, 0, 1) * 255)
    src = medium.image.with_array(stored.astype(np.uint8), Intensity.windowed(window))
    hu, _, sp = _zyx(medium)
    ic_hu = D.intracranial_mask(hu, sp)
    for name in ("skull_stripped_bg0", "skull_defect", "streaks", "noise_x2"):
        img, _ = D.apply_robustness(name, src, medium.mask, "w")
        assert img.intensity == src.intensity and img.array.dtype == np.uint8, name
        assert not np.array_equal(img.array, src.array), name
    stripped, _ = D.apply_robustness("skull_stripped_bg-1000", src, medium.mask, "w")
    kept = stripped.zyx() > 0  # background -1000 HU is stored as 0
    assert (kept & ic_hu).sum() >= 0.9 * ic_hu.sum()
    assert (kept & ~ic_hu).sum() <= 0.1 * ic_hu.sum()
    streaked, _ = D.apply_robustness("streaks", src, medium.mask, "w")
    outside = D.head_mask(hu) == 0
    np.testing.assert_array_equal(streaked.zyx()[outside], src.zyx()[outside])


def test_robustness_noise_x2_doubles_sigma(medium: SyntheticCase) -> None:
    hu, _, sp = _zyx(medium)
    ic = D.intracranial_mask(hu, sp)
    region = ndi.binary_erosion(ic & (hu > 0) & (hu < 60), structure=D._PLANE8)
    before = D.estimate_noise_sigma(hu, sp, region=region)
    img, _ = D.apply_robustness("noise_x2", medium.image, medium.mask, "x")
    after = D.estimate_noise_sigma(img.zyx().astype(np.float32), sp, region=region)
    assert after == pytest.approx(2.0 * before, rel=0.15)


def test_robustness_non_canonical_input(thin: SyntheticCase) -> None:
    """A volume stored RAS (flipped axes) gives the same world geometry."""
    ras_img, _ = reorient(thin.image, "RAS")
    ras_mask, _ = reorient(thin.mask, "RAS")
    img, mask = D.apply_robustness("slices_10mm", ras_img, ras_mask, "t")
    ref_img, ref_mask = D.apply_robustness("slices_10mm", thin.image, thin.mask, "t")
    np.testing.assert_allclose(img.affine, ref_img.affine, atol=1e-6)
    np.testing.assert_array_equal(mask.array, ref_mask.array)
    with pytest.raises(ConfigError, match="unknown robustness transform"):
        D.apply_robustness("blur", thin.image, thin.mask, "t")


# ------------------------------------------------------------------------------ benchmark script
@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """benchmarks/robustness.py imported as a module."""
    spec = importlib.util.spec_from_file_location("robustness_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_benchmark_loader_fallback(tmp_path: Path, bench: ModuleType) -> None:
    """HU data that ichseg's detector refuses (no air, max < 100) is noted and read as HU."""
    arr = np.full((16, 16, 4), 30, np.int16)
    arr[5:9, 5:9, 1:3] = 70
    vol = Volume(arr, make_affine((1.0, 1.0, 5.0)), Intensity.hu())
    img_path = write_nifti(vol, tmp_path / "c1_image.nii")
    mask_path = write_nifti(vol.as_label(arr > 50), tmp_path / "c1_mask.nii")
    (tmp_path / "manifest.csv").write_text("case_id,image,mask\nc1,c1_image.nii,c1_mask.nii\n")
    run = bench.TransformRun("t", [bench.Written("c1", img_path, mask_path, Intensity.hu())])
    [(cid, image, mask)] = list(bench.load_cases(run, tmp_path, "m"))
    assert cid == "c1" and image.intensity.kind == IntensityKind.HU
    np.testing.assert_array_equal(image.array, arr)
    assert int(mask.array.sum()) == 32
    assert run.loader_notes["c1"].startswith("refused")


def test_robustness_benchmark_end_to_end(tmp_path: Path, bench: ModuleType) -> None:
    data = tmp_path / "data"
    cfg = PhantomConfig.for_shape((64, 64, 12), hemorrhage_free_fraction=0.0, volume_ml_median=20.0)
    write_dataset(data, n_cases=2, seed=3, config=cfg)
    out = tmp_path / "out"
    argv = ["--data", str(data), "--cases", "2", "--transforms", "none,skull_stripped_bg0"]
    argv += ["--method", "random_walker", "--rounds", "2", "--out", str(out)]
    argv += ["--workdir", str(tmp_path / "work")]
    assert bench.main(argv) == 0
    with (out / "table.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(bench.TABLE_COLUMNS)
    assert [(r["transform"], r["method"]) for r in rows] == [
        ("none", "random_walker"),
        ("skull_stripped_bg0", "random_walker"),
    ]
    for r in rows:
        assert all(0.0 <= float(r[f"dice_round{k}"]) <= 1.0 for k in (1, 3, 8))
        assert r["dice_round3"] == r["dice_round8"]  # 2 rounds: later columns carry round 2
        assert 1.0 <= float(r["noc85"]) <= 2.0
    # the untransformed row is what the evaluation runner gives on the source files
    from ichseg.data.dataset import open_dataset
    from ichseg.evaluation.interactive import ClinicianSpec, evaluate_interactive, load_method
    from ichseg.evaluation.tables import at_round

    def source_cases() -> Iterator[tuple[str, Volume, Volume]]:
        for c in open_dataset(data).cases:
            image = c.load_image()
            mask = c.load_mask(reference=image)
            assert mask is not None
            yield c.case_id, image, mask

    _, factory = load_method("random_walker")
    direct = evaluate_interactive(
        factory, source_cases(), rounds=2, clinician=ClinicianSpec(seed=0), progress=False
    )
    assert float(rows[0]["dice_round8"]) == pytest.approx(
        at_round(direct, 2)["dice"].mean(), abs=1e-4
    )
    report = (out / "report.md").read_text()
    assert "skull_stripped_bg0" in report and "Change vs `none`" in report
    assert (out / "dice_round8.png").stat().st_size > 1000
    assert (tmp_path / "work" / "skull_stripped_bg0" / "manifest.csv").is_file()
    assert bench.main([*argv[:4], "--transforms", "nope", "--out", str(out)]) == 2
    # --update re-runs one (transform, method) pair and keeps the other rows and their notes
    import pandas as pd

    long_before = pd.read_csv(out / "results_long.csv")
    upd = [*argv[:4], "--transforms", "skull_stripped_bg0", "--method", "random_walker"]
    upd += ["--rounds", "2", "--out", str(out), "--update"]
    assert bench.main(upd) == 0
    with (out / "table.csv").open() as fh:
        again = list(csv.DictReader(fh))
    assert again == rows  # deterministic: the replaced row is the same, the kept one untouched
    long_after = pd.read_csv(out / "results_long.csv")
    keys = ["transform", "method", "case_id", "round", "dice"]
    pd.testing.assert_frame_equal(long_after[keys], long_before[keys])  # timings may differ
    report = (out / "report.md").read_text()
    assert report.count("python benchmarks/robustness.py") == 2 and "--update" in report
    assert "| none | untouched |" in report and "| skull_stripped_bg0 |" in report
    assert len((out / "commands.txt").read_text().splitlines()) == 2
    assert bench.main([*upd[:-1], "--out", str(tmp_path / "fresh"), "--update"]) == 2
