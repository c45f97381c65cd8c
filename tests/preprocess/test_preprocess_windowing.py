"""HU windowing: numbers, presets, already-windowed inputs."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from ichseg.errors import IntensityError
from ichseg.io.volume import Intensity, IntensityKind, Volume, Window, make_affine
from ichseg.preprocess.windowing import (
    DEFAULT_WINDOW,
    WINDOW_PRESETS,
    ClippedWindowWarning,
    Windowing,
    apply_window,
    parse_window,
    window_volume,
)

CASE166 = Path("/work/shared/data/real/case166")


def _vol(array: np.ndarray, intensity: Intensity | None = None) -> Volume:
    return Volume(array, make_affine((1.0, 1.0, 5.0)), intensity or Intensity.hu())


def test_brain_window_numbers() -> None:
    hu = np.array([-1000.0, 0.0, 20.0, 40.0, 60.0, 80.0, 1000.0], dtype=np.float32)
    out = apply_window(hu, DEFAULT_WINDOW)
    np.testing.assert_allclose(out, [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0], atol=1e-6)
    assert out.dtype == np.float32
    assert Window(40, 80) == DEFAULT_WINDOW


def test_presets_and_parsing() -> None:
    assert set(WINDOW_PRESETS) == {"brain", "subdural", "stroke", "bone", "soft_tissue"}
    assert parse_window("subdural") == Window(75, 215)
    assert parse_window("Soft-Tissue") == Window(50, 350)
    assert parse_window("40,80") == Window(40, 80)
    assert parse_window("600/2800") == WINDOW_PRESETS["bone"]
    assert parse_window((40, 40)) == WINDOW_PRESETS["stroke"]
    with pytest.raises(IntensityError, match="unknown window"):
        parse_window("lung-ish")
    with pytest.raises(IntensityError):
        parse_window("40,-5")
    # bone window: 600 HU is the centre
    assert apply_window(np.array([600.0]), "bone")[0] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("brain", (40, 80)),
        ("BRAIN", (40, 80)),
        ("subdural", (75, 215)),
        ("stroke", (40, 40)),
        ("bone", (600, 2800)),
        ("50.5,85", (50.5, 85)),
        (" 40 , 80 ", (40, 80)),
        ("40/80", (40, 80)),
        ("L40 W80", (40, 80)),
        ("W:80 L:40", (40, 80)),
        ("level 75 width 215", (75, 215)),
    ],
)
def test_window_presets_and_level_width_forms(spec: str, expected: tuple[float, float]) -> None:
    assert parse_window(spec) == Window(*expected)


def test_non_finite_rejected() -> None:
    with pytest.raises(IntensityError, match="NaN"):
        apply_window(np.array([0.0, np.nan]), DEFAULT_WINDOW)


def test_window_volume_hu_and_transform() -> None:
    arr = np.full((4, 4, 3), 40, dtype=np.int16)
    out = window_volume(_vol(arr))
    assert out.shape == arr.shape and np.allclose(out, 0.5)
    assert np.allclose(Windowing("brain")(_vol(arr)), 0.5)
    assert np.allclose(Windowing("40,40")(arr.astype(np.float32) + 10), 0.75)


def test_window_volume_from_windowed_known() -> None:
    # stored 0..255 from the brain window: value 127.5 == 40 HU
    stored = np.array([0, 63.75, 127.5, 191.25, 255], dtype=np.float32).reshape(5, 1, 1)
    vol = _vol(stored, Intensity.windowed(Window(40, 80)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = window_volume(vol, Window(40, 40))  # narrower: no warning
    np.testing.assert_allclose(out.ravel(), [0, 0, 0.5, 1, 1], atol=1e-6)
    with pytest.warns(ClippedWindowWarning, match="outside the stored window"):
        wide = window_volume(vol, "subdural")
    # 0 HU (stored 0) in the subdural window [-32.5, 182.5]
    assert wide.ravel()[0] == pytest.approx(32.5 / 215, abs=1e-5)


def test_window_volume_unknown_window() -> None:
    stored = np.array([0, 51, 255], dtype=np.float32).reshape(3, 1, 1)
    vol = _vol(stored, Intensity.windowed(None))
    with pytest.raises(IntensityError, match="window is unknown"):
        window_volume(vol)
    out = window_volume(vol, assume_stored_window_ok=True)
    np.testing.assert_allclose(out.ravel(), [0.0, 0.2, 1.0], atol=1e-6)
    # without a stored range the observed range is used
    vol2 = _vol(stored + 10, Intensity(IntensityKind.WINDOWED, None, None))
    np.testing.assert_allclose(
        window_volume(vol2, assume_stored_window_ok=True).ravel(), [0.0, 0.2, 1.0], atol=1e-6
    )


def test_window_volume_rejects_labels_and_unknown() -> None:
    arr = np.zeros((2, 2, 2), dtype=np.uint8)
    with pytest.raises(IntensityError, match="label"):
        window_volume(_vol(arr, Intensity.label()))
    with pytest.raises(IntensityError, match="unknown meaning"):
        window_volume(_vol(arr, Intensity(IntensityKind.UNKNOWN)))


def test_case166_already_windowed() -> None:
    if not (CASE166 / "image.nii.gz").exists():
        pytest.skip("real case166 not available")
    from ichseg.io.nifti import read_nifti

    # case166: stored 0..255 in steps of 3, HU ~= value / 3 + 8 -> window [8, 93] HU
    vol = read_nifti(CASE166 / "image.nii.gz", Intensity.windowed(Window.from_bounds(8, 93)))
    mask = read_nifti(CASE166 / "mask.nii.gz").array > 0
    with pytest.warns(ClippedWindowWarning):  # brain [0, 80] reaches below the stored 8 HU
        out = window_volume(vol, "brain")
    hu = vol.hu()
    assert np.allclose(hu[vol.array == 96], 40.0, atol=1e-3)
    assert np.allclose(out[vol.array == 96], 0.5, atol=1e-4)
    # blood is brighter than its surroundings in the brain window
    assert out[mask].mean() > 0.7 > out[~mask & (out > 0)].mean()
