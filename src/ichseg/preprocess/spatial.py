"""Invertible spatial helpers for network inputs (pad, crop, resize) that remember their inverse.

Every operation works on the **trailing** axes named by its shape argument (``(Z, Y, X)`` for a
network volume; leading channel/batch axes pass through untouched) and returns
``(out, record)``. ``record.undo(pred)`` maps a prediction made on ``out`` back onto the input grid:

* pad / crop: bit-exact (cropped-away regions come back as ``fill``, 0 by default);
* resize: shape-exact (nearest for labels, linear for probabilities by default).

``record.apply(other)`` replays the same operation on another array of the input shape (e.g. the
label that goes with an image). :class:`SpatialChain` strings records together::

    chain = SpatialChain()
    x = chain.add(resize(image_zyx, (None, 256, 256), "area"))
    x = chain.add(pad_to_multiple(x, (16, 16, 16)))
    probs = chain.undo(net(x), order=1)  # back on image_zyx's grid
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from scipy import ndimage

from ichseg.errors import EmptyMaskError, GeometryError

Interp = Literal["nearest", "linear", "cubic", "area"]
_ORDERS: dict[str, int] = {"nearest": 0, "linear": 1, "cubic": 3}
PadMode = Literal["constant", "edge", "reflect", "symmetric", "minimum"]


@runtime_checkable
class SpatialRecord(Protocol):
    """What every spatial operation records: its trailing input/output shapes and its inverse."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    def undo(self, array: np.ndarray, *, order: int | Interp | None = None) -> np.ndarray:
        """Map ``array`` (trailing shape ``out_shape``) back to ``in_shape``."""
        ...

    def apply(self, array: np.ndarray, *, order: int | Interp | None = None) -> np.ndarray:
        """Replay the operation on another array with trailing shape ``in_shape``."""
        ...


def _trailing(array: np.ndarray, shape: tuple[int, ...], what: str) -> None:
    n = len(shape)
    if array.ndim < n or tuple(array.shape[array.ndim - n :]) != tuple(shape):
        raise GeometryError(
            f"{what}: expected an array whose last {n} axes have shape {tuple(shape)}, "
            f"got shape {tuple(array.shape)}"
        )


def _spec(value: int | Sequence[int | None], ndim: int, name: str) -> tuple[int | None, ...]:
    if isinstance(value, int | np.integer):
        return (int(value),) * ndim
    spec = tuple(None if v is None else int(v) for v in value)
    if not 1 <= len(spec) <= ndim:
        raise GeometryError(f"{name} has {len(spec)} entries but the array is {ndim}D")
    return spec


# --------------------------------------------------------------------------------------------
# pad / crop
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PadCropRecord:
    """Signed per-axis margins: ``before[a] > 0`` pads, ``< 0`` crops (same for ``after``)."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    before: tuple[int, ...]
    after: tuple[int, ...]
    mode: str = "constant"
    value: float = 0.0

    def _run(
        self,
        array: np.ndarray,
        before: tuple[int, ...],
        after: tuple[int, ...],
        mode: str,
        value: float,
    ) -> np.ndarray:
        lead = array.ndim - len(before)
        crop = [slice(None)] * lead + [
            slice(max(-b, 0), array.shape[lead + a] - max(-e, 0))
            for a, (b, e) in enumerate(zip(before, after, strict=True))
        ]
        out = array[tuple(crop)]
        pads = [(0, 0)] * lead + [
            (max(b, 0), max(e, 0)) for b, e in zip(before, after, strict=True)
        ]
        if any(p != (0, 0) for p in pads):
            if mode == "constant":
                out = np.pad(out, pads, mode="constant", constant_values=value)
            else:
                out = np.pad(out, pads, mode=mode)  # type: ignore[call-overload]
        return np.ascontiguousarray(out)

    def apply(self, array: np.ndarray, *, order: int | Interp | None = None) -> np.ndarray:
        array = np.asarray(array)
        _trailing(array, self.in_shape, "pad/crop apply")
        return self._run(array, self.before, self.after, self.mode, self.value)

    def undo(
        self, array: np.ndarray, *, order: int | Interp | None = None, fill: float = 0.0
    ) -> np.ndarray:
        """Exact inverse: remove what was padded, put ``fill`` where content was cropped away."""
        array = np.asarray(array)
        _trailing(array, self.out_shape, "pad/crop undo")
        neg = tuple(-b for b in self.before), tuple(-e for e in self.after)
        return self._run(array, neg[0], neg[1], "constant", fill)


def _padcrop(
    array: np.ndarray,
    before: tuple[int, ...],
    after: tuple[int, ...],
    mode: str,
    value: float,
) -> tuple[np.ndarray, PadCropRecord]:
    n = len(before)
    in_shape = tuple(int(s) for s in array.shape[array.ndim - n :])
    out_shape = tuple(s + b + e for s, b, e in zip(in_shape, before, after, strict=True))
    if min(out_shape) < 1:
        raise GeometryError(f"pad/crop of shape {in_shape} would leave an empty axis: {out_shape}")
    rec = PadCropRecord(in_shape, out_shape, tuple(before), tuple(after), mode, float(value))
    return rec.apply(array), rec


def pad_to_multiple(
    array: np.ndarray,
    multiples: int | Sequence[int],
    mode: PadMode = "constant",
    *,
    value: float = 0.0,
    where: Literal["end", "center"] = "end",
) -> tuple[np.ndarray, PadCropRecord]:
    """Pad the trailing axes so each size is a multiple of ``multiples`` (an int applies to all)."""
    array = np.asarray(array)
    spec = _spec(multiples, array.ndim, "multiples")
    if any(m is None or m < 1 for m in spec):
        raise GeometryError(f"multiples must be positive integers, got {multiples!r}")
    lead = array.ndim - len(spec)
    before, after = [], []
    for a, m in enumerate(spec):
        size = array.shape[lead + a]
        total = (-size) % int(m)  # type: ignore[arg-type]
        b = total // 2 if where == "center" else 0
        before.append(b)
        after.append(total - b)
    return _padcrop(array, tuple(before), tuple(after), mode, value)


def center_pad_or_crop(
    array: np.ndarray,
    target_shape: Sequence[int | None],
    mode: PadMode = "constant",
    *,
    value: float = 0.0,
) -> tuple[np.ndarray, PadCropRecord]:
    """Centre-pad or centre-crop the trailing axes to ``target_shape`` (``None`` keeps an axis)."""
    array = np.asarray(array)
    spec = _spec(target_shape, array.ndim, "target_shape")
    lead = array.ndim - len(spec)
    before, after = [], []
    for a, t in enumerate(spec):
        size = array.shape[lead + a]
        diff = 0 if t is None else t - size
        if t is not None and t < 1:
            raise GeometryError(f"target_shape entries must be >= 1, got {tuple(target_shape)}")
        if diff >= 0:
            b, e = diff // 2, diff - diff // 2
        else:
            c = -diff
            b, e = -(c // 2), -(c - c // 2)
        before.append(b)
        after.append(e)
    return _padcrop(array, tuple(before), tuple(after), mode, value)


def crop_to_box(
    array: np.ndarray,
    box: Sequence[slice | tuple[int, int]],
    mode: PadMode = "constant",
    *,
    value: float = 0.0,
) -> tuple[np.ndarray, PadCropRecord]:
    """Crop the trailing axes to ``box`` (slices or ``(start, stop)``, step 1).

    A box may reach outside the array (negative start, stop past the end): the missing part is
    padded with ``mode``/``value``, so the output always has the box's shape.
    """
    array = np.asarray(array)
    n = len(box)
    if not 1 <= n <= array.ndim:
        raise GeometryError(f"box has {n} axes but the array is {array.ndim}D")
    lead = array.ndim - n
    before, after = [], []
    for a, item in enumerate(box):
        size = array.shape[lead + a]
        if isinstance(item, slice):
            if item.step not in (None, 1):
                raise GeometryError(f"box slices must have step 1, got {item}")
            start = 0 if item.start is None else int(item.start)
            stop = size if item.stop is None else int(item.stop)
        else:
            start, stop = (int(v) for v in item)
        if stop <= start:
            raise GeometryError(f"empty box on axis {a}: start {start}, stop {stop}")
        before.append(-start)
        after.append(stop - size)
    return _padcrop(array, tuple(before), tuple(after), mode, value)


def bounding_box(mask: np.ndarray, margin: int | Sequence[int] = 0) -> tuple[slice, ...]:
    """Tight box (one slice per axis) around the non-zero voxels, grown by ``margin``.

    The box is not clipped to the array, so pair it with :func:`crop_to_box`. Raises
    :class:`EmptyMaskError` when the mask is empty.
    """
    m = np.asarray(mask)
    nz = np.nonzero(m)
    if len(nz[0]) == 0:
        raise EmptyMaskError("cannot take the bounding box of an empty mask")
    margins = _spec(margin, m.ndim, "margin")
    if len(margins) != m.ndim:
        raise GeometryError(f"margin needs {m.ndim} entries, got {len(margins)}")
    return tuple(
        slice(int(idx.min()) - int(g or 0), int(idx.max()) + 1 + int(g or 0))
        for idx, g in zip(nz, margins, strict=True)
    )


# --------------------------------------------------------------------------------------------
# resize
# --------------------------------------------------------------------------------------------
def _as_order(order: int | str) -> int | str:
    if isinstance(order, str):
        if order == "area":
            return "area"
        if order not in _ORDERS:
            raise GeometryError(
                f"unknown interpolation {order!r}: use nearest, linear, cubic, area"
            )
        return _ORDERS[order]
    if int(order) not in (0, 1, 2, 3, 4, 5):
        raise GeometryError(f"spline order must be 0..5, got {order}")
    return int(order)


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix averaging each output cell over the input cells it overlaps."""
    edges = np.arange(n_out + 1, dtype=np.float64) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    cells = np.arange(n_in, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(hi, cells + 1) - np.maximum(lo, cells), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def _separable_linear(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Linear resize, one axis at a time (same sampling as the ``affine_transform`` path:
    input index ``(o + 0.5) * n_in / n_out - 0.5``, edges repeated), several times faster."""
    lead = array.ndim - len(shape)
    out = np.asarray(array, dtype=np.float32)
    for a, n_out in enumerate(shape):
        ax = lead + a
        n_in = out.shape[ax]
        if n_in == n_out:
            continue
        src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
        i0 = np.floor(src).astype(np.intp)
        i1 = np.minimum(i0 + 1, n_in - 1)
        w = (
            (src - i0)
            .astype(np.float32)
            .reshape([n_out if d == ax else 1 for d in range(out.ndim)])
        )
        lo = np.take(out, i0, axis=ax)
        hi = np.take(out, i1, axis=ax)
        hi -= lo
        hi *= w
        lo += hi
        out = lo
    return np.ascontiguousarray(out, dtype=np.float32)


def _resize_array(array: np.ndarray, shape: tuple[int, ...], order: int | str) -> np.ndarray:
    lead = array.ndim - len(shape)
    in_sp = array.shape[lead:]
    if tuple(in_sp) == tuple(shape):
        return array.copy() if order == 0 else array.astype(np.float32)
    if order == "area":
        out = np.asarray(array, dtype=np.float32)
        for a, (n_in, n_out) in enumerate(zip(in_sp, shape, strict=True)):
            if n_in == n_out:
                continue
            w = _area_weights(n_in, n_out).astype(np.float32)
            out = np.moveaxis(
                np.tensordot(w, np.moveaxis(out, lead + a, 0), axes=(1, 0)), 0, lead + a
            )
        return np.ascontiguousarray(out, dtype=np.float32)
    if order == 1:
        return _separable_linear(array, shape)
    # voxel-centre aligned sampling: input index = (o + 0.5) * n_in / n_out - 0.5
    scale = np.ones(array.ndim)
    offset = np.zeros(array.ndim)
    for a, (n_in, n_out) in enumerate(zip(in_sp, shape, strict=True)):
        s = n_in / n_out
        scale[lead + a] = s
        offset[lead + a] = 0.5 * s - 0.5
    out_shape = tuple(array.shape[:lead]) + tuple(shape)
    src = array if order == 0 else np.asarray(array, dtype=np.float32)
    return ndimage.affine_transform(
        src, scale, offset=offset, output_shape=out_shape, order=int(order), mode="nearest"
    )


@dataclass(frozen=True)
class ResizeRecord:
    """A resize of the trailing axes from ``in_shape`` to ``out_shape``."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    order: int | str

    @property
    def default_undo_order(self) -> int:
        """Nearest when the forward pass was nearest (labels), otherwise linear."""
        return 0 if self.order == 0 else 1

    def apply(self, array: np.ndarray, *, order: int | Interp | None = None) -> np.ndarray:
        array = np.asarray(array)
        _trailing(array, self.in_shape, "resize apply")
        return _resize_array(
            array, self.out_shape, self.order if order is None else _as_order(order)
        )

    def undo(self, array: np.ndarray, *, order: int | Interp | None = None) -> np.ndarray:
        """Back to ``in_shape`` (nearest for label-resized inputs, linear otherwise)."""
        array = np.asarray(array)
        _trailing(array, self.out_shape, "resize undo")
        o = self.default_undo_order if order is None else _as_order(order)
        return _resize_array(array, self.in_shape, o)


def resize(
    array: np.ndarray,
    target_shape: Sequence[int | None],
    order: int | Interp = "linear",
) -> tuple[np.ndarray, ResizeRecord]:
    """Resize the trailing axes to ``target_shape`` (``None`` keeps an axis).

    ``order``: ``"nearest"`` (labels; dtype kept), ``"linear"``, ``"cubic"`` or ``"area"``
    (exact area averaging, best for image downsampling such as 512 -> 256 in-plane); non-nearest
    results are float32. Sampling is voxel-centre aligned (the grid's outer edges map onto each other).
    """
    array = np.asarray(array)
    spec = _spec(target_shape, array.ndim, "target_shape")
    lead = array.ndim - len(spec)
    in_shape = tuple(int(s) for s in array.shape[lead:])
    out_shape = tuple(s if t is None else int(t) for s, t in zip(in_shape, spec, strict=True))
    if min(out_shape) < 1:
        raise GeometryError(f"target_shape entries must be >= 1, got {tuple(target_shape)}")
    rec = ResizeRecord(in_shape, out_shape, _as_order(order))
    return rec.apply(array), rec


# --------------------------------------------------------------------------------------------
# chains
# --------------------------------------------------------------------------------------------
@dataclass
class SpatialChain:
    """An ordered list of records; :meth:`undo` runs their inverses last-to-first."""

    records: list[SpatialRecord] = field(default_factory=list)

    def add(self, result: tuple[np.ndarray, SpatialRecord]) -> np.ndarray:
        """Record the ``(out, record)`` pair an operation returned and pass ``out`` through."""
        out, rec = result
        if self.records and tuple(self.records[-1].out_shape) != tuple(rec.in_shape):
            raise GeometryError(
                f"chain break: previous output {self.records[-1].out_shape} is not the next "
                f"input {rec.in_shape}"
            )
        self.records.append(rec)
        return out

    @property
    def in_shape(self) -> tuple[int, ...] | None:
        return self.records[0].in_shape if self.records else None

    @property
    def out_shape(self) -> tuple[int, ...] | None:
        return self.records[-1].out_shape if self.records else None

    def apply(self, array: np.ndarray, *, order: int | Interp | None = None) -> np.ndarray:
        """Replay every operation on another array (``order`` overrides resize interpolation)."""
        out = np.asarray(array)
        for rec in self.records:
            out = rec.apply(out, order=order)
        return out

    def undo(self, array: np.ndarray, *, order: int | Interp | None = None) -> np.ndarray:
        """Map a prediction on the chain's output grid back to its input grid."""
        out = np.asarray(array)
        for rec in reversed(self.records):
            out = rec.undo(out, order=order)
        return out

    def __len__(self) -> int:
        return len(self.records)
