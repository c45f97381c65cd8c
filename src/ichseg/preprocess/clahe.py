"""CLAHE (contrast-limited adaptive histogram equalisation) per axial slice.

Used by IHSNet-style 2D pipelines on brain-windowed slices. Input is a ``[0, 1]`` volume (e.g. the
output of :func:`ichseg.preprocess.windowing.window_volume`); each 2D slice along ``slice_axis``
is equalised independently with :func:`skimage.exposure.equalize_adapthist`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ichseg.errors import ConfigError, DimensionalityError, IntensityError


def apply_clahe(
    volume01: np.ndarray,
    *,
    slice_axis: int = 0,
    kernel_size: int | Sequence[int] | None = None,
    clip_limit: float = 0.01,
    nbins: int = 256,
) -> np.ndarray:
    """Equalise each slice of a 3D ``[0, 1]`` array; returns float32 in ``[0, 1]``, same shape.

    ``slice_axis`` is 0 for ``(Z, Y, X)`` network arrays and 2 for ``(i, j, k)`` volume arrays.
    ``kernel_size`` defaults to 1/8 of each slice dimension (skimage's default); ``clip_limit``
    in ``(0, 1]`` (higher = more contrast).
    """
    arr = np.asarray(volume01)
    if arr.ndim != 3:
        raise DimensionalityError(f"CLAHE expects a 3D array, got shape {arr.shape}")
    if not -3 <= slice_axis <= 2:
        raise ConfigError(f"slice_axis must be 0, 1 or 2, got {slice_axis}")
    if not 0.0 < clip_limit <= 1.0:
        raise ConfigError(f"clip_limit must be in (0, 1], got {clip_limit}")
    if nbins < 2:
        raise ConfigError(f"nbins must be >= 2, got {nbins}")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise IntensityError("CLAHE input contains NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-6 or hi > 1.0 + 1e-6:
        raise IntensityError(
            f"CLAHE expects intensities in [0, 1] (window the image first), got [{lo:g}, {hi:g}]"
        )
    from skimage.exposure import equalize_adapthist

    moved = np.moveaxis(np.clip(arr, 0.0, 1.0), slice_axis, 0)
    out = np.empty_like(moved, dtype=np.float32)
    for z in range(moved.shape[0]):
        sl = moved[z]
        if float(sl.max()) - float(sl.min()) < 1e-12:  # constant slice: nothing to equalise
            out[z] = sl
            continue
        out[z] = equalize_adapthist(
            sl, kernel_size=kernel_size, clip_limit=clip_limit, nbins=nbins
        ).astype(np.float32)
    return np.ascontiguousarray(np.moveaxis(out, 0, slice_axis))


class CLAHE:
    """Callable transform wrapping :func:`apply_clahe` with fixed parameters."""

    def __init__(
        self,
        *,
        slice_axis: int = 0,
        kernel_size: int | Sequence[int] | None = None,
        clip_limit: float = 0.01,
        nbins: int = 256,
    ) -> None:
        self.slice_axis = slice_axis
        self.kernel_size = kernel_size
        self.clip_limit = clip_limit
        self.nbins = nbins

    def __call__(self, volume01: np.ndarray) -> np.ndarray:
        return apply_clahe(
            volume01,
            slice_axis=self.slice_axis,
            kernel_size=self.kernel_size,
            clip_limit=self.clip_limit,
            nbins=self.nbins,
        )

    def __repr__(self) -> str:
        return f"CLAHE(clip_limit={self.clip_limit}, kernel_size={self.kernel_size})"
