"""User prompts (clicks, scribbles and boxes) in voxel indices of a ``(Z, Y, X)`` grid.

Conventions
-----------
* Prompts live on one axial slice ``z`` (an integer slice index) of the network layout
  ``(Z, Y, X) = Volume.zyx()``. In-plane coordinates ``(y, x)`` are **continuous voxel indices**:
  pixel centres sit at integers, a pixel covers ``[i - 0.5, i + 0.5)``. Hint rasterization rounds
  them to the nearest pixel.
* ``Volume.affine`` maps ``(i, j, k) = (x, y, z)`` to RAS millimetres, so a prompt point
  ``(z, y, x)`` is sent through the affine as ``(x, y, z)``; :class:`GridRef` does that swap.
* Everything is a frozen dataclass with ``to_dict``/``from_dict`` producing plain JSON types.
  Malformed prompts raise :class:`~ichseg.errors.PromptError` at construction (NaN, empty
  scribble, wrong types); :func:`validate` additionally checks bounds against a grid.
* 2D prompts (:class:`Click2D`, :class:`Scribble2D`) carry no slice index; they are what the
  scribble robot and the point sampler produce for one slice, and ``on_slice(z)`` lifts them.
* A :class:`Box` is an axis-aligned rectangle on slice ``z`` meaning "the hemorrhage on this
  slice lies inside". Its corners ``(y0, x0)``, ``(y1, x1)`` are continuous coordinates of the
  box's **outer edges**: a pixel is inside when its centre lies in ``[y0, y1] x [x0, x1]``, so
  the tight box of pixels ``ymin..ymax`` is ``y0 = ymin - 0.5``, ``y1 = ymax + 0.5``. A box marks
  no pixel as hemorrhage (``positive`` is always ``False``); engines receive it as background
  hints on a ring ``ring_vox`` pixels wide just outside it (:mod:`ichseg.interaction.hints`), so
  it is given together with a positive click or scribble.

File format
-----------
A prompt file (``ichseg segment --prompts``) is a :class:`PromptSet` as JSON, documented for
users in ``docs/prompts.md`` and as a JSON Schema in ``prompts.schema.json`` next to this module
(:func:`prompt_schema`). Clicks and scribbles share one point notation: a click is
``{"type": "click", "z": 14, "point": [y, x], "positive": true}``, a scribble
``{"type": "scribble", "z": 14, "points": [[y, x], ...], "positive": true}``, a box
``{"type": "box", "z": 14, "corners": [[y0, x0], [y1, x1]]}``. Version-1 files
wrote clicks as ``"y": .., "x": ..``; they are still read. Unknown fields are refused (a typo
must not be silently ignored); errors name the place, e.g. ``rounds[0].prompts[1]``.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

import nibabel as nib
import numpy as np

from ichseg.errors import GeometryError, InputFileError, PromptError
from ichseg.io.volume import Volume, validate_affine

PROMPT_FORMAT_VERSION = 2  #: version written; 2 = clicks as ``"point": [y, x]``
SUPPORTED_PROMPT_VERSIONS = (1, 2)  #: versions read (1: clicks as ``"y"``/``"x"`` fields)
PROMPT_FILE_FORMAT = "ichseg-prompts"  #: the ``"format"`` value of a prompt file
SCHEMA_RESOURCE = "prompts.schema.json"  #: JSON Schema of a prompt file (package data)

#: Fields each JSON object may hold (anything else is refused as a probable typo).
CLICK_FIELDS = frozenset({"type", "z", "point", "positive", "radius_vox"})
LEGACY_CLICK_FIELDS = frozenset({"type", "z", "y", "x", "positive", "radius_vox"})
SCRIBBLE_FIELDS = frozenset({"type", "z", "points", "positive", "width_vox"})
BOX_FIELDS = frozenset({"type", "z", "corners", "ring_vox"})
ROUND_FIELDS = frozenset({"index", "prompts", "info"})
PROMPT_SET_FIELDS = frozenset({"format", "version", "grid", "rounds"})
GRID_FIELDS = frozenset({"shape_zyx", "affine", "axcodes"})
_IN_PLANE_TOL = 0.5  # continuous coordinates may reach half a pixel beyond the outer centres


# --- scalar checks -----------------------------------------------------------------------------
def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool | np.bool_):
        raise PromptError(f"{what} must be an integer slice index, got a boolean")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        if math.isfinite(f) and f == round(f):
            return round(f)
        raise PromptError(f"{what} must be an integer slice index, got {value!r}")
    raise PromptError(f"{what} must be an integer, got {type(value).__name__}")


def _as_float(value: Any, what: str) -> float:
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise PromptError(f"{what} must be a real number, got {type(value).__name__}")
    f = float(value)
    if not math.isfinite(f):
        raise PromptError(f"{what} must be finite, got {f}")
    return f


def _as_bool(value: Any, what: str) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise PromptError(f"{what} must be a boolean (True = hemorrhage, False = background)")


def _as_points(points: Any, what: str = "scribble points") -> tuple[tuple[float, float], ...]:
    if isinstance(points, np.ndarray):
        if points.ndim != 2 or points.shape[1] != 2:
            raise PromptError(f"{what} must have shape (N, 2) as (y, x), got {points.shape}")
        points = points.tolist()
    if isinstance(points, str | bytes) or not isinstance(points, Iterable):
        raise PromptError(f"{what} must be a sequence of (y, x) pairs")
    out = []
    for n, p in enumerate(points):
        if isinstance(p, str | bytes) or not isinstance(p, Sequence | np.ndarray) or len(p) != 2:
            raise PromptError(f"{what}[{n}] must be a (y, x) pair, got {p!r}")
        out.append((_as_float(p[0], f"{what}[{n}].y"), _as_float(p[1], f"{what}[{n}].x")))
    if not out:
        raise PromptError(f"{what}: a scribble needs at least one point")
    return tuple(out)


def _check_size(value: Any, what: str, allow_zero: bool) -> float:
    f = _as_float(value, what)
    if f < 0 or (f == 0 and not allow_zero):
        raise PromptError(f"{what} must be {'>= 0' if allow_zero else '> 0'}, got {f}")
    return f


def _check_fields(d: Mapping[str, Any], allowed: frozenset[str], what: str) -> None:
    unknown = sorted(str(k) for k in d if k not in allowed)
    if unknown:
        raise PromptError(f"{what} has unknown field(s) {unknown}; allowed: {sorted(allowed)}")


def _located(where: str, exc: PromptError) -> PromptError:
    """``exc`` with ``where`` (e.g. ``rounds[0]``) in front of its message."""
    msg = str(exc)
    if msg.startswith("prompts["):  # nested location: rounds[0].prompts[2]: ...
        return PromptError(f"{where}.{msg}")
    return PromptError(f"{where}: {msg}")


def _point_pair(value: Any, what: str) -> tuple[float, float]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
        raise PromptError(f"{what} must be a [y, x] pair, got {value!r}")
    return _as_float(value[0], f"{what}[0] (y)"), _as_float(value[1], f"{what}[1] (x)")


# --- prompt types --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Click:
    """A click at ``(z, y, x)``; rasterized as a disc of ``radius_vox`` pixels on slice ``z``."""

    z: int
    y: float
    x: float
    positive: bool
    radius_vox: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "z", _as_int(self.z, "click z"))
        object.__setattr__(self, "y", _as_float(self.y, "click y"))
        object.__setattr__(self, "x", _as_float(self.x, "click x"))
        object.__setattr__(self, "positive", _as_bool(self.positive, "click positive"))
        object.__setattr__(
            self, "radius_vox", _check_size(self.radius_vox, "click radius_vox", True)
        )

    def points_zyx(self) -> np.ndarray:
        """The click as a ``(1, 3)`` array of ``(z, y, x)``."""
        return np.array([[self.z, self.y, self.x]], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON form; the point is ``[y, x]`` as in a scribble's ``points``."""
        return {
            "type": "click",
            "z": self.z,
            "point": [self.y, self.x],
            "positive": self.positive,
            "radius_vox": self.radius_vox,
        }

    def in_plane(self) -> Click2D:
        """The click without its slice index."""
        return Click2D(self.y, self.x, self.positive, self.radius_vox)


@dataclass(frozen=True)
class Scribble:
    """A polyline of ``(y, x)`` points on slice ``z``, drawn ``width_vox`` pixels wide.

    A single point is allowed (a "dot" stroke, e.g. for a tiny error region).
    """

    z: int
    points: tuple[tuple[float, float], ...]
    positive: bool
    width_vox: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "z", _as_int(self.z, "scribble z"))
        object.__setattr__(self, "points", _as_points(self.points))
        object.__setattr__(self, "positive", _as_bool(self.positive, "scribble positive"))
        object.__setattr__(self, "width_vox", _check_size(self.width_vox, "scribble width", False))

    def points_zyx(self) -> np.ndarray:
        """The polyline as an ``(N, 3)`` array of ``(z, y, x)``."""
        yx = np.asarray(self.points, dtype=np.float64)
        return np.column_stack([np.full(len(yx), float(self.z)), yx])

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "scribble",
            "z": self.z,
            "points": [[y, x] for y, x in self.points],
            "positive": self.positive,
            "width_vox": self.width_vox,
        }

    def in_plane(self) -> Scribble2D:
        """The scribble without its slice index."""
        return Scribble2D(self.points, self.positive, self.width_vox)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box on slice ``z``: "the hemorrhage on this slice lies inside".

    ``(y0, x0)`` and ``(y1, x1)`` are the box's outer edges in continuous voxel indices
    (``y0 < y1``, ``x0 < x1``); a pixel is inside when its centre lies in ``[y0, y1] x [x0, x1]``
    and at least one pixel centre must be. ``ring_vox`` (an integer >= 1, default 2) is the width
    of the background ring rasterised just outside the box (see
    :func:`ichseg.interaction.hints.draw_box_ring`). A box marks nothing as hemorrhage:
    :attr:`positive` is ``False``.
    """

    z: int
    y0: float
    x0: float
    y1: float
    x1: float
    ring_vox: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "z", _as_int(self.z, "box z"))
        for name in ("y0", "x0", "y1", "x1"):
            object.__setattr__(self, name, _as_float(getattr(self, name), f"box {name}"))
        if not self.y0 < self.y1 or not self.x0 < self.x1:
            raise PromptError(
                f"box corners must satisfy y0 < y1 and x0 < x1, got (y0={self.y0:g}, "
                f"x0={self.x0:g}), (y1={self.y1:g}, x1={self.x1:g})"
            )
        if math.ceil(self.y0) > math.floor(self.y1) or math.ceil(self.x0) > math.floor(self.x1):
            raise PromptError(
                f"box (y {self.y0:g}..{self.y1:g}, x {self.x0:g}..{self.x1:g}) contains no pixel "
                "centre (corners are the box's outer edges, e.g. y0 = ymin - 0.5)"
            )
        ring = self.ring_vox
        if isinstance(ring, bool | np.bool_) or not isinstance(ring, numbers.Real):
            raise PromptError(f"box ring_vox must be an integer >= 1, got {ring!r}")
        if not (math.isfinite(float(ring)) and float(ring) == round(float(ring)) and ring >= 1):
            raise PromptError(f"box ring_vox must be an integer >= 1, got {ring!r}")
        object.__setattr__(self, "ring_vox", round(float(ring)))

    @property
    def positive(self) -> bool:
        """Always ``False``: a box contributes background hints only (the ring outside it)."""
        return False

    def pixel_ranges(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """Inclusive ``((row_lo, row_hi), (col_lo, col_hi))`` of the pixels inside the box
        (not clipped to any slice)."""
        return (
            (math.ceil(self.y0), math.floor(self.y1)),
            (math.ceil(self.x0), math.floor(self.x1)),
        )

    def corners_yx(self) -> tuple[tuple[float, float], ...]:
        """The four corners ``(y, x)`` in the order (y0, x0), (y0, x1), (y1, x1), (y1, x0)."""
        return ((self.y0, self.x0), (self.y0, self.x1), (self.y1, self.x1), (self.y1, self.x0))

    def points_zyx(self) -> np.ndarray:
        """The four corners as a ``(4, 3)`` array of ``(z, y, x)``."""
        yx = np.asarray(self.corners_yx(), dtype=np.float64)
        return np.column_stack([np.full(4, float(self.z)), yx])

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "box",
            "z": self.z,
            "corners": [[self.y0, self.x0], [self.y1, self.x1]],
            "ring_vox": self.ring_vox,
        }

    @classmethod
    def around(cls, mask2d: np.ndarray, z: int, ring_vox: int = 2) -> Box:
        """The tight box of the ``True`` pixels of a 2D mask (:class:`PromptError` if none)."""
        m = np.asarray(mask2d).astype(bool)
        if m.ndim != 2:
            raise PromptError(f"Box.around needs a 2D mask, got shape {m.shape}")
        ys, xs = np.nonzero(m)
        if ys.size == 0:
            raise PromptError("Box.around: the mask is empty")
        return cls(
            z,
            float(ys.min()) - 0.5,
            float(xs.min()) - 0.5,
            float(ys.max()) + 0.5,
            float(xs.max()) + 0.5,
            ring_vox,
        )


@dataclass(frozen=True)
class Click2D:
    """A click on an unspecified slice (what 2D samplers return); see :class:`Click`."""

    y: float
    x: float
    positive: bool
    radius_vox: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "y", _as_float(self.y, "click y"))
        object.__setattr__(self, "x", _as_float(self.x, "click x"))
        object.__setattr__(self, "positive", _as_bool(self.positive, "click positive"))
        object.__setattr__(
            self, "radius_vox", _check_size(self.radius_vox, "click radius_vox", True)
        )

    def on_slice(self, z: int) -> Click:
        return Click(z, self.y, self.x, self.positive, self.radius_vox)


@dataclass(frozen=True)
class Scribble2D:
    """A scribble on an unspecified slice (what the scribble robot returns); see :class:`Scribble`."""

    points: tuple[tuple[float, float], ...]
    positive: bool
    width_vox: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", _as_points(self.points))
        object.__setattr__(self, "positive", _as_bool(self.positive, "scribble positive"))
        object.__setattr__(self, "width_vox", _check_size(self.width_vox, "scribble width", False))

    def on_slice(self, z: int) -> Scribble:
        return Scribble(z, self.points, self.positive, self.width_vox)


Prompt: TypeAlias = Click | Scribble | Box
Prompt2D: TypeAlias = Click2D | Scribble2D


def _corners(value: Any) -> tuple[float, float, float, float]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
        raise PromptError(f"box corners must be [[y0, x0], [y1, x1]], got {value!r}")
    (y0, x0), (y1, x1) = (_point_pair(c, f"box corners[{n}]") for n, c in enumerate(value))
    return y0, x0, y1, x1


def prompt_from_dict(d: Mapping[str, Any]) -> Prompt:
    """Inverse of ``Click.to_dict`` / ``Scribble.to_dict`` / ``Box.to_dict``; raises
    :class:`PromptError`.

    Clicks are read in both notations: ``"point": [y, x]`` (written since prompt format 2) and
    the older separate ``"y"``/``"x"`` fields. Unknown fields are refused.
    """
    if not isinstance(d, Mapping):
        raise PromptError(f"a prompt must be a JSON object, got {type(d).__name__}")
    kind = d.get("type")
    try:
        if kind == "click":
            legacy = "point" not in d and ("y" in d or "x" in d)
            if "point" in d and ("y" in d or "x" in d):
                raise PromptError('click: give "point": [y, x] or the older "y"/"x", not both')
            _check_fields(d, LEGACY_CLICK_FIELDS if legacy else CLICK_FIELDS, "click")
            y, x = (d["y"], d["x"]) if legacy else _point_pair(d["point"], "click point")
            return Click(d["z"], y, x, d["positive"], d.get("radius_vox", 2.0))
        if kind == "scribble":
            _check_fields(d, SCRIBBLE_FIELDS, "scribble")
            return Scribble(d["z"], d["points"], d["positive"], d.get("width_vox", 1.0))
        if kind == "box":
            _check_fields(d, BOX_FIELDS, "box")
            return Box(d["z"], *_corners(d["corners"]), d.get("ring_vox", 2))
    except KeyError as exc:
        raise PromptError(f"{kind} prompt is missing the field {exc.args[0]!r}") from None
    if kind is None:
        raise PromptError('a prompt needs a "type" field ("click", "scribble" or "box")')
    raise PromptError(f"unknown prompt type {kind!r} (expected 'click', 'scribble' or 'box')")


def _check_box_in_plane(box: Box, ny: int, nx: int) -> None:
    lo = -_IN_PLANE_TOL
    if not (lo <= box.y0 and box.y1 <= ny - 1 + _IN_PLANE_TOL) or not (
        lo <= box.x0 and box.x1 <= nx - 1 + _IN_PLANE_TOL
    ):
        raise PromptError(
            f"box (y {box.y0:g}..{box.y1:g}, x {box.x0:g}..{box.x1:g}) is not inside the "
            f"{ny}x{nx} slice (edges may reach -0.5 and size - 0.5)"
        )


def validate(prompt: Prompt | Prompt2D, shape: Sequence[int] | GridRef) -> None:
    """Raise :class:`PromptError` unless ``prompt`` is well formed and lies inside ``shape``.

    ``shape`` is ``(Z, Y, X)`` (or a :class:`GridRef`) for 3D prompts and ``(Y, X)`` for 2D
    prompts. In-plane coordinates may lie up to half a pixel outside the outer pixel centres
    (a box's edges up to ``-0.5`` and ``size - 0.5``: the edges of the outer pixels).
    """
    shape_t = shape.shape_zyx if isinstance(shape, GridRef) else tuple(int(s) for s in shape)
    if not isinstance(prompt, Click | Scribble | Box | Click2D | Scribble2D):
        raise PromptError(f"not a prompt: {type(prompt).__name__}")
    # Re-run the intrinsic checks (cheap) in case the object was built around __post_init__.
    type(prompt).__post_init__(prompt)
    is3d = isinstance(prompt, Click | Scribble | Box)
    if len(shape_t) != (3 if is3d else 2) or min(shape_t) < 1:
        raise PromptError(
            f"{type(prompt).__name__} needs a {'(Z, Y, X)' if is3d else '(Y, X)'} shape, "
            f"got {shape_t}"
        )
    ny, nx = shape_t[-2], shape_t[-1]
    if is3d and not 0 <= prompt.z < shape_t[0]:
        raise PromptError(f"prompt slice z={prompt.z} is outside the volume (0..{shape_t[0] - 1})")
    if isinstance(prompt, Box):
        _check_box_in_plane(prompt, ny, nx)
        return
    pts = [(prompt.y, prompt.x)] if isinstance(prompt, Click | Click2D) else list(prompt.points)
    for y, x in pts:
        if not (-_IN_PLANE_TOL <= y < ny - 1 + _IN_PLANE_TOL) or not (
            -_IN_PLANE_TOL <= x < nx - 1 + _IN_PLANE_TOL
        ):
            raise PromptError(f"prompt point (y={y:g}, x={x:g}) is outside the {ny}x{nx} slice")


def validate_in_plane(prompt: Prompt, shape_yx: Sequence[int]) -> None:
    """:func:`validate` of a 3D prompt's in-plane part against a ``(Y, X)`` slice shape (its
    slice index is not checked)."""
    if isinstance(prompt, Box):
        type(prompt).__post_init__(prompt)
        ny, nx = (int(s) for s in shape_yx)
        _check_box_in_plane(prompt, ny, nx)
    elif isinstance(prompt, Click | Scribble):
        validate(prompt.in_plane(), shape_yx)
    else:
        raise PromptError(f"not a 3D prompt: {type(prompt).__name__}")


# --- grids ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GridRef:
    """The image grid prompts refer to: ``(Z, Y, X)`` shape plus the ``(i, j, k)``->RAS affine."""

    shape_zyx: tuple[int, int, int]
    affine: tuple[tuple[float, float, float, float], ...]
    axcodes: tuple[str, str, str] = ("", "", "")

    def __post_init__(self) -> None:
        try:
            shape = tuple(_as_int(s, "grid shape") for s in self.shape_zyx)
        except TypeError:
            raise PromptError(f"grid shape must be 3 integers, got {self.shape_zyx!r}") from None
        if len(shape) != 3 or min(shape) < 1:
            raise PromptError(f"grid shape must be 3 positive integers, got {self.shape_zyx!r}")
        a = validate_affine(np.asarray(self.affine, dtype=np.float64))
        codes = tuple(str(c) for c in nib.aff2axcodes(a))
        given = tuple(str(c) for c in self.axcodes)
        if given != ("", "", "") and given != codes:
            raise GeometryError(
                f"grid axcodes {''.join(given)} do not match its affine ({''.join(codes)})"
            )
        object.__setattr__(self, "shape_zyx", shape)
        object.__setattr__(self, "affine", tuple(tuple(float(v) for v in row) for row in a))
        object.__setattr__(self, "axcodes", codes)

    @classmethod
    def from_volume(cls, volume: Volume) -> GridRef:
        """The grid of ``volume.zyx()``."""
        i, j, k = volume.shape
        return cls((k, j, i), volume.affine)

    @classmethod
    def from_affine(cls, shape_zyx: Sequence[int], affine: np.ndarray) -> GridRef:
        return cls(tuple(shape_zyx), affine)  # type: ignore[arg-type]

    @property
    def affine_array(self) -> np.ndarray:
        return np.array(self.affine, dtype=np.float64)

    def zyx_to_ras(self, points_zyx: np.ndarray) -> np.ndarray:
        """Continuous ``(z, y, x)`` voxel indices ``(N, 3)`` -> RAS mm ``(N, 3)``."""
        zyx = np.atleast_2d(np.asarray(points_zyx, dtype=np.float64))
        ijk = zyx[:, ::-1]
        a = self.affine_array
        return ijk @ a[:3, :3].T + a[:3, 3]

    def ras_to_zyx(self, points_ras: np.ndarray) -> np.ndarray:
        """RAS mm ``(N, 3)`` -> continuous ``(z, y, x)`` voxel indices ``(N, 3)``."""
        ras = np.atleast_2d(np.asarray(points_ras, dtype=np.float64))
        inv = np.linalg.inv(self.affine_array)
        ijk = ras @ inv[:3, :3].T + inv[:3, 3]
        return ijk[:, ::-1]

    @property
    def inplane_spacing(self) -> float:
        """Mean in-plane voxel size in mm (used to express radii/widths in mm)."""
        a = self.affine_array
        sp = np.sqrt((a[:3, :3] ** 2).sum(axis=0))
        return float((sp[0] + sp[1]) / 2.0)

    def rescaled_inplane(self, factor: float | tuple[float, float]) -> GridRef:
        """The grid resampled in-plane by ``factor`` (new size / old size, per ``(y, x)``).

        Uses the pixel-centre (``align_corners=False``) convention of :func:`rescale_prompt`, so
        ``convert_prompt(p, g, g.rescaled_inplane(f))`` equals ``rescale_prompt(p, f)``.
        """
        fy, fx = _factor_pair(factor)
        z, y, x = self.shape_zyx
        new_shape = (z, max(1, round(y * fy)), max(1, round(x * fx)))
        # new index n = (old + 0.5) * f - 0.5  <=>  old = (n + 0.5) / f - 0.5 (per axis, ijk order)
        scale = np.diag([1.0 / fx, 1.0 / fy, 1.0, 1.0])
        scale[0, 3] = 0.5 / fx - 0.5
        scale[1, 3] = 0.5 / fy - 0.5
        return GridRef(new_shape, self.affine_array @ scale)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape_zyx": list(self.shape_zyx),
            "affine": [list(row) for row in self.affine],
            "axcodes": "".join(self.axcodes),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GridRef:
        if not isinstance(d, Mapping):
            raise PromptError("grid must be a JSON object")
        _check_fields(d, GRID_FIELDS, "grid")
        try:
            codes = d.get("axcodes", "")
            return cls(
                tuple(d["shape_zyx"]),  # type: ignore[arg-type]
                d["affine"],
                tuple(codes) if codes else ("", "", ""),  # type: ignore[arg-type]
            )
        except KeyError as exc:
            raise PromptError(f"grid is missing the field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise PromptError(
                f"grid must hold shape_zyx (3 integers) and affine (4x4 numbers): {exc}"
            ) from None


# --- rounds and sets ------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays and tuples inside ``value`` to plain JSON types."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


@dataclass(frozen=True)
class InteractionRound:
    """The prompts a user gave in one round, plus free-form JSON-able ``info``."""

    index: int
    prompts: tuple[Prompt, ...] = ()
    info: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", _as_int(self.index, "round index"))
        prompts = tuple(self.prompts)
        for p in prompts:
            if not isinstance(p, Click | Scribble | Box):
                raise PromptError(
                    f"a round holds Click/Scribble/Box prompts, got {type(p).__name__} "
                    "(use .on_slice(z) for 2D prompts)"
                )
        object.__setattr__(self, "prompts", prompts)
        object.__setattr__(self, "info", dict(_jsonable(dict(self.info))))

    def __iter__(self) -> Iterator[Prompt]:
        return iter(self.prompts)

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def slices(self) -> tuple[int, ...]:
        """Sorted slice indices touched in this round."""
        return tuple(sorted({p.z for p in self.prompts}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "prompts": [p.to_dict() for p in self.prompts],
            "info": _jsonable(dict(self.info)),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InteractionRound:
        if not isinstance(d, Mapping):
            raise PromptError("a round must be a JSON object")
        _check_fields(d, ROUND_FIELDS, "round")
        prompts = d.get("prompts", [])
        if not isinstance(prompts, list):
            raise PromptError("round 'prompts' must be a list")
        info = d.get("info", {})
        if not isinstance(info, Mapping):
            raise PromptError("round 'info' must be an object")
        parsed = []
        for n, p in enumerate(prompts):
            try:
                parsed.append(prompt_from_dict(p))
            except PromptError as exc:
                raise _located(f"prompts[{n}]", exc) from None
        return cls(d.get("index", 0), tuple(parsed), info)


@dataclass(frozen=True)
class PromptSet:
    """All rounds of prompts for one image, in voxel indices of ``grid`` (``None``: unknown)."""

    grid: GridRef | None = None
    rounds: tuple[InteractionRound, ...] = ()

    def __post_init__(self) -> None:
        rounds = tuple(self.rounds)
        for r in rounds:
            if not isinstance(r, InteractionRound):
                raise PromptError(f"rounds must be InteractionRound, got {type(r).__name__}")
            if self.grid is not None:
                for p in r.prompts:
                    validate(p, self.grid)
        object.__setattr__(self, "rounds", rounds)

    def add_round(
        self, prompts: Iterable[Prompt], info: Mapping[str, Any] | None = None
    ) -> PromptSet:
        """A new set with one more round (index = number of existing rounds)."""
        new = InteractionRound(len(self.rounds), tuple(prompts), info or {})
        return PromptSet(self.grid, (*self.rounds, new))

    def all_prompts(self) -> list[Prompt]:
        """Every prompt of every round, in order (for accumulating hint maps)."""
        return [p for r in self.rounds for p in r.prompts]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "ichseg-prompts",
            "version": PROMPT_FORMAT_VERSION,
            "grid": None if self.grid is None else self.grid.to_dict(),
            "rounds": [r.to_dict() for r in self.rounds],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PromptSet:
        if not isinstance(d, Mapping):
            raise PromptError("a prompt set must be a JSON object")
        _check_fields(d, PROMPT_SET_FIELDS, "prompt set")
        fmt = d.get("format", PROMPT_FILE_FORMAT)
        if fmt != PROMPT_FILE_FORMAT:
            raise PromptError(f"'format' must be {PROMPT_FILE_FORMAT!r}, got {fmt!r}")
        version = d.get("version", PROMPT_FORMAT_VERSION)
        if isinstance(version, bool) or version not in SUPPORTED_PROMPT_VERSIONS:
            raise PromptError(
                f"unsupported prompt file version {version!r} (this ichseg reads "
                f"{', '.join(map(str, SUPPORTED_PROMPT_VERSIONS))})"
            )
        grid = d.get("grid")
        rounds = d.get("rounds", [])
        if not isinstance(rounds, list):
            raise PromptError("'rounds' must be a list")
        parsed = []
        for n, r in enumerate(rounds):
            try:
                parsed.append(InteractionRound.from_dict(r))
            except PromptError as exc:
                raise _located(f"rounds[{n}]", exc) from None
        ref = None
        if grid is not None:
            try:
                ref = GridRef.from_dict(grid)
            except PromptError as exc:
                raise _located("grid", exc) from None
        for n, r in enumerate(parsed):
            for m, p in enumerate(r.prompts):
                if ref is not None:
                    try:
                        validate(p, ref)
                    except PromptError as exc:
                        raise _located(f"rounds[{n}].prompts[{m}]", exc) from None
        return cls(ref, tuple(parsed))

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> PromptSet:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PromptError(f"prompt JSON is malformed: {exc}") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> PromptSet:
        """Read a prompt file; errors name the file (:class:`PromptError`, :class:`InputFileError`)."""
        path = Path(path)
        if path.is_dir():
            raise InputFileError(f"{path}: is a folder, expected a prompt JSON file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputFileError(f"cannot read prompt file {path}: {exc}") from None
        try:
            return cls.from_json(text)
        except (PromptError, GeometryError) as exc:
            raise type(exc)(f"{path}: {exc} (format: docs/prompts.md)") from None


def prompt_schema() -> dict[str, Any]:
    """The JSON Schema of a prompt file (``prompts.schema.json``, shipped with the package)."""
    from importlib.resources import files

    text = files("ichseg.interaction").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    return json.loads(text)


# --- geometry helpers ------------------------------------------------------------------------------
def _factor_pair(factor: float | tuple[float, float]) -> tuple[float, float]:
    if isinstance(factor, tuple | list):
        if len(factor) != 2:
            raise PromptError(f"in-plane factor must be a number or a (y, x) pair, got {factor!r}")
        fy, fx = (_as_float(f, "in-plane factor") for f in factor)
    else:
        fy = fx = _as_float(factor, "in-plane factor")
    if fy <= 0 or fx <= 0:
        raise PromptError(f"in-plane factor must be > 0, got {factor!r}")
    return fy, fx


def rescale_prompt(prompt: Prompt, factor: float | tuple[float, float]) -> Prompt:
    """Map a prompt onto a grid resampled in-plane by ``factor`` (new size / old size).

    Pixel-centre convention (as ``torch.nn.functional.interpolate(align_corners=False)``):
    ``new = (old + 0.5) * factor - 0.5``. The slice index is unchanged; click radii and scribble
    widths are scaled by the mean factor (a width never drops below 1 pixel). A box's edges map
    the same way (pixel edges stay pixel edges); its ring width is scaled and rounded, >= 1.
    """
    fy, fx = _factor_pair(factor)
    f_mean = (fy + fx) / 2.0

    def m(y: float, x: float) -> tuple[float, float]:
        return (y + 0.5) * fy - 0.5, (x + 0.5) * fx - 0.5

    if isinstance(prompt, Click):
        y, x = m(prompt.y, prompt.x)
        return Click(prompt.z, y, x, prompt.positive, prompt.radius_vox * f_mean)
    if isinstance(prompt, Scribble):
        pts = tuple(m(y, x) for y, x in prompt.points)
        return Scribble(prompt.z, pts, prompt.positive, max(1.0, prompt.width_vox * f_mean))
    if isinstance(prompt, Box):
        y0, x0 = m(prompt.y0, prompt.x0)
        y1, x1 = m(prompt.y1, prompt.x1)
        return Box(prompt.z, y0, x0, y1, x1, max(1, round(prompt.ring_vox * f_mean)))
    raise PromptError(f"cannot rescale {type(prompt).__name__}")


@dataclass(frozen=True)
class WorldPrompt:
    """A prompt in RAS millimetres (independent of any voxel grid).

    A box is stored as its four corners (``positive`` is ``False``, ``size_mm`` the ring width).
    """

    kind: Literal["click", "scribble", "box"]
    points_ras: tuple[tuple[float, float, float], ...]
    positive: bool
    size_mm: float  #: click radius, scribble width or box ring width in mm

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "points_ras": [list(p) for p in self.points_ras],
            "positive": self.positive,
            "size_mm": self.size_mm,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WorldPrompt:
        try:
            kind = d["type"]
            if kind not in ("click", "scribble", "box"):
                raise PromptError(f"unknown prompt type {kind!r}")
            pts = tuple(
                (
                    _as_float(p[0], "point R"),
                    _as_float(p[1], "point A"),
                    _as_float(p[2], "point S"),
                )
                for p in d["points_ras"]
            )
            if not pts:
                raise PromptError("a world prompt needs at least one point")
            return cls(
                kind,
                pts,
                _as_bool(d["positive"], "positive"),
                _check_size(d["size_mm"], "size_mm", True),
            )
        except (KeyError, TypeError, IndexError) as exc:
            raise PromptError(f"malformed world prompt: {exc!r}") from None


def prompt_to_world(prompt: Prompt, grid: GridRef) -> WorldPrompt:
    """Express a voxel-index prompt in RAS mm using ``grid``'s affine."""
    validate(prompt, grid)
    ras = grid.zyx_to_ras(prompt.points_zyx())
    pts = tuple((float(a), float(b), float(c)) for a, b, c in ras)
    if isinstance(prompt, Click):
        return WorldPrompt("click", pts, prompt.positive, prompt.radius_vox * grid.inplane_spacing)
    if isinstance(prompt, Box):
        return WorldPrompt("box", pts, False, prompt.ring_vox * grid.inplane_spacing)
    return WorldPrompt("scribble", pts, prompt.positive, prompt.width_vox * grid.inplane_spacing)


def prompt_from_world(world: WorldPrompt, grid: GridRef, z_tol: float = 0.5) -> Prompt:
    """Express a RAS-mm prompt in voxel indices of ``grid``.

    All points must fall on one axial slice of ``grid`` (within ``z_tol`` slices of an integer
    index), otherwise :class:`PromptError` is raised. A box becomes the axis-aligned box around
    its mapped corners (exact when the two grids' in-plane axes are parallel, as between a scan
    and its canonical or resampled grid; the enclosing box otherwise).
    """
    zyx = grid.ras_to_zyx(np.asarray(world.points_ras, dtype=np.float64))
    z = np.rint(zyx[:, 0])
    if np.any(np.abs(zyx[:, 0] - z) > z_tol) or np.any(z != z[0]):
        raise PromptError(
            "prompt does not lie on a single axial slice of the target grid "
            f"(z indices {np.round(zyx[:, 0], 2).tolist()})"
        )
    sp = grid.inplane_spacing
    p: Prompt
    if world.kind == "click":
        p = Click(int(z[0]), zyx[0, 1], zyx[0, 2], world.positive, world.size_mm / sp)
    elif world.kind == "box":
        ys, xs = np.round(zyx[:, 1], 6), np.round(zyx[:, 2], 6)  # affine round-off
        ring = max(1, round(world.size_mm / sp))
        p = Box(int(z[0]), ys.min(), xs.min(), ys.max(), xs.max(), ring)
    else:
        pts = tuple((float(y), float(x)) for y, x in zyx[:, 1:])
        p = Scribble(int(z[0]), pts, world.positive, max(world.size_mm / sp, 1e-6))
    validate(p, grid)
    return p


def convert_prompt(prompt: Prompt, src: GridRef, dst: GridRef) -> Prompt:
    """Map a prompt from grid ``src`` to grid ``dst`` through world coordinates."""
    return prompt_from_world(prompt_to_world(prompt, src), dst)
