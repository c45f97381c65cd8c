"""Invertible pad / crop / resize and record chains."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ichseg.errors import EmptyMaskError, GeometryError
from ichseg.preprocess.spatial import (
    PadCropRecord,
    ResizeRecord,
    SpatialChain,
    SpatialRecord,
    bounding_box,
    center_pad_or_crop,
    crop_to_box,
    pad_to_multiple,
    resize,
)


def _rand(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _blob(shape: tuple[int, int, int]) -> np.ndarray:
    z, y, x = np.indices(shape)
    c = [s / 2 for s in shape]
    r = ((z - c[0]) / (shape[0] / 3)) ** 2 + ((y - c[1]) / 14) ** 2 + ((x - c[2]) / 11) ** 2
    return (r <= 1).astype(np.uint8)


def test_pad_to_multiple_exact_undo() -> None:
    x = _rand((5, 21, 30))
    out, rec = pad_to_multiple(x, 16)
    assert out.shape == (16, 32, 32)
    assert isinstance(rec, PadCropRecord) and isinstance(rec, SpatialRecord)
    np.testing.assert_array_equal(out[:5, :21, :30], x)
    assert np.all(out[5:] == 0)
    np.testing.assert_array_equal(rec.undo(out), x)
    out_c, rec_c = pad_to_multiple(x, (8, 8), mode="edge", where="center")
    assert out_c.shape == (5, 24, 32)
    np.testing.assert_array_equal(out_c[:, 1, 1:31], x[:, 0, :])  # edge replicate, centred
    np.testing.assert_array_equal(rec_c.undo(out_c), x)


@settings(max_examples=30, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9)),
    target=st.tuples(st.integers(1, 12), st.integers(1, 12), st.integers(1, 12)),
)
def test_center_pad_or_crop_roundtrip(
    shape: tuple[int, int, int], target: tuple[int, int, int]
) -> None:
    x = np.arange(np.prod(shape), dtype=np.int32).reshape(shape) + 1
    out, rec = center_pad_or_crop(x, target)
    assert out.shape == target
    back = rec.undo(out)
    assert back.shape == shape
    kept = back != 0  # cropped-away content comes back as fill=0; the rest is bit-exact
    np.testing.assert_array_equal(back[kept], x[kept])
    if all(t >= s for s, t in zip(shape, target, strict=True)):
        np.testing.assert_array_equal(back, x)  # pure padding: exact
    # centred: a centred crop keeps the central voxel
    if all(t <= s for s, t in zip(shape, target, strict=True)):
        assert kept.sum() == np.prod(target)


def test_crop_to_box_inside_and_outside() -> None:
    x = _rand((6, 10, 12))
    out, rec = crop_to_box(x, (slice(1, 5), (2, 8), slice(None)))
    np.testing.assert_array_equal(out, x[1:5, 2:8, :])
    back = rec.undo(out, fill=-7.0)
    np.testing.assert_array_equal(back[1:5, 2:8], x[1:5, 2:8])
    assert np.all(back[0] == -7.0) and np.all(back[:, :2] == -7.0)
    # a box reaching outside is padded
    out2, rec2 = crop_to_box(x, ((-2, 3), (8, 14), (0, 12)), value=5.0)
    assert out2.shape == (5, 6, 12)
    assert np.all(out2[:2] == 5.0) and np.all(out2[:, 2:] == 5.0)
    np.testing.assert_array_equal(out2[2:, :2], x[0:3, 8:10])
    np.testing.assert_array_equal(rec2.undo(out2)[0:3, 8:10], x[0:3, 8:10])
    with pytest.raises(GeometryError, match="empty box"):
        crop_to_box(x, ((3, 3), (0, 1), (0, 1)))


def test_leading_axes_pass_through() -> None:
    x = _rand((2, 5, 7, 9))  # (C, Z, Y, X)
    out, rec = pad_to_multiple(x, (4, 4, 4))
    assert out.shape == (2, 8, 8, 12)
    np.testing.assert_array_equal(rec.undo(out), x)
    with pytest.raises(GeometryError, match="last 3 axes"):
        rec.undo(np.zeros((8, 8, 8)))


def test_bounding_box() -> None:
    m = np.zeros((5, 6, 7), dtype=bool)
    m[1:3, 2:4, 4] = True
    assert bounding_box(m) == (slice(1, 3), slice(2, 4), slice(4, 5))
    assert bounding_box(m, margin=2) == (slice(-1, 5), slice(0, 6), slice(2, 7))
    with pytest.raises(EmptyMaskError):
        bounding_box(np.zeros((2, 2, 2)))


def test_resize_shapes_and_orders() -> None:
    x = _rand((4, 64, 64))
    for order in ("nearest", "linear", "cubic", "area", 1):
        out, rec = resize(x, (None, 32, 32), order)
        assert out.shape == (4, 32, 32)
        assert isinstance(rec, ResizeRecord)
        assert rec.undo(out).shape == x.shape
    out, rec = resize(x, (4, 48, 80), "linear")
    assert out.shape == (4, 48, 80) and rec.undo(out).shape == x.shape
    with pytest.raises(GeometryError, match="unknown interpolation"):
        resize(x, (4, 8, 8), "bilinear")  # type: ignore[arg-type]


def test_area_downsample_is_block_mean() -> None:
    x = _rand((2, 8, 8))
    out, _ = resize(x, (None, 4, 4), "area")
    expected = x.reshape(2, 4, 2, 4, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(out, expected, atol=1e-6)
    const, _ = resize(np.full((1, 9, 9), 3.0), (1, 4, 5), "area")
    np.testing.assert_allclose(const, 3.0, atol=1e-6)


def test_label_roundtrip_nearest_keeps_blob() -> None:
    lab = _blob((16, 48, 48))
    small, rec = resize(lab, (None, 24, 24), "nearest")
    assert small.dtype == np.uint8 and set(np.unique(small)) <= {0, 1}
    back = rec.undo(small)
    assert back.dtype == np.uint8 and back.shape == lab.shape
    dice = 2 * np.sum(back & lab) / (back.sum() + lab.sum())
    assert dice > 0.9


def test_probability_undo_is_linear() -> None:
    prob = np.linspace(0, 1, 32, dtype=np.float32)[None, None, :].repeat(4, 1)
    small, rec = resize(prob, (1, 4, 16), "linear")
    back = rec.undo(small)  # linear by default for non-nearest forward passes
    assert back.dtype == np.float32 and back.shape == prob.shape
    assert np.all(np.diff(back[0, 0]) >= -1e-6)  # monotone, not staircase-snapped to labels
    assert len(np.unique(back)) > 16


def test_chain_undo_and_apply() -> None:
    img = _rand((10, 60, 50))
    lab = _blob((10, 60, 50))
    chain = SpatialChain()
    x = chain.add(resize(img, (None, 30, 25), "area"))
    x = chain.add(pad_to_multiple(x, (16, 16, 16)))
    assert x.shape == (16, 32, 32) and len(chain) == 2
    assert chain.in_shape == (10, 60, 50) and chain.out_shape == (16, 32, 32)
    lab_net = chain.apply(lab, order="nearest")
    assert lab_net.shape == x.shape and lab_net.dtype == np.uint8
    back = chain.undo(lab_net, order="nearest")
    assert back.shape == lab.shape
    assert 2 * np.sum(back & lab) / (back.sum() + lab.sum()) > 0.9
    probs = chain.undo(x.astype(np.float32))
    assert probs.shape == img.shape and probs.dtype == np.float32
    with pytest.raises(GeometryError, match="chain break"):
        chain.add(pad_to_multiple(np.zeros((3, 3, 3)), 2))


@pytest.mark.parametrize(
    ("shape", "target"),
    [((2, 7, 9), (None, 13, 4)), ((5, 6, 8), (10, 3, 16)), ((3, 16, 16), (None, 32, 32))],
)
def test_linear_resize_matches_scipy_reference(shape, target):
    from scipy import ndimage

    from ichseg.preprocess.spatial import resize

    x = np.random.default_rng(1).random(shape).astype(np.float32)
    out, _ = resize(x, target, order="linear")
    full = tuple(s if t is None else t for s, t in zip(shape, target, strict=True))
    scale = np.array(shape) / np.array(full)
    ref = ndimage.affine_transform(
        x, scale, offset=0.5 * scale - 0.5, output_shape=full, order=1, mode="nearest"
    )
    assert out.shape == full and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-5)
