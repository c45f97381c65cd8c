"""HemSeg-200 recipe: orientation, resampling, clip, z-score, and mapping back."""

from __future__ import annotations

import numpy as np
import pytest

from ichseg.errors import ConfigError, GeometryError, IntensityError
from ichseg.io.volume import Intensity, Volume, Window, make_affine, reorient
from ichseg.preprocess.hemseg import (
    HEMSEG_CLIP,
    HEMSEG_MEAN,
    HEMSEG_STD,
    HemSegConfig,
    HemSegPreprocess,
    foreground_intensity_stats,
    hemseg_preprocess,
)


def _case(
    shape: tuple[int, int, int] = (48, 48, 16),
    spacing: tuple[float, float, float] = (0.6, 0.6, 5.0),
    axcodes: str = "LPS",
) -> tuple[Volume, Volume]:
    rng = np.random.default_rng(0)
    i, j, k = np.indices(shape)
    c = [s / 2 for s in shape]
    blob = ((i - c[0]) / 12) ** 2 + ((j - c[1]) / 9) ** 2 + ((k - c[2]) / 4) ** 2 <= 1
    hu = rng.normal(30, 4, size=shape).astype(np.float32)
    hu[blob] = rng.normal(65, 6, size=int(blob.sum()))
    hu[:3] = -1000
    aff = make_affine(spacing, "LPS", (10.0, -20.0, 30.0))
    img = Volume(hu, aff, Intensity.hu())
    mask = img.as_label(blob)
    if axcodes != "LPS":
        img, _ = reorient(img, axcodes)
        mask, _ = reorient(mask, axcodes)
    return img, mask


def test_defaults_match_hemseg() -> None:
    cfg = HemSegConfig()
    assert cfg.target_spacing == (0.48828, 0.48828, 4.6494)
    assert cfg.clip == "percentile" and cfg.percentiles == (0.5, 99.5)
    assert HEMSEG_CLIP == (11.9997, 79.0)
    assert (cfg.mean, cfg.std) == (HEMSEG_MEAN, HEMSEG_STD) == (48.134, 13.458)


def test_resample_spacing_and_normalisation() -> None:
    img, mask = _case()
    res = hemseg_preprocess(img, mask)
    assert np.allclose(res.image.spacing, (0.48828, 0.48828, 4.6494), atol=1e-6)
    assert res.image.axcodes == ("L", "P", "S")
    assert res.image.shape == (59, 59, 17)  # round(48*0.6/0.48828), round(16*5/4.6494)
    assert res.mask is not None and res.mask.same_geometry(res.image)
    assert set(np.unique(res.mask.array)) == {0, 1}
    # the field-of-view centre stays put in world space
    c_in = img.voxel_to_world(np.array([[23.5, 23.5, 7.5]]))
    c_out = res.image.voxel_to_world(np.array([[29.0, 29.0, 8.0]]))
    np.testing.assert_allclose(c_in, c_out, atol=1e-6)
    rec = res.record
    assert rec.clip_source == "mask-percentile"
    lo, hi = rec.clip
    fg = img.array[mask.array > 0]
    assert lo == pytest.approx(np.percentile(fg, 0.5)) and hi == pytest.approx(
        np.percentile(fg, 99.5)
    )
    expected_min = (lo - HEMSEG_MEAN) / HEMSEG_STD
    assert res.image.array.min() == pytest.approx(expected_min, abs=1e-4)
    assert res.image.array.max() <= (hi - HEMSEG_MEAN) / HEMSEG_STD + 1e-4  # clipped
    assert res.image.array.dtype == np.float32


def test_fixed_clip_and_computed_stats() -> None:
    img, mask = _case()
    res = HemSegPreprocess(clip="fixed")(img)
    assert res.record.clip == HEMSEG_CLIP and res.record.clip_source == "fixed"
    res2 = hemseg_preprocess(img, mask, HemSegConfig(target_spacing=None, mean=None, std=None))
    assert res2.image.shape == img.shape
    z = res2.image.array[mask.array > 0]
    assert abs(z.mean()) < 1e-3 and z.std() == pytest.approx(1.0, abs=1e-3)
    # no mask with percentile clipping -> documented fallback to the fixed bounds
    res3 = hemseg_preprocess(img)
    assert res3.record.clip_source == "fixed (no mask)" and res3.mask is None


def test_label_roundtrip_on_original_grid() -> None:
    img, mask = _case(axcodes="RAS")  # non-canonical input
    res = hemseg_preprocess(img, mask)
    assert res.image.axcodes == ("L", "P", "S")
    back = res.record.undo(res.mask.array)
    assert back.shape == mask.shape and back.dtype == np.uint8
    m = mask.array > 0
    dice = 2 * np.sum(back.astype(bool) & m) / (back.astype(bool).sum() + m.sum())
    assert dice > 0.93
    vol = res.record.undo_volume(res.mask.array)
    assert vol.same_geometry(mask) and vol.is_label
    probs = res.record.undo(res.mask.array.astype(np.float32), kind="prob")
    assert probs.dtype == np.float32 and probs.shape == mask.shape
    # with no resampling the round trip is exact
    res_id = hemseg_preprocess(img, mask, HemSegConfig(target_spacing=img.spacing))
    np.testing.assert_array_equal(res_id.record.undo(res_id.mask.array), mask.array)
    with pytest.raises(GeometryError):
        res.record.undo(np.zeros((3, 3, 3)))
    with pytest.raises(ConfigError):
        res.record.undo(res.mask.array, kind="logits")  # type: ignore[arg-type]
    info = res.record.to_dict()
    assert info["original_shape"] == list(mask.shape)
    assert (
        info["output_shape"] == list(res.image.shape) and info["clip_source"] == "mask-percentile"
    )


def test_lps_and_ras_inputs_give_same_output() -> None:
    a_img, a_mask = _case(axcodes="LPS")
    b_img, b_mask = _case(axcodes="RAS")
    ra, rb = hemseg_preprocess(a_img, a_mask), hemseg_preprocess(b_img, b_mask)
    np.testing.assert_allclose(ra.image.array, rb.image.array, atol=1e-5)
    np.testing.assert_allclose(ra.image.affine, rb.image.affine, atol=1e-6)


def test_windowed_input_and_errors() -> None:
    img, mask = _case(spacing=(0.48828, 0.48828, 4.6494))
    stored = np.clip((img.array - 0.0) / 80 * 255, 0, 255).round()
    win = Volume(stored, img.affine, Intensity.windowed(Window(40, 80)))
    res = hemseg_preprocess(win, mask, HemSegConfig(clip="fixed"))
    assert res.image.shape == img.shape  # already at target spacing: no resampling
    with pytest.raises(IntensityError, match="unknown"):
        hemseg_preprocess(win.with_array(stored, Intensity.windowed(None)))
    with pytest.raises(IntensityError, match="label"):
        hemseg_preprocess(mask)
    small = Volume(np.zeros((4, 4, 4)), make_affine((1, 1, 1)))
    with pytest.raises(GeometryError):
        hemseg_preprocess(img, small.as_label(np.zeros((4, 4, 4))))
    with pytest.raises(ConfigError):
        HemSegConfig(clip="zscore")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        HemSegPreprocess(bogus=1)


def test_dataset_foreground_stats() -> None:
    img, mask = _case()
    stats = foreground_intensity_stats([(img, mask), (img, mask)], max_voxels_per_case=500)
    assert stats.n_voxels == 1000
    assert 40 < stats.lo < stats.mean < stats.hi < 90
    cfg = HemSegConfig.from_stats(stats)
    assert cfg.clip == "fixed" and cfg.fixed_clip == (stats.lo, stats.hi)
    with pytest.raises(IntensityError):
        foreground_intensity_stats([(img, mask.with_array(np.zeros(mask.shape, np.uint8)))])
