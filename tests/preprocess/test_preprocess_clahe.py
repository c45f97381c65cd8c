"""CLAHE per slice."""

from __future__ import annotations

import numpy as np
import pytest

from ichseg.errors import ConfigError, DimensionalityError, IntensityError
from ichseg.preprocess.clahe import CLAHE, apply_clahe


def _low_contrast(shape: tuple[int, int, int] = (4, 48, 48)) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = 0.45 + 0.1 * rng.random(shape)
    base[:, 10:30, 10:30] += 0.05
    return base.astype(np.float32)


def test_clahe_increases_contrast_per_slice() -> None:
    x = _low_contrast()
    x[2] = 0.3  # constant slice stays constant
    out = apply_clahe(x, clip_limit=0.03)
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out[0].std() > 2 * x[0].std()
    np.testing.assert_array_equal(out[2], x[2])


def test_clahe_slice_axis_equivalence() -> None:
    x = _low_contrast((3, 32, 32))
    a = apply_clahe(x, slice_axis=0, kernel_size=8)
    b = apply_clahe(np.moveaxis(x, 0, 2), slice_axis=2, kernel_size=8)
    np.testing.assert_allclose(np.moveaxis(b, 2, 0), a, atol=1e-6)
    np.testing.assert_allclose(CLAHE(kernel_size=8)(x), a)


def test_clahe_bad_inputs() -> None:
    with pytest.raises(IntensityError, match=r"\[0, 1\]"):
        apply_clahe(np.full((2, 8, 8), 40.0, dtype=np.float32))
    with pytest.raises(DimensionalityError):
        apply_clahe(np.zeros((8, 8)))
    with pytest.raises(ConfigError):
        apply_clahe(np.zeros((2, 8, 8)), clip_limit=0)
