"""Hint maps: channel order, click radius, scribble width, accumulation, stroke-safe resizing."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from ichseg.errors import DimensionalityError, PromptError
from ichseg.interaction.hints import (
    HINT_NEGATIVE,
    HINT_POSITIVE,
    box_inside,
    downsample_hints,
    draw_box_ring,
    rasterize_polyline,
    rasterize_prompts,
    rasterize_slice,
)
from ichseg.interaction.prompts import Box, Click, Click2D, Scribble, Scribble2D

SHAPE = (16, 48, 48)


def test_channel_order_constants():
    assert (HINT_POSITIVE, HINT_NEGATIVE) == (0, 1)


def test_click_disc_radius_and_channel():
    h = rasterize_prompts([Click(5, 20, 30, True, 3.0)], SHAPE)
    assert h.shape == (2, *SHAPE) and h.dtype == np.float32
    assert h[HINT_NEGATIVE].sum() == 0
    assert np.flatnonzero(h[HINT_POSITIVE].reshape(16, -1).any(axis=1)).tolist() == [5]
    ys, xs = np.nonzero(h[0, 5])
    # integer offsets with dy^2 + dx^2 <= 9: 29 pixels
    assert ys.size == 29
    assert np.all((ys - 20) ** 2 + (xs - 30) ** 2 <= 9)
    neg = rasterize_prompts([Click(2, 3, 3, False, 0.0)], SHAPE)
    assert neg[HINT_POSITIVE].sum() == 0 and neg[HINT_NEGATIVE, 2, 3, 3] == 1
    assert neg.sum() == 1  # radius 0 still marks the clicked pixel


def test_scribble_width_and_accumulation():
    line = Scribble(1, [(10, 5), (10, 25)], False, 1.0)
    h = rasterize_prompts([line], SHAPE)
    assert h[HINT_NEGATIVE, 1].sum() == 21 and h[HINT_NEGATIVE, 1, 10, 5:26].all()
    thick = rasterize_prompts([Scribble(1, [(10, 5), (10, 25)], False, 3.0)], SHAPE)
    rows = np.flatnonzero(thick[HINT_NEGATIVE, 1].any(axis=1))
    assert rows.tolist() == [9, 10, 11]
    both = rasterize_prompts([line, Click(1, 30, 30, True, 2.0), Click(3, 10, 10, True)], SHAPE)
    assert both[HINT_NEGATIVE].sum() == 21
    assert both[HINT_POSITIVE, 1].sum() == 13 and both[HINT_POSITIVE, 3].sum() == 13
    assert set(np.unique(both)) <= {0.0, 1.0}
    # overrides
    wide = rasterize_prompts([line], SHAPE, scribble_width=5.0)
    assert np.flatnonzero(wide[1, 1].any(axis=1)).tolist() == [8, 9, 10, 11, 12]


def test_polyline_is_connected():
    mask = rasterize_polyline([(2.2, 3.7), (40.1, 11.0), (5.0, 44.0)], (48, 48))
    assert ndi.label(mask, structure=np.ones((3, 3)))[1] == 1


def test_rasterize_slice_2d_and_3d():
    h = rasterize_slice([Click2D(4, 4, True, 1.0), Scribble2D([(8, 8)], False)], (48, 48))
    assert h.shape == (2, 48, 48) and h[0].sum() == 5 and h[1].sum() == 1
    h3 = rasterize_slice([Click(2, 4, 4, True), Click(3, 9, 9, False)], (48, 48), z=2)
    assert h3[0].sum() > 0 and h3[1].sum() == 0
    with pytest.raises(PromptError):
        rasterize_slice([Click(2, 4, 4, True)], (48, 48))
    with pytest.raises(PromptError):
        rasterize_slice([Click2D(4, 60, True)], (48, 48))
    with pytest.raises(PromptError):
        rasterize_prompts([Click2D(4, 4, True)], SHAPE)  # type: ignore[list-item]
    with pytest.raises(PromptError):
        rasterize_prompts([Click(16, 4, 4, True)], SHAPE)
    with pytest.raises(DimensionalityError):
        rasterize_prompts([], (48, 48))  # type: ignore[arg-type]


@pytest.mark.parametrize("out", [(16, 16), (20, 20), (24, 13), (7, 48)])
def test_downsample_keeps_one_pixel_strokes(out):
    stroke = Scribble(0, [(1, 1), (46, 30), (3, 46)], True, 1.0)
    h = rasterize_prompts([stroke], (1, 48, 48))
    small = downsample_hints(h, (1, *out))
    assert small.shape == (2, 1, *out)
    # every stroke pixel's output cell is set, and nothing else appears
    ys, xs = np.nonzero(h[0, 0])

    def cell(i: np.ndarray, n_out: int) -> np.ndarray:
        if n_out >= 48:
            return i
        starts = np.floor(np.arange(n_out) * 48 / n_out)  # bins partition the input axis
        return np.searchsorted(starts, i, side="right") - 1

    cy, cx = cell(ys, out[0]), cell(xs, out[1])
    expected = np.zeros(out, dtype=np.float32)
    expected[cy, cx] = 1
    np.testing.assert_array_equal(small[0, 0], expected)
    assert small[1].sum() == 0


def test_bilinear_threshold_would_lose_the_stroke_but_max_pool_does_not():
    h = rasterize_prompts([Scribble(0, [(0, 1), (47, 1)], True)], (1, 48, 48))
    naive = ndi.zoom(h[0, 0], 0.25, order=1) > 0.5
    assert naive.sum() == 0  # the authors' approach erases the line
    assert downsample_hints(h, (1, 12, 12))[0, 0].sum() == 12


def test_upsample_is_nearest_and_shapes_checked():
    h = np.zeros((2, 4, 4), np.float32)
    h[0, 1, 2] = 1
    up = downsample_hints(h, (8, 8))
    assert up.shape == (2, 8, 8) and up[0].sum() == 4 and up[0, 2:4, 4:6].all()
    with pytest.raises(DimensionalityError):
        downsample_hints(h, (4,))
    with pytest.raises(DimensionalityError):
        downsample_hints(h, (0, 4))


def test_box_is_a_background_ring_just_outside_and_nothing_inside():
    box = Box(4, 9.5, 19.5, 20.5, 30.5)  # pixels rows 10..20, cols 20..30
    h = rasterize_prompts([box], SHAPE)
    assert h[HINT_POSITIVE].sum() == 0  # a box marks nothing as hemorrhage
    neg = h[HINT_NEGATIVE] > 0
    assert neg[[z for z in range(SHAPE[0]) if z != 4]].sum() == 0
    inside = np.zeros(SHAPE[1:], bool)
    inside[10:21, 20:31] = True
    assert np.array_equal(box_inside(box, SHAPE[1:]), inside)
    assert not (neg[4] & inside).any()
    ring = np.zeros(SHAPE[1:], bool)
    ring[8:23, 18:33] = True  # 2 px frame (the default ring_vox)
    ring &= ~inside
    assert np.array_equal(neg[4], ring)
    one = rasterize_slice([Box(4, 9.5, 19.5, 20.5, 30.5, ring_vox=1)], SHAPE[1:], 4)
    assert one[HINT_NEGATIVE].sum() == 13 * 13 - 11 * 11
    assert rasterize_slice([box], SHAPE[1:], 5).sum() == 0  # another slice


def test_box_ring_is_clipped_at_the_slice_border_and_validated():
    canvas = np.zeros((10, 10), bool)
    draw_box_ring(canvas, Box(0, -0.5, -0.5, 3.5, 3.5))  # corner box: ring only right/below
    expected = np.zeros((10, 10), bool)
    expected[:6, :6] = True
    expected[:4, :4] = False
    assert np.array_equal(canvas, expected)
    full = rasterize_slice([Box(0, -0.5, -0.5, 9.5, 9.5)], (10, 10), 0)
    assert full.sum() == 0  # a box covering the slice leaves no room for a ring
    with pytest.raises(PromptError, match="not inside"):
        rasterize_slice([Box(0, 1, 1, 12, 5)], (10, 10), 0)
    with pytest.raises(PromptError, match="outside the volume"):
        rasterize_prompts([Box(20, 1, 1, 5, 5)], SHAPE)


def test_box_with_a_click_accumulates_both_channels():
    h = rasterize_prompts([Box(2, 9.5, 9.5, 20.5, 20.5), Click(2, 15, 15, True, 2.0)], SHAPE)
    assert h[HINT_POSITIVE, 2, 15, 15] == 1 and h[HINT_POSITIVE, 2].sum() == 13
    assert h[HINT_NEGATIVE, 2, 8, 8] == 1 and h[HINT_NEGATIVE, 2, 15, 15] == 0


def test_boxes_of_one_slice_keep_their_rings_out_of_each_other():
    a, b = Box(1, 4.5, 4.5, 10.5, 10.5), Box(1, 4.5, 12.5, 10.5, 18.5)  # 1 px apart
    h = rasterize_prompts([a, Click(1, 7, 7, True), b], SHAPE)
    inside = rasterize_slice([], SHAPE[1:], 1)[0] > 0
    for box in (a, b):
        (r0, r1), (c0, c1) = box.pixel_ranges()
        inside[r0 : r1 + 1, c0 : c1 + 1] = True
    neg = h[HINT_NEGATIVE, 1] > 0
    assert not (neg & inside).any() and neg[7, 11] and neg[3, 15]
    assert np.array_equal(rasterize_slice(iter([a, b]), SHAPE[1:], 1)[1], h[HINT_NEGATIVE, 1])
