"""What do the numbers in a CT volume mean? Detection and validation of intensities.

Head CT reaches us in two common forms:

* **raw Hounsfield units** (DICOM after rescale, most NIfTI conversions): air at about -1000
  (padding often -1024, -2048 or -3024), brain 20..45, blood 50..90, bone several hundred and up;
* **raw HU, skull-stripped**: brain only, about ``0..80`` HU, every voxel outside the brain exactly
  ``0`` (no air, no skull), common in research data;
* **raw HU, tight field of view**: cropped to the head, so no air, but bone above ``300`` HU
  (which no ``0..255`` export reaches) and at least 30 % soft tissue;
* **already windowed** integer data, e.g. the ICH-HPINet sample case: an HU window mapped linearly
  to ``0..255`` and clipped (there in steps of 3).

Anything else (floats in ``0..1``, z-scores, MR-like all-positive ranges) is refused unless the
caller declares what it is (``input_window``) or explicitly allows non-CT data.

Detection rules (:func:`detect_intensity`, on a strided sample of at most ``MAX_SAMPLES`` voxels):

* raw HU: minimum <= ``HU_MIN_BELOW`` (air/padding), maximum >= ``HU_MAX_ABOVE`` (tissue), both
  inside ``HU_LIMITS``;
* skull-stripped raw HU: no air (minimum > ``HU_MIN_BELOW``), at least ``STRIPPED_MIN_ZERO_FRACTION``
  of the voxels exactly 0, at least ``WINDOWED_MIN_UNIQUE`` distinct values, and the other voxels
  look like brain: median in ``STRIPPED_MEDIAN_HU``, 99th percentile <= ``STRIPPED_P99_MAX_HU`` (a
  ``0..255`` window saturating at 255 (skull) fails this), at least half in ``STRIPPED_TISSUE_HU``;
* windowed: integers in ``0..255`` reaching at least ``WINDOWED_MIN_MAX`` with at least
  ``WINDOWED_MIN_UNIQUE`` distinct values. The HU window they came from is read from the file's
  header where it is recorded (:func:`stored_window_hint`), else :func:`resolve_window` assumes
  the brain window (``ASSUMED_WINDOW``, 40/80) and says so in one warning.

:func:`plausibility_problems` then flags data that passed as CT but does not look like an image
of a head: uncorrelated neighbouring voxels (random data) and, for raw HU, no brain-tissue peak
in ``0..80`` HU.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from math import gcd
from typing import Any

import numpy as np

from ichseg.errors import InputWarning, IntensityError
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
#: Skull-stripped HU: at least this fraction of the voxels is exactly 0 (outside the brain) ...
STRIPPED_MIN_ZERO_FRACTION = 0.05
#: ... the other voxels have their median here (brain 20..45 HU, CSF 0..15, blood 50..90) ...
STRIPPED_MEDIAN_HU = (10.0, 60.0)
#: ... their 99th percentile at most here (calcifications are rare; no skull) ...
STRIPPED_P99_MAX_HU = 150.0
#: ... and at least half of them lie in this soft-tissue range.
STRIPPED_TISSUE_HU = (-20.0, 100.0)
#: The window assumed for windowed data whose window is recorded nowhere: the brain window
#: (level 40, width 80 HU), which PhysioNet CT-ICH and the ICH-HPINet sample case were stored with.
ASSUMED_WINDOW = Window(level=40.0, width=80.0)
ASSUMED_WINDOW_NAME = "brain"
#: Plausibility: adjacent voxels of any real image are strongly correlated (r > 0.9 on CT);
#: random data gives r near 0. Below this the data is reported as noise.
NOISE_MAX_CORRELATION = 0.3
#: Plausibility (raw HU): brain tissue is the densest HU range of a head CT. Its density (voxels per
#: HU) in ``BRAIN_HU`` must be at least ``BRAIN_PEAK_RATIO`` times that of the flanks ...
BRAIN_HU = (0.0, 80.0)
BRAIN_FLANKS_HU = ((-600.0, -100.0), (100.0, 600.0))
BRAIN_PEAK_RATIO = 2.0
#: ... and hold at least this fraction of all voxels.
BRAIN_MIN_FRACTION = 0.005
#: Smaller volumes are too small to judge (and are no scans anyway).
PLAUSIBILITY_MIN_VOXELS = 1000
#: Voxel pairs examined per axis by the neighbour-correlation check.
_MAX_PAIRS = 200_000


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
    if integral and uniq.size > 1 and max(abs(lo), abs(hi)) < 2.0**53:
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


def _finite_sample(array: np.ndarray) -> np.ndarray:
    a = np.asarray(array)
    if a.dtype.kind == "b":
        a = a.astype(np.uint8)
    sample = _sample(a, MAX_SAMPLES)
    if sample.dtype.kind == "f":
        sample = sample[np.isfinite(sample)]
    return sample


def _looks_skull_stripped_hu(array: np.ndarray, s: IntensityStats) -> bool:
    if s.min <= HU_MIN_BELOW or s.max > HU_LIMITS[1] or s.n_unique < WINDOWED_MIN_UNIQUE:
        return False
    sample = _finite_sample(array)
    if sample.size == 0:
        return False
    zero = sample == 0
    if np.count_nonzero(zero) < STRIPPED_MIN_ZERO_FRACTION * sample.size:
        return False
    tissue = sample[~zero].astype(np.float64)
    if tissue.size < 10:
        return False
    median, p99 = np.percentile(tissue, [50, 99])
    in_soft = np.count_nonzero(
        (tissue >= STRIPPED_TISSUE_HU[0]) & (tissue <= STRIPPED_TISSUE_HU[1])
    )
    return bool(
        STRIPPED_MEDIAN_HU[0] <= median <= STRIPPED_MEDIAN_HU[1]
        and p99 <= STRIPPED_P99_MAX_HU
        and in_soft >= 0.5 * tissue.size
    )


#: :attr:`Intensity.note` of skull-stripped raw-HU volumes.
SKULL_STRIPPED_NOTE = "skull-stripped (no air/bone)"
#: Tight field of view (no air in the image, e.g. a scan cropped to the head): bone reaches at
#: least this high, which no 0..255 windowed export can ...
CROPPED_MIN_BONE_HU = 300.0
#: ... and at least this fraction of the voxels is soft tissue (``STRIPPED_TISSUE_HU``).
CROPPED_MIN_TISSUE_FRACTION = 0.3
#: :attr:`Intensity.note` of raw-HU volumes without air.
CROPPED_NOTE = "tight field of view (no air)"


def _looks_cropped_hu(array: np.ndarray, s: IntensityStats) -> bool:
    """Raw HU cropped to the head: no air, but bone and mostly soft tissue."""
    if s.min <= HU_MIN_BELOW or s.max < CROPPED_MIN_BONE_HU or s.max > HU_LIMITS[1]:
        return False
    sample = _finite_sample(array).astype(np.float64)
    if sample.size == 0:
        return False
    soft = np.count_nonzero((sample >= STRIPPED_TISSUE_HU[0]) & (sample <= STRIPPED_TISSUE_HU[1]))
    return bool(soft >= CROPPED_MIN_TISSUE_FRACTION * sample.size)


def detect_intensity(array: np.ndarray, stats: IntensityStats | None = None) -> Intensity:
    """Guess what the values mean: raw HU (possibly skull-stripped), windowed ``0..255`` (window
    unknown) or unknown; see the module docstring for the rules.

    Non-finite voxels are ignored here (:func:`validate_ct` reports them).
    """
    s = stats if stats is not None else intensity_stats(array)
    if s.n_nonfinite == s.n_voxels:
        return Intensity(IntensityKind.UNKNOWN)
    if _looks_hu(s):
        return Intensity.hu()
    if _looks_skull_stripped_hu(array, s):
        return Intensity.hu().with_note(SKULL_STRIPPED_NOTE)
    if _looks_cropped_hu(array, s):
        return Intensity.hu().with_note(CROPPED_NOTE)
    if _looks_windowed(s):
        return Intensity.windowed(None, WINDOWED_RANGE)
    return Intensity(IntensityKind.UNKNOWN)


# --------------------------------------------------------------------------------------------
# the HU window of already-windowed data
# --------------------------------------------------------------------------------------------

_NUM = r"(-?\d+(?:\.\d+)?)"
_POS = r"(\d+(?:\.\d+)?)"
#: Free-text spellings of a window: (pattern, order of the two numbers).
_WINDOW_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(rf"\b(?:window|wl/ww|wc/ww|l/w)\s*[:=]?\s*{_NUM}\s*[,/ ]\s*{_POS}", re.I),
        "lw",
    ),
    (re.compile(rf"\b(?:ww/wl|ww/wc|w/l)\s*[:=]?\s*{_POS}\s*[,/ ]\s*{_NUM}", re.I), "wl"),
    (
        re.compile(
            rf"\b(?:L|WL|WC|level|cent(?:er|re))\s*[:=]?\s*{_NUM}\s*[,/; ]?\s*"
            rf"(?:W|WW|width)\s*[:=]?\s*{_POS}",
            re.I,
        ),
        "lw",
    ),
    (
        re.compile(
            rf"\b(?:W|WW|width)\s*[:=]?\s*{_POS}\s*[,/; ]?\s*"
            rf"(?:L|WL|WC|level|cent(?:er|re))\s*[:=]?\s*{_NUM}",
            re.I,
        ),
        "wl",
    ),
)
_PRESET_PATTERN = re.compile(r"\b(brain|subdural|stroke|bone)[ _-]?window\b", re.I)


def _plausible_hu_window(level: float, width: float) -> Window | None:
    if not (np.isfinite(level) and np.isfinite(width)):
        return None
    if not (-1100.0 <= level <= 3100.0 and 1.0 <= width <= 5000.0):
        return None
    return Window(float(level), float(width))


def parse_window_text(text: str) -> Window | None:
    """An HU window written in free text (a NIfTI ``descrip``/``intent_name``, a NRRD comment):
    ``"window 40,80"``, ``"L40 W80"``, ``"W:80 L:40"``, ``"WC=40 WW=80"``, ``"brain window"``...
    ``None`` when there is none (or the numbers cannot be an HU window)."""
    t = str(text or "")
    for pattern, order in _WINDOW_PATTERNS:
        m = pattern.search(t)
        if m:
            a, b = float(m.group(1)), float(m.group(2))
            level, width = (a, b) if order == "lw" else (b, a)
            win = _plausible_hu_window(level, width)
            if win is not None:
                return win
    m = _PRESET_PATTERN.search(t)
    if m:
        from ichseg.preprocess.windowing import WINDOW_PRESETS

        return WINDOW_PRESETS[m.group(1).lower()]
    return None


def _number(value: Any) -> float | None:
    try:
        if isinstance(value, list | tuple):  # multi-valued DICOM tags: the first window
            value = value[0]
        out = float(value)
    except (TypeError, ValueError, IndexError):
        return None
    return out if np.isfinite(out) else None


def stored_window_hint(
    meta: Mapping[str, Any], stored_range: tuple[float, float] | None = WINDOWED_RANGE
) -> tuple[Window, str] | None:
    """The HU window already-windowed data was made with, where the file's header records it.

    Looks at (in this order) a DICOM ``WindowCenter``/``WindowWidth`` (``meta["window_center"]``,
    ``meta["window_width"]``) unless it merely spans the stored range (a display window in stored
    units); a window written in a NIfTI ``descrip`` or ``intent_name``; NIfTI ``cal_min``/``cal_max``
    when they cannot be a display range of the stored values (they reach outside it). Returns
    ``(window, where it was found)`` or ``None``.
    """
    lo_s, hi_s = stored_range if stored_range is not None else WINDOWED_RANGE
    tol = 0.01 * (hi_s - lo_s)
    c, w = _number(meta.get("window_center")), _number(meta.get("window_width"))
    if c is not None and w is not None:
        win = _plausible_hu_window(c, w)
        spans_stored = (
            win is not None and abs(win.lo - lo_s) <= tol + 1 and abs(win.hi - hi_s) <= tol + 1
        )
        if win is not None and not spans_stored:
            return win, f"DICOM WindowCenter/WindowWidth {c:g}/{w:g}"
    for key in ("descrip", "intent_name"):
        text = str(meta.get(key) or "")
        win = parse_window_text(text)
        if win is not None:
            return win, f"NIfTI {key} {text.strip()!r}"
    cal_min, cal_max = _number(meta.get("cal_min")), _number(meta.get("cal_max"))
    if (
        cal_min is not None
        and cal_max is not None
        and cal_max > cal_min
        and (cal_min < lo_s - tol or cal_max > hi_s + tol)
    ):
        win = _plausible_hu_window((cal_min + cal_max) / 2.0, cal_max - cal_min)
        if win is not None:
            return win, f"NIfTI cal_min/cal_max {cal_min:g}/{cal_max:g}"
    return None


def resolve_window(
    intensity: Intensity,
    meta: Mapping[str, Any],
    *,
    where: str = "image",
    assume: Window | None = ASSUMED_WINDOW,
) -> tuple[Intensity, str]:
    """Give windowed data of unknown window a window: the one its header records, else ``assume``.

    Returns ``(intensity, source)`` with source ``"header"`` or ``"assumed"`` (``"detected"`` and
    the intensity unchanged when nothing is to be done or ``assume`` is ``None``). The assumption is
    announced in one :class:`~ichseg.errors.InputWarning` line naming it and how to override it.
    """
    if intensity.kind != IntensityKind.WINDOWED or intensity.window is not None:
        return intensity, "detected"
    rng = intensity.stored_range or WINDOWED_RANGE
    hint = stored_window_hint(meta, rng)
    if hint is not None:
        win, found = hint
        note = f"window L{win.level:g}/W{win.width:g} from {found}"
        return Intensity.windowed(win, rng).with_note(note), "header"
    if assume is None:
        return intensity, "detected"
    name = ASSUMED_WINDOW_NAME if assume == ASSUMED_WINDOW else "given"
    label = f"{name} {assume.level:g}/{assume.width:g}"
    warnings.warn(
        f"{where}: already-windowed {rng[0]:g}..{rng[1]:g} intensities and no HU window recorded in "
        f"the file; assuming the {label} window (level/width HU); if it was made with another "
        "window pass it: --input-window LEVEL,WIDTH or a preset (brain, subdural, stroke, bone)",
        InputWarning,
        stacklevel=3,
    )
    return Intensity.windowed(assume, rng).with_note(f"window assumed {label}"), "assumed"


# --------------------------------------------------------------------------------------------
# does it look like an image of a head at all?
# --------------------------------------------------------------------------------------------


def neighbour_correlation(array: np.ndarray, max_pairs: int = _MAX_PAIRS) -> float | None:
    """Largest Pearson correlation between adjacent voxels along any axis (``None`` if constant).

    Pairs are taken from a central run of at most 33 positions along each axis, with the other two
    axes strided so that at most ``max_pairs`` pairs are used.
    """
    a = np.asarray(array)
    if a.ndim != 3:
        return None
    best: float | None = None
    for axis in range(3):
        n = a.shape[axis]
        if n < 2:
            continue
        run = min(n, 33)
        start = (n - run) // 2
        others = [a.shape[d] for d in range(3) if d != axis]
        stride = max(1, int(np.ceil(np.sqrt(others[0] * others[1] * (run - 1) / max_pairs))))
        index: list[slice] = [slice(None, None, stride)] * 3
        index[axis] = slice(start, start + run)
        sub = np.moveaxis(a[tuple(index)], axis, 0).astype(np.float64)
        if sub.dtype.kind == "f" and not np.all(np.isfinite(sub)):
            continue
        x, y = sub[:-1].ravel(), sub[1:].ravel()
        sx, sy = x.std(), y.std()
        if x.size < 8 or sx == 0 or sy == 0:
            continue
        r = float(((x - x.mean()) * (y - y.mean())).mean() / (sx * sy))
        best = r if best is None else max(best, r)
    return best


def _flat_histogram(sample: np.ndarray) -> bool:
    if sample.size < 100:
        return False
    counts, _ = np.histogram(sample.astype(np.float64), bins=32)
    return bool(counts.max() <= 2.0 * counts.mean() and np.count_nonzero(counts) >= 29)


def plausibility_problems(array: np.ndarray, intensity: Intensity) -> list[str]:
    """Checks a CT image passes on real scans; each failed one as a phrase naming the check.

    * every image: ``"intensities look like (uniform) noise: adjacent voxels are uncorrelated"``
      when the neighbour correlation is below ``NOISE_MAX_CORRELATION``;
    * nothing for volumes of fewer than ``PLAUSIBILITY_MIN_VOXELS`` voxels;
    * raw HU: ``"no brain-tissue peak in 0..80 HU"`` when that range holds fewer than
      ``BRAIN_MIN_FRACTION`` of the voxels or is not ``BRAIN_PEAK_RATIO`` times denser (per HU)
      than the ranges either side of it.
    """
    if intensity.kind not in (IntensityKind.HU, IntensityKind.WINDOWED):
        return []
    if np.asarray(array).size < PLAUSIBILITY_MIN_VOXELS:
        return []
    problems: list[str] = []
    sample = _finite_sample(array)
    if sample.size == 0:
        return problems
    r = neighbour_correlation(array)
    if r is not None and r < NOISE_MAX_CORRELATION:
        what = "uniform noise (flat histogram, " if _flat_histogram(sample) else "random noise ("
        problems.append(
            f"intensities look like {what}adjacent voxels uncorrelated: r = {r:.2f}, "
            f"real images > {NOISE_MAX_CORRELATION:g})"
        )
    if intensity.kind == IntensityKind.HU:
        s = sample.astype(np.float64)
        n = float(s.size)
        brain = np.count_nonzero((s >= BRAIN_HU[0]) & (s <= BRAIN_HU[1])) / n
        density = brain / (BRAIN_HU[1] - BRAIN_HU[0])
        flank = max(
            np.count_nonzero((s >= lo) & (s <= hi)) / n / (hi - lo) for lo, hi in BRAIN_FLANKS_HU
        )
        if brain < BRAIN_MIN_FRACTION or density < BRAIN_PEAK_RATIO * flank:
            problems.append(
                f"no brain-tissue peak in {BRAIN_HU[0]:g}..{BRAIN_HU[1]:g} HU ({brain:.1%} of the "
                "voxels there, not denser than the HU ranges around it)"
            )
    return problems


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
        "--input-window 40,80); to load it anyway pass allow_non_ct=True (CLI --allow-non-ct)"
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
