"""Intensity detection (raw HU / windowed 0..255 / unknown) and CT validation."""

from __future__ import annotations

import numpy as np
import pytest
from io_synth import head_phantom

from ichseg.errors import IntensityError
from ichseg.io import Intensity, IntensityKind, Volume, Window
from ichseg.io.intensity import (
    detect_intensity,
    infer_stored_range,
    intensity_stats,
    validate_ct,
)


def _windowed(hu: np.ndarray, window: Window, step: int = 1) -> np.ndarray:
    frac = np.clip((hu - window.lo) / window.width, 0, 1)
    return (np.round(frac * 255 / step) * step).astype(np.int16)


def test_raw_hu_is_detected() -> None:
    vol = head_phantom()
    assert detect_intensity(vol.array).kind == IntensityKind.HU
    padded = vol.array.copy()
    padded[0] = -3024  # outside-field-of-view padding
    assert detect_intensity(padded.astype(np.float32)).kind == IntensityKind.HU


def test_skull_stripped_hu_without_bone_is_still_hu() -> None:
    arr = head_phantom().array.copy()
    arr[arr > 100] = -1000  # no bone left, blood (70 HU) is the brightest tissue
    assert detect_intensity(arr).kind == IntensityKind.HU


def test_windowed_0_255_in_steps_of_3_is_detected() -> None:
    hu = head_phantom().array.astype(np.float32)
    hu += np.linspace(0, 60, hu.size).reshape(hu.shape)  # a spread of tissue values
    data = _windowed(hu, Window(40, 255), step=3)
    stats = intensity_stats(data)
    assert stats.step == 3.0 and stats.integral and stats.max == 255
    got = detect_intensity(data)
    assert got.kind == IntensityKind.WINDOWED
    assert got.window is None and got.stored_range == (0.0, 255.0)


@pytest.mark.parametrize(
    "values, hint",
    [
        (np.linspace(0, 1, 1000), "0..1"),
        (np.linspace(-3, 8, 1000), "z-score"),
        (np.linspace(0, 3000, 1000), "MR"),
        (np.repeat(np.arange(4), 250), "label map"),
    ],
)
def test_non_ct_ranges_are_unknown_and_explained(values: np.ndarray, hint: str) -> None:
    arr = values.reshape(10, 10, 10).astype(np.float32)
    assert detect_intensity(arr).kind == IntensityKind.UNKNOWN
    vol = Volume(arr, np.eye(4), Intensity(IntensityKind.UNKNOWN))
    with pytest.raises(IntensityError, match=hint) as err:
        validate_ct(vol)
    assert "input_window" in str(err.value) and "allow_non_ct" in str(err.value)


def test_nan_and_inf_are_counted() -> None:
    vol = head_phantom()
    arr = vol.array.astype(np.float32)
    arr[0, 0, 0] = np.nan
    arr[1, 2, 3] = np.inf
    with pytest.raises(IntensityError, match="2 NaN or infinite"):
        validate_ct(vol.with_array(arr))


def test_constant_and_label_images_are_refused() -> None:
    vol = head_phantom()
    with pytest.raises(IntensityError, match="constant"):
        validate_ct(vol.with_array(np.full(vol.shape, 40, np.int16)))
    with pytest.raises(IntensityError, match="label"):
        validate_ct(vol.as_label(vol.array > 0))


def test_windowed_values_must_fit_their_stored_range() -> None:
    vol = head_phantom()
    declared = vol.with_array(vol.array, Intensity.windowed(Window(40, 80)))
    with pytest.raises(IntensityError, match=r"must lie in 0\.\.255"):
        validate_ct(declared)
    ok = vol.with_array(_windowed(vol.array, Window(40, 80)), Intensity.windowed(Window(40, 80)))
    assert validate_ct(ok).max == 255


def test_stored_range_inference_for_declared_windows() -> None:
    w = Window(40, 80)
    assert infer_stored_range(np.linspace(0, 1, 50), w) == (0.0, 1.0)
    assert infer_stored_range(np.arange(0, 256), w) == (0.0, 255.0)
    clipped_hu = np.linspace(-100, 300, 50)  # HU clipped to a wide window, not a 0..255 scale
    assert infer_stored_range(clipped_hu, Window(100, 400)) == (-100.0, 300.0)
    with pytest.raises(IntensityError, match="does not fit"):
        infer_stored_range(np.linspace(-1000, 2000, 50), w)


def test_unsupported_dtypes() -> None:
    with pytest.raises(IntensityError, match="unsupported voxel type"):
        intensity_stats(np.zeros((2, 2, 2), dtype=np.complex64))
    assert intensity_stats(np.zeros((2, 2, 2), dtype=bool)).max == 0.0
