"""HU windowing: map Hounsfield units linearly onto ``[0, 1]`` with clipping.

Presets (level / width in HU), accepted wherever a window is parsed (:func:`parse_window`,
``--input-window``, ``--window``) next to ``"LEVEL,WIDTH"``:

* ``brain`` 40 / 80 — the standard brain window and ichseg's default; PhysioNet CT-ICH was
  released with (and ICH-HPINet trained on) this window mapped to 0..255. It is also the window
  assumed for already-windowed 0..255 data whose window is recorded nowhere
  (:data:`ichseg.io.intensity.ASSUMED_WINDOW`).
* ``subdural`` 75 / 215 — a common subdural window; widened to separate thin extra-axial blood
  from the adjacent skull (Radiopaedia "Windowing (CT)", head and neck: subdural W130–300 /
  L50–100; 75/215 lies in the middle of that range).
* ``stroke`` 40 / 40 — the narrow stroke window (Radiopaedia "Windowing (CT)": W40/L40, or the
  very narrow W8/L32 of Radiopaedia case 19148 / BJR 2011), which emphasises grey/white contrast.
* ``bone`` 600 / 2800 — the head-and-neck bone window of Radiopaedia "Windowing (CT)" (temporal
  bones W2800/L600); body bone windows are narrower (W2000/L500, or W3000/L1000 "wide bone").
* ``soft_tissue`` 50 / 350 — the standard soft-tissue window (W350/L50).

Already-windowed inputs (e.g. PhysioNet's 0..255 images) can be re-windowed only through their
approximate HU values, so information outside the stored window is gone; see
:func:`window_volume`.
"""

from __future__ import annotations

import warnings

import numpy as np

from ichseg.errors import IchsegWarning, IntensityError
from ichseg.io.volume import IntensityKind, Volume, Window

WINDOW_PRESETS: dict[str, Window] = {
    "brain": Window(level=40.0, width=80.0),
    "subdural": Window(level=75.0, width=215.0),
    "stroke": Window(level=40.0, width=40.0),
    "bone": Window(level=600.0, width=2800.0),
    "soft_tissue": Window(level=50.0, width=350.0),
}

DEFAULT_WINDOW: Window = WINDOW_PRESETS["brain"]


class ClippedWindowWarning(IchsegWarning):
    """The requested window reaches beyond the window the input was stored with."""


def parse_window(spec: str | Window | tuple[float, float]) -> Window:
    """A :class:`Window` from a preset name (``"brain"``, ``"subdural"``, ``"stroke"``,
    ``"bone"``, ``"soft_tissue"``; case-insensitive), ``"level,width"`` / ``"level/width"``, a
    labelled form such as ``"L40 W80"`` or ``"W:80 L:40"``, or a ``(level, width)`` tuple.

    Raises :class:`IntensityError` for unknown names or malformed numbers.
    """
    if isinstance(spec, Window):
        return spec
    if isinstance(spec, tuple | list):
        if len(spec) != 2:
            raise IntensityError(f"a window needs (level, width), got {spec!r}")
        return Window(float(spec[0]), float(spec[1]))
    text = str(spec).strip()
    key = text.lower().replace("-", "_").replace(" ", "_")
    if key in WINDOW_PRESETS:
        return WINDOW_PRESETS[key]
    parts = [p.strip() for p in text.replace("/", ",").split(",")]
    if len(parts) == 2:
        try:
            return Window(float(parts[0]), float(parts[1]))
        except ValueError:
            pass
    if any(c.isalpha() for c in text):  # "L40 W80", "W:80 L:40", "level 40 width 80"
        from ichseg.io.intensity import parse_window_text

        labelled = parse_window_text(text)
        if labelled is not None:
            return labelled
    names = ", ".join(WINDOW_PRESETS)
    raise IntensityError(f"unknown window {text!r}: use one of {names} or 'LEVEL,WIDTH' in HU")


def apply_window(hu: np.ndarray, window: Window | str = DEFAULT_WINDOW) -> np.ndarray:
    """Map HU values linearly so ``window.lo -> 0`` and ``window.hi -> 1``, clipped (float32)."""
    w = parse_window(window)
    arr = np.asarray(hu, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        raise IntensityError("cannot window an image with NaN or infinite values")
    out = (arr - np.float32(w.lo)) / np.float32(w.width)
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


def window_volume(
    volume: Volume,
    window: Window | str = DEFAULT_WINDOW,
    *,
    assume_stored_window_ok: bool = False,
) -> np.ndarray:
    """Windowed intensities of ``volume`` in ``[0, 1]`` (float32, same ``(i, j, k)`` layout).

    * ``HU`` volumes are windowed directly.
    * ``WINDOWED`` volumes with a known window are mapped back to approximate HU and re-windowed;
      a :class:`ClippedWindowWarning` is emitted when ``window`` reaches outside the stored window
      (values there were clipped when the file was written and cannot be recovered).
    * ``WINDOWED`` volumes with an unknown window raise :class:`IntensityError`, unless
      ``assume_stored_window_ok`` is set: then the stored range (or, if that is unknown, the
      observed min..max) is scaled to ``[0, 1]`` as is and ``window`` is ignored.
    * ``LABEL`` and ``UNKNOWN`` volumes raise :class:`IntensityError`.
    """
    w = parse_window(window)
    kind = volume.intensity.kind
    if kind == IntensityKind.HU:
        return apply_window(volume.array, w)
    if kind == IntensityKind.WINDOWED:
        stored = volume.intensity.window
        if stored is not None:
            if w.lo < stored.lo - 1e-6 or w.hi > stored.hi + 1e-6:
                warnings.warn(
                    f"requested window [{w.lo:g}, {w.hi:g}] HU reaches outside the stored window "
                    f"[{stored.lo:g}, {stored.hi:g}] HU; values beyond it were clipped when the "
                    "image was saved and cannot be recovered",
                    ClippedWindowWarning,
                    stacklevel=2,
                )
            return apply_window(volume.hu(), w)
        if not assume_stored_window_ok:
            raise IntensityError(
                "volume is already windowed but its HU window is unknown; declare it "
                "(e.g. --input-window 40,80 or a preset: brain, subdural, stroke, bone) or accept "
                "the stored window as is "
                "(assume_stored_window_ok=True)"
            )
        arr = np.asarray(volume.array, dtype=np.float32)
        if not np.all(np.isfinite(arr)):
            raise IntensityError("cannot window an image with NaN or infinite values")
        rng = volume.intensity.stored_range
        lo, hi = rng if rng is not None else (float(arr.min()), float(arr.max()))
        if hi <= lo:
            raise IntensityError(f"stored intensity range [{lo:g}, {hi:g}] is empty")
        out = (arr - np.float32(lo)) / np.float32(hi - lo)
        return np.clip(out, 0.0, 1.0, out=out)
    if kind == IntensityKind.LABEL:
        raise IntensityError("cannot window a label volume (a mask was passed as the image?)")
    raise IntensityError(
        "intensities of this volume have unknown meaning (not CT HU); load it as CT "
        "or declare its window before windowing"
    )


class Windowing:
    """Callable transform: ``Windowing("brain")(volume_or_hu_array) -> float32 [0, 1]``."""

    def __init__(
        self, window: Window | str = DEFAULT_WINDOW, *, assume_stored_window_ok: bool = False
    ) -> None:
        self.window = parse_window(window)
        self.assume_stored_window_ok = assume_stored_window_ok

    def __call__(self, data: Volume | np.ndarray) -> np.ndarray:
        if isinstance(data, Volume):
            return window_volume(
                data, self.window, assume_stored_window_ok=self.assume_stored_window_ok
            )
        return apply_window(data, self.window)

    def __repr__(self) -> str:
        return f"Windowing(level={self.window.level:g}, width={self.window.width:g})"
