"""Hint maps: prompts rasterized into a 2-channel ``(2, Z, Y, X)`` float32 volume.

Channel order (fixed project-wide, the paper's order, *not* the authors' code order):
``HINT_POSITIVE = 0`` (hemorrhage) and ``HINT_NEGATIVE = 1`` (background).

* A click is a disc on its slice: every pixel whose centre is within ``radius_vox`` of the click
  (continuous) position, plus always the pixel nearest to it.
* A scribble is its polyline drawn between consecutive points rounded to the nearest pixel with
  8-connected Bresenham lines (1 px wide); ``width_vox = w > 1`` adds every pixel within
  ``(w - 1) / 2`` px of that centre line (so even widths behave like the odd width below).
* A :class:`~ichseg.interaction.prompts.Box` ("the hemorrhage on this slice lies inside") is
  drawn for every engine as **background only**: channel 1 gets the ring of pixels outside the
  box within ``ring_vox`` pixels of it (Chebyshev distance: a ``ring_vox``-wide frame around the
  pixels whose centres lie in the box, clipped to the slice); nothing inside the box (nor inside
  another box of the same slice) and nothing in channel 0 is drawn (:func:`draw_box_ring`). A box therefore always comes with a positive
  click or scribble; engines that know boxes may use them further (the random walker bounds its
  result on that slice by the box).
* Several prompts accumulate with a logical OR per channel (values are 0 or 1); a pixel may be
  set in both channels if the user contradicts themself.
* :func:`downsample_hints` resizes hint maps for a coarser network grid with a max over each
  output cell, so a 1-px stroke always survives (no bilinear + threshold, which erases thin
  lines).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import line as draw_line

from ichseg.errors import DimensionalityError, PromptError
from ichseg.interaction.prompts import (
    Box,
    Click,
    Click2D,
    Prompt,
    Prompt2D,
    Scribble,
    validate,
    validate_in_plane,
)

HINT_POSITIVE = 0  #: hint channel of positive (hemorrhage) prompts
HINT_NEGATIVE = 1  #: hint channel of negative (background) prompts
HINT_CHANNELS = 2


def hint_channel(positive: bool) -> int:
    """The hint channel for a prompt's label."""
    return HINT_POSITIVE if positive else HINT_NEGATIVE


def _round_clip(v: float, n: int) -> int:
    # floor(v + 0.5), not round(): banker's rounding would make rasterization depend on the
    # parity of a translation.
    return int(min(max(np.floor(v + 0.5), 0), n - 1))


def _dilate_inplace(canvas: np.ndarray, stroke: np.ndarray, radius: float) -> None:
    """OR into ``canvas`` every pixel within ``radius`` of a ``True`` pixel of ``stroke``."""
    ys, xs = np.nonzero(stroke)
    if ys.size == 0:
        return
    pad = int(np.ceil(radius)) + 1
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, canvas.shape[0])
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, canvas.shape[1])
    dist = ndi.distance_transform_edt(~stroke[y0:y1, x0:x1])
    canvas[y0:y1, x0:x1] |= dist <= radius + 1e-9


def draw_polyline(
    canvas: np.ndarray, points_yx: Sequence[tuple[float, float]], width: float = 1.0
) -> None:
    """Draw a polyline of continuous ``(y, x)`` points into the boolean 2D ``canvas`` (in place)."""
    ny, nx = canvas.shape
    pts = [(_round_clip(y, ny), _round_clip(x, nx)) for y, x in points_yx]
    target = canvas if width <= 1.0 else np.zeros_like(canvas)
    y_prev, x_prev = pts[0]
    target[y_prev, x_prev] = True
    for y, x in pts[1:]:
        rr, cc = draw_line(y_prev, x_prev, y, x)
        target[rr, cc] = True
        y_prev, x_prev = y, x
    if width > 1.0:
        _dilate_inplace(canvas, target, (width - 1.0) / 2.0)


def draw_disc(canvas: np.ndarray, y: float, x: float, radius: float) -> None:
    """Draw a disc of ``radius`` px centred at continuous ``(y, x)`` into ``canvas`` (in place)."""
    ny, nx = canvas.shape
    canvas[_round_clip(y, ny), _round_clip(x, nx)] = True
    r = int(np.ceil(radius))
    y0, y1 = max(int(np.floor(y)) - r, 0), min(int(np.ceil(y)) + r + 1, ny)
    x0, x1 = max(int(np.floor(x)) - r, 0), min(int(np.ceil(x)) + r + 1, nx)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    canvas[y0:y1, x0:x1] |= (yy - y) ** 2 + (xx - x) ** 2 <= radius * radius + 1e-9


def box_inside(box: Box, shape_yx: tuple[int, int]) -> np.ndarray:
    """Boolean ``(Y, X)`` mask of the pixels whose centres lie inside ``box`` (clipped)."""
    canvas = np.zeros(tuple(int(s) for s in shape_yx), dtype=bool)
    (r0, r1), (c0, c1) = box.pixel_ranges()
    canvas[max(r0, 0) : max(r1 + 1, 0), max(c0, 0) : max(c1 + 1, 0)] = True
    return canvas


def draw_box_ring(canvas: np.ndarray, box: Box | Sequence[Box], ring: int | None = None) -> None:
    """OR into ``canvas`` the frame just outside ``box``: pixels at Chebyshev distance
    ``1..ring_vox`` (or ``ring``) from the box's inside pixels. With several boxes (of one
    slice) no ring pixel falls inside any of them ("the hemorrhage lies inside one of them")."""
    boxes = [box] if isinstance(box, Box) else list(box)
    shape = canvas.shape
    outer = np.zeros(shape, bool)
    inside = np.zeros(shape, bool)
    for b in boxes:
        w = b.ring_vox if ring is None else int(ring)
        (r0, r1), (c0, c1) = b.pixel_ranges()
        outer[max(r0 - w, 0) : max(r1 + w + 1, 0), max(c0 - w, 0) : max(c1 + w + 1, 0)] = True
        inside |= box_inside(b, shape)
    canvas |= outer & ~inside


def rasterize_polyline(
    points_yx: Sequence[tuple[float, float]], shape_yx: tuple[int, int], width: float = 1.0
) -> np.ndarray:
    """A boolean ``(Y, X)`` mask of one polyline (see :func:`draw_polyline`)."""
    canvas = np.zeros(tuple(int(s) for s in shape_yx), dtype=bool)
    draw_polyline(canvas, points_yx, width)
    return canvas


def _draw_prompt_2d(
    canvases: np.ndarray,
    prompt: Prompt | Prompt2D,
    click_radius: float | None,
    scribble_width: float | None,
) -> None:
    canvas = canvases[hint_channel(prompt.positive)]
    if isinstance(prompt, Box):
        return  # boxes are drawn per slice, all together (draw_box_ring)
    if isinstance(prompt, Click | Click2D):
        r = prompt.radius_vox if click_radius is None else click_radius
        draw_disc(canvas, prompt.y, prompt.x, r)
    else:
        w = prompt.width_vox if scribble_width is None else scribble_width
        draw_polyline(canvas, prompt.points, w)


def _check_sizes(click_radius: float | None, scribble_width: float | None) -> None:
    if click_radius is not None and not (np.isfinite(click_radius) and click_radius >= 0):
        raise PromptError(f"click_radius must be a finite number >= 0, got {click_radius}")
    if scribble_width is not None and not (np.isfinite(scribble_width) and scribble_width > 0):
        raise PromptError(f"scribble_width must be a finite number > 0, got {scribble_width}")


def rasterize_slice(
    prompts: Iterable[Prompt | Prompt2D],
    shape_yx: tuple[int, int],
    z: int | None = None,
    *,
    click_radius: float | None = None,
    scribble_width: float | None = None,
) -> np.ndarray:
    """Hint map ``(2, Y, X)`` float32 for one slice.

    2D prompts are always drawn. 3D prompts (:class:`Click`, :class:`Scribble`, :class:`Box`) are
    drawn only if they lie on slice ``z`` (which is then required). ``click_radius`` /
    ``scribble_width`` override the sizes stored in the prompts (e.g. to thicken strokes for
    training); a box's ring keeps its own width.
    """
    shape = tuple(int(s) for s in shape_yx)
    if len(shape) != 2:
        raise DimensionalityError(f"shape_yx must have 2 entries, got {shape_yx}")
    _check_sizes(click_radius, scribble_width)
    canvases = np.zeros((HINT_CHANNELS, *shape), dtype=bool)
    boxes: list[Box] = []
    for p in prompts:
        if isinstance(p, Click | Scribble | Box):
            if z is None:
                raise PromptError("3D prompts given to rasterize_slice without a slice index z")
            if p.z != z:
                continue
            validate_in_plane(p, shape)
        else:
            validate(p, shape)
        _draw_prompt_2d(canvases, p, click_radius, scribble_width)
        if isinstance(p, Box):
            boxes.append(p)
    if boxes:
        draw_box_ring(canvases[HINT_NEGATIVE], boxes)
    return canvases.astype(np.float32)


def rasterize_prompts(
    prompts: Iterable[Prompt],
    shape_zyx: tuple[int, int, int],
    *,
    click_radius: float | None = None,
    scribble_width: float | None = None,
) -> np.ndarray:
    """Hint volume ``(2, Z, Y, X)`` float32 (channel 0 positive, 1 negative) of 3D prompts.

    Every prompt is validated against ``shape_zyx`` first (:class:`PromptError` if outside).
    """
    shape = tuple(int(s) for s in shape_zyx)
    zs, on_slices = rasterize_prompt_slices(
        prompts, shape, click_radius=click_radius, scribble_width=scribble_width
    )
    out = np.zeros((HINT_CHANNELS, *shape), dtype=np.float32)
    out[:, zs] = on_slices
    return out


def rasterize_prompt_slices(
    prompts: Iterable[Prompt],
    shape_zyx: tuple[int, int, int],
    *,
    click_radius: float | None = None,
    scribble_width: float | None = None,
) -> tuple[list[int], np.ndarray]:
    """:func:`rasterize_prompts` on the prompted slices only: their indices (ascending) and
    their hint maps ``(2, len(indices), Y, X)`` float32 (the other slices are empty), so a
    round need not build and resize a whole-scan volume."""
    shape = tuple(int(s) for s in shape_zyx)
    if len(shape) != 3:
        raise DimensionalityError(f"shape_zyx must have 3 entries, got {shape_zyx}")
    _check_sizes(click_radius, scribble_width)
    prompts = list(prompts)
    for p in prompts:
        if not isinstance(p, Click | Scribble | Box):
            raise PromptError(
                f"rasterize_prompts needs Click/Scribble/Box prompts with a slice index, got "
                f"{type(p).__name__} (use .on_slice(z) or rasterize_slice)"
            )
        validate(p, shape)
    zs = sorted({int(p.z) for p in prompts})
    row = {z: n for n, z in enumerate(zs)}
    out = np.zeros((HINT_CHANNELS, len(zs), *shape[1:]), dtype=bool)
    boxes: dict[int, list[Box]] = {}
    for p in prompts:
        _draw_prompt_2d(out[:, row[p.z]], p, click_radius, scribble_width)
        if isinstance(p, Box):
            boxes.setdefault(p.z, []).append(p)
    for z, on_slice in boxes.items():
        draw_box_ring(out[HINT_NEGATIVE, row[z]], on_slice)
    return zs, out.astype(np.float32)


def bin_starts(n_in: int, n_out: int) -> np.ndarray:
    """First input index of each of ``n_out`` contiguous bins partitioning ``n_in`` indices
    (the cells that shrinking hints max-pools over)."""
    return np.floor(np.arange(n_out) * n_in / n_out).astype(np.intp)


def _resize_axis_max(a: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    n_in = a.shape[axis]
    if n_out == n_in:
        return a
    if n_out < n_in and n_in % n_out == 0:  # integer factor: block max via a reshape
        k = n_in // n_out
        sl = [slice(None)] * a.ndim
        sl[axis] = slice(0, None, k)
        out = a[tuple(sl)].copy()
        for i in range(1, k):  # k strided maxima are much faster than a reshape + max
            sl[axis] = slice(i, None, k)
            np.maximum(out, a[tuple(sl)], out=out)
        return out
    if n_out < n_in:
        # Partition the input axis into n_out contiguous bins; each input index lands in exactly
        # one bin, so no foreground is dropped.
        return np.maximum.reduceat(a, bin_starts(n_in, n_out), axis=axis)
    idx = np.floor((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.intp)
    return np.take(a, np.minimum(idx, n_in - 1), axis=axis)


def downsample_hints(hints: np.ndarray, out_shape: Sequence[int]) -> np.ndarray:
    """Resize the trailing spatial axes of ``hints`` to ``out_shape`` without losing strokes.

    Shrinking takes the maximum over each output cell (a partition of the input axis into
    contiguous bins, for any integer or non-integer ratio); enlarging uses nearest neighbour.
    Works on ``(2, Z, Y, X)`` with a 3-entry ``out_shape`` (``Z`` may stay as is) or on
    ``(..., Y, X)`` with a 2-entry one. Equivalent in torch to ``adaptive_max_pool`` for
    shrinking.
    """
    arr = np.asarray(hints)
    out = tuple(int(s) for s in out_shape)
    if len(out) not in (2, 3) or arr.ndim < len(out):
        raise DimensionalityError(
            f"cannot resize hints of shape {arr.shape} to spatial shape {tuple(out_shape)}"
        )
    if min(out) < 1:
        raise DimensionalityError(f"output shape must be positive, got {out}")
    first = arr.ndim - len(out)
    for k, n in enumerate(out):
        arr = _resize_axis_max(arr, first + k, n)
    return np.ascontiguousarray(arr)
