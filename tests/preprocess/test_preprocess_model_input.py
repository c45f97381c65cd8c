"""The network grid: default square + resize, and the physical-scale rules (FOV pad, thin slabs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models_tiny import TINY32

from ichseg.interaction.hints import rasterize_prompt_slices, rasterize_prompts
from ichseg.interaction.hpinet_engine import HPINetEngine, HPINetEngineConfig
from ichseg.interaction.prompts import Box, Click, Scribble
from ichseg.io.volume import Volume, make_affine, reorient
from ichseg.models.registry import build_model
from ichseg.preprocess.model_input import PhysicalScale, prepare_image, prepare_mask
from ichseg.preprocess.spatial import center_pad_or_crop


def head(shape=(64, 48, 20), spacing=(0.5, 0.5, 5.0), axcodes="LPS"):
    """Air around a water-like ellipse with a dense blob; (volume, blob mask)."""
    ii, jj, kk = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    img = np.full(shape, -1000.0)
    img[
        ((ii - shape[0] / 2) / (shape[0] / 2.2)) ** 2
        + ((jj - shape[1] / 2) / (shape[1] / 2.2)) ** 2
        < 1
    ] = 35
    blob = ((ii - shape[0] / 2 - 6) / 8) ** 2 + ((jj - shape[1] / 2) / 6) ** 2 + (
        (kk - shape[2] / 2) / (shape[2] / 4)
    ) ** 2 < 1
    img[blob] = 70
    vol = Volume(img.astype(np.int16), make_affine(spacing, "LPS", (1.0, 2.0, 3.0)))
    mask = vol.as_label(blob)
    if axcodes != "LPS":
        vol, _ = reorient(vol, axcodes)
        mask, _ = reorient(mask, axcodes)
    return vol, mask


def test_default_grid_keeps_slices_and_pads_to_the_larger_side():
    vol, _ = head()
    image, grid = prepare_image(vol, 32)
    assert image.shape == (20, 32, 32) and grid.square_shape == (20, 64, 64)
    assert grid.spacing_zyx == pytest.approx((5.0, 1.0, 1.0))
    assert [grid.model_slice(z) for z in (0, 7, 19)] == [0, 7, 19]
    assert list(grid.canonical_slices(7)) == [7]


def test_scale_rules_leave_scans_inside_their_ranges_unchanged():
    vol, _ = head(shape=(64, 48, 20), spacing=(4.0, 4.0, 5.0))  # 256 mm FOV, 5 mm slices
    plain, g0 = prepare_image(vol, 32)
    ruled, g1 = prepare_image(vol, 32, scale=PhysicalScale(220.0, 2.5, max_fov_mm=260.0))
    np.testing.assert_array_equal(plain, ruled)
    assert g0.square_shape == g1.square_shape and g0.model_shape == g1.model_shape


@pytest.mark.parametrize("axcodes", ["LPS", "RAS"])
def test_narrow_fov_is_padded_with_air_and_maps_back_exactly(axcodes):
    vol, mask = head(spacing=(1.0, 1.0, 5.0), axcodes=axcodes)  # 64 mm wide: padded to 128 mm
    image, grid = prepare_image(vol, 32, scale=PhysicalScale(min_fov_mm=128.0))
    assert grid.square_shape == (20, 128, 128) and image.shape == (20, 32, 32)
    assert grid.spacing_zyx == pytest.approx((5.0, 4.0, 4.0))
    assert image[:, 0, :].max() == 0.0  # the added border is air (window floor)
    small = prepare_mask(mask, grid)
    back = grid.mask_to_original(small.astype(np.float32))
    assert back.shape == vol.shape
    true = mask.array.astype(bool)
    inter = np.logical_and(back, true).sum()
    assert 2 * inter / (back.sum() + true.sum()) > 0.8  # 4x coarser in-plane, same place


def wide(vol: Volume, mask: Volume, pad: tuple[int, int, int, int]) -> tuple[Volume, Volume]:
    """The same head with air added in-plane (before/after i, before/after j), same origin voxel."""
    b0, a0, b1, a1 = pad
    widths = ((b0, a0), (b1, a1), (0, 0))
    arr = np.pad(vol.array, widths, constant_values=-1000)
    affine = vol.affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ np.array([b0, b1, 0.0])
    return (
        Volume(arr, affine, vol.intensity),
        Volume(np.pad(mask.array, widths), affine, mask.intensity),
    )


@pytest.mark.parametrize("axcodes", ["LPS", "RAS"])
def test_wide_fov_is_cropped_towards_max_fov_and_maps_back_exactly(axcodes):
    vol, mask = head(shape=(64, 48, 20), spacing=(2.0, 2.0, 5.0))  # head ~ 116 x 87 mm
    vol, mask = wide(vol, mask, (68, 68, 76, 76))  # 200 x 200 px = 400 mm
    if axcodes != "LPS":
        vol, _ = reorient(vol, axcodes)
        mask, _ = reorient(mask, axcodes)
    image, grid = prepare_image(vol, 64, scale=PhysicalScale(max_fov_mm=260.0))
    assert grid.square_shape == (20, 130, 130)  # 260 mm: the head fits, no need to stop earlier
    plain, _ = prepare_image(vol, 64)
    assert image.sum() > plain.sum() * 1.5  # the head fills more of the network grid
    small = prepare_mask(mask, grid)
    back = grid.mask_to_original(small.astype(np.float32))
    assert back.shape == vol.shape
    true = mask.array.astype(bool)
    assert 2 * np.logical_and(back, true).sum() / (back.sum() + true.sum()) > 0.85
    prob = np.ones(grid.model_shape, np.float32)
    outside = grid.to_original(prob) == 0  # the cropped border comes back as zeros
    assert outside.any() and not np.logical_and(outside, true).any()


def test_wide_fov_crop_never_cuts_into_the_head():
    vol, mask = head(shape=(64, 48, 20), spacing=(2.0, 2.0, 5.0))
    vol, mask = wide(vol, mask, (4, 132, 76, 76))  # 400 mm, head against one edge
    _, grid = prepare_image(vol, 32, scale=PhysicalScale(max_fov_mm=260.0))
    side = grid.square_shape[1]
    assert 130 < side < 200  # cropped, but less than max_fov_mm asks
    win = (vol.array > 0).any(axis=2)  # LPS: i = x, j = y
    kept = center_pad_or_crop(win.T, (side, side))[0]
    assert kept.sum() == win.sum()  # every head pixel is inside the square
    assert center_pad_or_crop(win.T, (side - 1, side - 1))[0].sum() != win.sum()


def test_thin_slices_become_slabs_and_prompts_land_in_their_slab():
    vol, mask = head(shape=(48, 48, 50), spacing=(1.0, 1.0, 1.0))  # 50 x 1 mm slices
    scale = PhysicalScale(min_slice_mm=2.5, target_slice_mm=5.0)
    image, grid = prepare_image(vol, 32, scale=scale)
    assert image.shape == (10, 32, 32) and grid.spacing_zyx[0] == pytest.approx(5.0)
    slabs = [list(grid.canonical_slices(j)) for j in range(10)]
    assert sorted(z for s in slabs for z in s) == list(range(50))
    assert all(grid.model_slice(z) == j for j, s in enumerate(slabs) for z in s)
    # a stroke on any thin slice survives on the network slab model_slice() names
    for z in (0, 13, 27, 49):
        stroke = Scribble(z, [(20, 20), (20, 26)], True, 1.0)
        hints = grid.canonical_hints_to_model(rasterize_prompts([stroke], (50, 48, 48)))
        assert hints[0].reshape(10, -1).max(1).nonzero()[0].tolist() == [grid.model_slice(z)]
    # a probability of the network grid comes back on every thin slice (linear in z)
    small = prepare_mask(mask, grid).astype(np.float32)
    back = grid.mask_to_original(small)
    assert back.shape == vol.shape
    true = mask.array.astype(bool)
    assert 2 * np.logical_and(back, true).sum() / (back.sum() + true.sum()) > 0.8


@pytest.mark.parametrize(
    "shape,spacing,scale,pad",
    [
        ((48, 40, 12), (1.0, 1.0, 5.0), PhysicalScale(), None),  # in-plane padding
        ((48, 48, 50), (1.0, 1.0, 1.0), PhysicalScale(min_slice_mm=2.5), None),  # slabs
        ((64, 48, 20), (2.0, 2.0, 5.0), PhysicalScale(max_fov_mm=260.0), (68, 68, 76, 76)),
    ],
)
def test_sparse_hints_equal_the_whole_volume_path(shape, spacing, scale, pad):
    """The engine draws and shrinks only the prompted slices: the same maps as rasterizing the
    whole scan and shrinking it, on padded, slab and cropped grids."""
    vol, mask = head(shape=shape, spacing=spacing)
    if pad is not None:
        vol, mask = wide(vol, mask, pad)
    _, grid = prepare_image(vol, 32, scale=scale)
    zyx = grid.canonical.zyx().shape
    zmax, ymax, xmax = (n - 1 for n in zyx)
    prompts = [
        Scribble(1, [(2, 3), (ymax - 2, xmax - 4)], True, 2.0),
        Click(1, ymax // 2, 1, False, 3.0),
        Click(2, 0, xmax, True, 1.0),  # same slab as slice 1 on the slab grid
        Box(zmax, 4, 5, ymax // 2, xmax // 2),
        Scribble(zmax, [(6, 6), (8, 9)], True, 1.0),
        Scribble(zmax // 2, [(ymax, 0), (0, xmax)], False, 1.0),
    ]
    dense = grid.canonical_hints_to_model(rasterize_prompts(prompts, zyx))
    zs, on_slices = rasterize_prompt_slices(prompts, zyx)
    assert zs == sorted({p.z for p in prompts}) and on_slices.shape == (2, len(zs), *zyx[1:])
    sparse = grid.canonical_slice_hints_to_model(zs, on_slices)
    assert sparse.dtype == np.float32 and sparse.any()
    np.testing.assert_array_equal(sparse, dense)
    np.testing.assert_array_equal(
        grid.canonical_slice_hints_to_model([], on_slices[:, :0]), np.zeros_like(dense)
    )


def test_training_targets_follow_the_image_grid_on_any_scale():
    """HU image and subtype labels of training go through the image's own grid mapping."""
    from ichseg.data.slices import labels_to_grid
    from ichseg.training.data import network_grid_hu

    vol, mask = head(shape=(40, 48, 50), spacing=(1.0, 1.0, 1.0))  # narrow and thin-sliced
    scale = PhysicalScale(min_fov_mm=64.0, min_slice_mm=2.5, target_slice_mm=5.0)
    image, grid = prepare_image(vol, 32, scale=scale)
    hu = network_grid_hu(vol, grid)
    assert hu.shape == image.shape == (10, 32, 32)
    assert hu[:, 0, :].max() == -1000.0  # the FOV padding is air in HU
    labels = np.where(mask.array > 0, 3, 0).astype(np.uint8).transpose(2, 1, 0)  # LPS zyx
    labels[:, :, :20] = np.where(labels[:, :, :20] > 0, 5, 0)  # two subtypes side by side
    grid_labels = labels_to_grid(np.ascontiguousarray(labels), grid)
    assert grid_labels.shape == image.shape
    assert set(np.unique(grid_labels)) == {0, 3, 5}
    binary = prepare_mask(mask, grid)
    assert ((grid_labels > 0) == binary.astype(bool)).mean() > 0.98


def test_scale_validation():
    with pytest.raises(ValueError, match="min_fov_mm"):
        PhysicalScale(min_fov_mm=0.0)
    with pytest.raises(ValueError, match="max_fov_mm"):
        PhysicalScale(min_fov_mm=220.0, max_fov_mm=200.0)
    with pytest.raises(ValueError, match="target_slice_mm"):
        PhysicalScale(target_slice_mm=-1.0)


def test_engine_on_thin_slices_answers_on_every_scan_slice():
    from ichseg.errors import ConfigError

    torch.manual_seed(0)
    model = build_model("hpinet", "lite", **TINY32)
    vol, _ = head(shape=(48, 48, 40), spacing=(1.0, 1.0, 1.0))
    cfg = HPINetEngineConfig(min_fov_mm=48.0, min_slice_mm=2.5, target_slice_mm=5.0)
    engine = HPINetEngine(model, cfg)
    engine.encode(vol)  # LPS already: canonical
    assert engine.grid.model_shape[0] == 8
    stroke = Scribble(21, [(30, 24), (30, 28)], True, 1.0)
    out = engine.predict([stroke], [stroke], None, None)
    assert out.probability.shape == (40, 48, 48)
    assert out.state.interacted == (engine.grid.model_slice(21),)
    slab = set(engine.grid.canonical_slices(engine.grid.model_slice(21)))
    assert not slab & set(out.propagated_slices)  # the prompted slab itself is the SIM's
    assert set(out.propagated_slices) <= set(range(40))
    start = engine.start_state(np.zeros((40, 48, 48), np.float32))
    assert start.prob.shape == engine.grid.model_shape
    with pytest.raises(ConfigError, match="min_slice_mm"):
        HPINetEngineConfig(min_slice_mm=-2.0)
