"""What do the numbers in a CT volume mean? Detection and validation of intensities.

Head CT reaches us in two common forms:

* **raw Hounsfield units** (DICOM after rescale, most NIfTI conversions): air at about -1000
  (padding often -1024, -2048 or -3024), brain 20..45, blood 50..90, bone several hundred and up;
* **already windowed** integer data, e.g. the ICH-HPINet sample case: an HU window mapped linearly
  to ``0..255`` and clipped (there in steps of 3).

Anything else (floats in ``0..1``, z-scores, MR-like all-positive ranges) is refused unless the
caller declares what it is (``input_window``) or explicitly allows non-CT data.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd

import numpy as np

from ichseg.errors import IntensityError
from ichseg.io.volume import Intensity, IntensityKind, Volume, Window

#: Voxels examined when estimating value sets (min/max/NaN counts always use every voxel).
MAX_SAMPLES = 2_000_000
#: Raw HU data must reach at least this low (air, or padding outside the field of view) ...
HU_MIN_BELOW = -200.0
#: ... and at least this high (brain tissue; not bone, so skull-stripped HU images still qualify).
HU_MAX_ABOVE = 20.0
#: Plausible absolute limits of stored HU values (16-bit scanners, padding included).
HU_LIMITS = (-32768.0, 65535.0)
#: The windowed range we recognise without being told.
WINDOWED_RANGE = (0.0, 255.0)
#: Windowed data must use the range: the bright end must reach at least this value ...
WINDOWED_MIN_MAX = 100.0
#: ... and there must be more distinct values than a label map would have.
WINDOWED_MIN_UNIQUE = 16


@dataclass(frozen=True)
class IntensityStats:
    """Summary of an array's values used by detection, validation and error messages."""

    dtype: str
    n_voxels: int
    n_nonfinite: int
    min: float  #: over finite voxels (NaN when there are none)
    max: float
    integral: bool  #: every (sampled) finite value is a whole number
    n_unique: int  #: distinct values among the sampled voxels
    step: float | None  #: greatest common step between sampled integer values (None for floats)

    @property
    def constant(self) -> bool:
        return self.n_voxels - self.n_nonfinite > 0 and self.min == self.max

    def describe(self) -> str:
        kind = "integer" if self.integral else "non-integer"
        step = f", steps of {self.step:g}" if self.step not in (None, 1.0) else ""
        return (
            f"values {self.min:.6g}..{self.max:.6g} ({self.dtype}, {kind}, "
            f"{self.n_unique} distinct{step})"
        )


def _sample(array: np.ndarray, max_samples: int) -> np.ndarray:
    flat = np.asarray(array).reshape(-1)
    if flat.size <= max_samples:
        return flat
    return flat[:: int(np.ceil(flat.size / max_samples))]


def intensity_stats(array: np.ndarray, max_samples: int = MAX_SAMPLES) -> IntensityStats:
    """Compute :class:`IntensityStats` (value sets are estimated on a strided sample)."""
    a = np.asarray(array)
    if a.dtype.kind not in "biuf":
        raise IntensityError(f"unsupported voxel type {a.dtype}: expected integer or real values")
    if a.dtype.kind == "b":
        a = a.astype(np.uint8)
    n = int(a.size)
    if a.dtype.kind == "f":
        finite_mask = np.isfinite(a)
        n_nonfinite = n - int(np.count_nonzero(finite_mask))
        if n_nonfinite == n:
            return IntensityStats(str(a.dtype), n, n, float("nan"), float("nan"), False, 0, None)
        finite = a[finite_mask] if n_nonfinite else a
        lo, hi = float(finite.min()), float(finite.max())
        sample = _sample(finite, max_samples)
        integral = bool(np.all(sample == np.round(sample)))
    else:
        n_nonfinite = 0
        lo, hi = float(a.min()), float(a.max())
        sample = _sample(a, max_samples)
        integral = True
    uniq = np.unique(sample)
    step: float | None = None
    if integral and uniq.size > 1:
        diffs = np.diff(uniq.astype(np.int64))
        g = 0
        for d in np.unique(diffs)[:64]:
            g = gcd(g, int(d))
        step = float(g)
    return IntensityStats(str(a.dtype), n, n_nonfinite, lo, hi, integral, int(uniq.size), step)


def _looks_hu(s: IntensityStats) -> bool:
    return (
        s.min <= HU_MIN_BELOW
        and s.max >= HU_MAX_ABOVE
        and s.min >= HU_LIMITS[0]
        and s.max <= HU_LIMITS[1]
    )


def _looks_windowed(s: IntensityStats) -> bool:
    return (
        s.integral
        and s.min >= WINDOWED_RANGE[0]
        and s.max <= WINDOWED_RANGE[1]
        and s.max >= WINDOWED_MIN_MAX
        and s.n_unique >= WINDOWED_MIN_UNIQUE
    )


def detect_intensity(array: np.ndarray, stats: IntensityStats | None = None) -> Intensity:
    """Guess what the values mean: raw HU, windowed ``0..255`` (window unknown) or unknown.

    Non-finite voxels are ignored here (:func:`validate_ct` reports them).
    """
    s = stats if stats is not None else intensity_stats(array)
    if s.n_nonfinite == s.n_voxels:
        return Intensity(IntensityKind.UNKNOWN)
    if _looks_hu(s):
        return Intensity.hu()
    if _looks_windowed(s):
        return Intensity.windowed(None, WINDOWED_RANGE)
    return Intensity(IntensityKind.UNKNOWN)


def infer_stored_range(
    array: np.ndarray, window: Window, stats: IntensityStats | None = None
) -> tuple[float, float]:
    """The range a declared ``window`` was mapped onto: ``0..1``, ``0..255`` or the window itself.

    Raises :class:`IntensityError` when the values fit none of them.
    """
    s = stats if stats is not None else intensity_stats(array)
    if s.min >= 0.0 and s.max <= 1.0:
        return (0.0, 1.0)
    if s.min >= 0.0 and s.max <= 255.0:
        return WINDOWED_RANGE
    tol = 1e-3 * window.width
    if s.min >= window.lo - tol and s.max <= window.hi + tol:
        return (window.lo, window.hi)
    raise IntensityError(
        f"declared input window {window.level:g}/{window.width:g} (HU {window.lo:g}..{window.hi:g}) "
        f"does not fit the data: {s.describe()}; windowed data must lie in 0..1, 0..255 or "
        "the window's own HU range"
    )


def unknown_intensity_message(s: IntensityStats) -> str:
    """Why values do not look like CT, and how to declare what they are."""
    if s.min >= 0.0 and s.max <= 1.0:
        why = "values lie in 0..1, which looks like normalised data"
    elif s.min < 0.0 and s.min >= -20.0 and s.max <= 20.0:
        why = "small values around 0, which looks like z-score normalised data"
    elif s.min >= 0.0 and s.max > WINDOWED_RANGE[1]:
        why = (
            "all values are >= 0 with a maximum above 255, which looks like MR or like CT saved "
            "without its rescale intercept (HU + 1024)"
        )
    elif s.min >= 0.0 and s.max < WINDOWED_MIN_MAX:
        why = "values are small non-negative numbers (a label map or a narrow window?)"
    else:
        why = "the range matches neither raw HU nor a 0..255 window"
    return (
        f"intensities do not look like CT: {s.describe()}; {why}. Expected raw HU (air about "
        "-1000, brain 20..45, bone several hundred) or windowed integers 0..255. If the data is CT mapped from an HU "
        "window, declare that window (input_window=Window(level=40, width=80), CLI "
        "--input-window 40,80); to load it anyway pass allow_non_ct=True"
    )


def check_finite(array: np.ndarray, what: str = "image") -> None:
    """Raise :class:`IntensityError` if ``array`` holds NaN or infinite values (with their count)."""
    a = np.asarray(array)
    if a.dtype.kind == "f":
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        if bad:
            raise IntensityError(
                f"{what} contains {bad} NaN or infinite voxel(s) out of {a.size}; "
                "fix or mask them before loading"
            )


def validate_ct(volume: Volume, stats: IntensityStats | None = None) -> IntensityStats:
    """Check that ``volume`` is usable CT under its declared :class:`Intensity`.

    Raises :class:`IntensityError` for non-finite values, a constant image, intensities of kind
    ``UNKNOWN`` or ``LABEL``, HU values outside the 16-bit scanner range, or windowed values outside
    their ``stored_range``. Returns the statistics it computed.
    """
    check_finite(volume.array)
    s = stats if stats is not None else intensity_stats(volume.array)
    if s.constant:
        raise IntensityError(f"image is constant (every voxel is {s.min:g}); nothing to segment")
    kind = volume.intensity.kind
    if kind == IntensityKind.UNKNOWN:
        raise IntensityError(unknown_intensity_message(s))
    if kind == IntensityKind.LABEL:
        raise IntensityError("expected a CT image, got a label volume (a mask?)")
    if kind == IntensityKind.HU:
        if s.min < HU_LIMITS[0] or s.max > HU_LIMITS[1]:
            raise IntensityError(f"values are outside any CT Hounsfield range: {s.describe()}")
        if s.max - s.min <= 2.0:
            raise IntensityError(unknown_intensity_message(s))
    if kind == IntensityKind.WINDOWED:
        rng = volume.intensity.stored_range
        if rng is not None:
            tol = 1e-6 * max(1.0, abs(rng[1] - rng[0]))
            if s.min < rng[0] - tol or s.max > rng[1] + tol:
                raise IntensityError(
                    f"windowed intensities must lie in {rng[0]:g}..{rng[1]:g}, got {s.describe()}"
                )
    return s
