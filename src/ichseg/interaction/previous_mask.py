"""Synthetic previous-round masks for training (the "PM" input of the networks).

Given a ground-truth volume ``(Z, Y, X)``, :func:`synthesize_previous_mask` draws one mode and
returns a float32 ``{0, 1}`` mask that imitates the output of an earlier round:

* ``zero`` (default probability 0.5): all zeros, as in round 1;
* ``morphology``: 3D erosion or dilation (probability 1/2 each) of the GT;
* ``opening``: 3D binary opening of the GT (removes thin parts and small pieces);
* ``z_shift``: the GT shifted along z by ``d`` slices, up or down, padding with the edge slice;
* ``noisy`` (default probability 0): a few random blobs added next to the lesion and removed
  from inside it.

Radii follow the reference sampler. Let ``r`` be half of the smaller of the y/x extents of the GT
slice with the largest area (in pixels). ``morphology`` draws a radius uniformly from the
integers ``[1, round(0.3 r)]`` (1 if that bound is <= 1); ``opening`` from
``[1, max(round(0.5 r), 2) - 1]``; ``z_shift`` draws ``d`` from ``[1, max(floor(0.1 Z), 2) - 1]``.

Anisotropy: the radius is in-plane pixels. The structuring element is the set of voxel offsets
within ``radius * min(sy, sx)`` millimetres using ``spacing_zyx``, so with 5 mm slices and 1 mm
pixels a radius of 8 px reaches only 1 slice up and down (instead of the authors' isotropic
voxel ball, which would span 40 mm in z). Operations use exact Euclidean distance transforms
(outside the array counts as background).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum

import numpy as np
from scipy import ndimage as ndi

from ichseg.errors import ConfigError, DimensionalityError, IntensityError


class PreviousMaskMode(StrEnum):
    ZERO = "zero"
    MORPHOLOGY = "morphology"
    OPENING = "opening"
    Z_SHIFT = "z_shift"
    NOISY = "noisy"


DEFAULT_PREVIOUS_MASK_PROBS: dict[str, float] = {
    PreviousMaskMode.ZERO: 0.5,
    PreviousMaskMode.MORPHOLOGY: 0.5 / 3,
    PreviousMaskMode.OPENING: 0.5 / 3,
    PreviousMaskMode.Z_SHIFT: 0.5 / 3,
    PreviousMaskMode.NOISY: 0.0,
}

#: Default voxel size ``(z, y, x)`` in mm when none is given: thick slices, ~1 mm pixels (a
#: 512^2 scan with 0.49 mm pixels and 5 mm slices after the 2x in-plane downsampling).
DEFAULT_SPACING_ZYX: tuple[float, float, float] = (5.0, 1.0, 1.0)


def _binary_gt(gt_zyx: np.ndarray) -> np.ndarray:
    gt = np.asarray(gt_zyx)
    if gt.ndim != 3:
        raise DimensionalityError(f"GT must be a 3D (Z, Y, X) array, got shape {gt.shape}")
    if gt.dtype == bool:
        return gt
    if not np.issubdtype(gt.dtype, np.number):
        raise IntensityError(f"GT must be numeric or boolean, got dtype {gt.dtype}")
    if np.issubdtype(gt.dtype, np.floating) and not np.all(np.isfinite(gt)):
        raise IntensityError("GT contains NaN or infinite values")
    return gt > 0.5


def _check_spacing(spacing_zyx: Sequence[float]) -> tuple[float, float, float]:
    sp = tuple(float(s) for s in spacing_zyx)
    if len(sp) != 3 or not all(np.isfinite(s) and s > 0 for s in sp):
        raise ConfigError(f"spacing_zyx must be 3 positive numbers, got {spacing_zyx!r}")
    return sp  # type: ignore[return-value]


def _normalized_probs(probs: Mapping[str, float] | None) -> tuple[list[str], np.ndarray]:
    p = dict(DEFAULT_PREVIOUS_MASK_PROBS if probs is None else probs)
    valid = {m.value for m in PreviousMaskMode}
    for k, v in p.items():
        if k not in valid:
            raise ConfigError(f"unknown previous-mask mode {k!r} (valid: {sorted(valid)})")
        if not (np.isfinite(v) and v >= 0):
            raise ConfigError(f"probability of mode {k!r} must be >= 0, got {v}")
    names = [str(k) for k in p]
    w = np.array([p[k] for k in p], dtype=np.float64)
    if w.sum() <= 0:
        raise ConfigError("previous-mask mode probabilities sum to 0")
    return names, w / w.sum()


def _bbox_slices(mask: np.ndarray, margin: Sequence[int]) -> tuple[slice, ...]:
    """Bounding box of ``mask`` grown by ``margin`` voxels per axis (clipped to the array)."""
    out = []
    for ax, m in enumerate(margin):
        other = tuple(a for a in range(mask.ndim) if a != ax)
        idx = np.flatnonzero(mask.any(axis=other))
        out.append(slice(max(int(idx[0]) - m, 0), min(int(idx[-1]) + m + 1, mask.shape[ax])))
    return tuple(out)


def ball_dilate(mask: np.ndarray, radius_px: float, spacing_zyx: Sequence[float]) -> np.ndarray:
    """3D dilation with the anisotropic ball of ``radius_px`` in-plane pixels (see module doc)."""
    sp = _check_spacing(spacing_zyx)
    if not mask.any() or radius_px <= 0:
        return mask.copy()
    radius_mm = radius_px * min(sp[1], sp[2])
    box = _bbox_slices(mask, [int(np.ceil(radius_mm / s)) + 1 for s in sp])
    out = np.zeros_like(mask)
    dist = ndi.distance_transform_edt(~mask[box], sampling=sp)
    out[box] = dist <= radius_mm + 1e-6
    return out


def ball_erode(mask: np.ndarray, radius_px: float, spacing_zyx: Sequence[float]) -> np.ndarray:
    """3D erosion with the anisotropic ball of ``radius_px`` in-plane pixels."""
    sp = _check_spacing(spacing_zyx)
    if not mask.any() or radius_px <= 0:
        return mask.copy()
    box = _bbox_slices(mask, [0, 0, 0])
    out = np.zeros_like(mask)
    dist = ndi.distance_transform_edt(np.pad(mask[box], 1), sampling=sp)[1:-1, 1:-1, 1:-1]
    out[box] = dist > radius_px * min(sp[1], sp[2]) + 1e-6
    return out


def ball_open(mask: np.ndarray, radius_px: float, spacing_zyx: Sequence[float]) -> np.ndarray:
    """3D opening (erosion then dilation) with the anisotropic ball; result stays inside ``mask``."""
    return ball_dilate(ball_erode(mask, radius_px, spacing_zyx), radius_px, spacing_zyx) & mask


def shift_z(mask: np.ndarray, d: int) -> np.ndarray:
    """Shift along z by ``d`` slices (positive: towards higher z), repeating the edge slice."""
    z = mask.shape[0]
    if d == 0:
        return mask.copy()
    d = int(np.clip(d, -(z - 1), z - 1)) if z > 1 else 0
    if d == 0:
        return mask.copy()
    idx = np.clip(np.arange(z) - d, 0, z - 1)
    return mask[idx]


def lesion_half_extent(gt: np.ndarray) -> float:
    """Half of the smaller y/x extent (pixels) of the GT slice with the largest area (0 if empty)."""
    areas = gt.reshape(gt.shape[0], -1).sum(axis=1)
    if areas.max(initial=0) == 0:
        return 0.0
    sl = gt[int(np.argmax(areas))]
    ys, xs = np.nonzero(sl)
    return min(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) / 2.0


def _add_remove_blobs(
    gt: np.ndarray, rng: np.random.Generator, r: float, sp: tuple[float, float, float]
) -> np.ndarray:
    out = gt.copy()
    radius_hi = max(2, round(0.3 * r))
    near = ball_dilate(gt, max(2.0 * r, 3.0), sp) & ~gt
    for source, add in ((near, True), (gt, False)):
        cand = np.flatnonzero(source)
        if cand.size == 0:
            continue
        for _ in range(int(rng.integers(1, 4))):
            seed = np.zeros_like(gt)
            seed.flat[int(rng.choice(cand))] = True
            blob = ball_dilate(seed, float(rng.integers(1, radius_hi + 1)), sp)
            out = (out | blob) if add else (out & ~blob)
    return out


def synthesize_previous_mask(
    gt_zyx: np.ndarray,
    rng: np.random.Generator,
    probs: Mapping[str, float] | None = None,
    spacing_zyx: Sequence[float] = DEFAULT_SPACING_ZYX,
    mode: str | None = None,
) -> tuple[np.ndarray, str]:
    """A synthetic previous-round mask ``(Z, Y, X)`` float32 and the mode that made it.

    ``probs`` maps mode names to (unnormalised) probabilities (default
    :data:`DEFAULT_PREVIOUS_MASK_PROBS`); ``mode`` forces one mode. An empty GT gives zeros in
    every mode (the mode is still reported as drawn). Deterministic for a given ``rng`` state.
    """
    gt = _binary_gt(gt_zyx)
    sp = _check_spacing(spacing_zyx)
    names, weights = _normalized_probs(probs)
    if mode is None:
        mode = names[int(rng.choice(len(names), p=weights))]
    elif mode not in {m.value for m in PreviousMaskMode}:
        raise ConfigError(f"unknown previous-mask mode {mode!r}")
    mode = str(PreviousMaskMode(mode))
    r = lesion_half_extent(gt)
    if mode == PreviousMaskMode.ZERO or not gt.any():
        out = np.zeros_like(gt)
    elif mode == PreviousMaskMode.MORPHOLOGY:
        hi = round(0.3 * r)
        radius = 1 if hi <= 1 else int(rng.integers(1, hi + 1))
        erode = bool(rng.random() < 0.5)
        out = ball_erode(gt, radius, sp) if erode else ball_dilate(gt, radius, sp)
    elif mode == PreviousMaskMode.OPENING:
        hi = max(round(0.5 * r), 2)
        out = ball_open(gt, int(rng.integers(1, hi)), sp)
    elif mode == PreviousMaskMode.Z_SHIFT:
        hi = max(int(np.floor(0.1 * gt.shape[0])), 2)
        d = int(rng.integers(1, hi))
        out = shift_z(gt, d if rng.random() < 0.5 else -d)
    else:
        out = _add_remove_blobs(gt, rng, r, sp)
    return out.astype(np.float32), mode
