"""The HemSeg-200 preprocessing recipe, invertible back to the original voxel grid.

Steps (as in the HemSeg-200 MONAI baselines, with ichseg's canonical LPS orientation instead of RAS):

1. reorient to canonical ``LPS`` (axis permutation/flip only, exactly undoable);
2. resample to ``target_spacing`` (default 0.48828 x 0.48828 x 4.6494 mm): linear for the image,
   nearest for labels; the new grid has exactly the target spacing and is centred on the old
   field of view;
3. clip HU: ``"percentile"`` = the ``[0.5, 99.5]`` percentiles of the *foreground* (mask) voxels
   of this case (falling back to the fixed HemSeg bounds when no non-empty mask is given, e.g. at
   inference), ``"fixed"`` = the HemSeg-200 dataset values 11.9997..79.0 HU, or ``"none"``;
4. z-score with the given mean/std (HemSeg-200: 48.134 / 13.458) or, when ``None``, the mean/std
   of the clipped foreground voxels.

:class:`HemSegRecord` keeps the original shape and affine; ``record.undo(pred)`` resamples a
prediction back (nearest for labels, linear for probabilities) and undoes the reorientation.
Dataset-level statistics in the nnU-Net style come from :func:`foreground_intensity_stats`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from ichseg.errors import ConfigError, GeometryError, IntensityError
from ichseg.io.volume import (
    Intensity,
    IntensityKind,
    Reorientation,
    Volume,
    check_same_grid,
    to_canonical,
)

HEMSEG_SPACING: tuple[float, float, float] = (0.48828, 0.48828, 4.6494)
HEMSEG_CLIP: tuple[float, float] = (11.9997, 79.0)
HEMSEG_MEAN: float = 48.134
HEMSEG_STD: float = 13.458

ClipMode = Literal["percentile", "fixed", "none"]


@dataclass(frozen=True)
class IntensityStats:
    """Foreground intensity statistics (HU): clip bounds plus mean/std."""

    lo: float
    hi: float
    mean: float
    std: float
    n_voxels: int = 0


HEMSEG_STATS = IntensityStats(HEMSEG_CLIP[0], HEMSEG_CLIP[1], HEMSEG_MEAN, HEMSEG_STD)


@dataclass(frozen=True)
class HemSegConfig:
    """Parameters of the HemSeg recipe (defaults reproduce HemSeg-200)."""

    target_spacing: tuple[float, float, float] | None = HEMSEG_SPACING
    clip: ClipMode = "percentile"
    percentiles: tuple[float, float] = (0.5, 99.5)
    fixed_clip: tuple[float, float] = HEMSEG_CLIP
    mean: float | None = HEMSEG_MEAN
    std: float | None = HEMSEG_STD

    def __post_init__(self) -> None:
        if self.clip not in ("percentile", "fixed", "none"):
            raise ConfigError(f"clip must be 'percentile', 'fixed' or 'none', got {self.clip!r}")
        p0, p1 = self.percentiles
        if not 0.0 <= p0 < p1 <= 100.0:
            raise ConfigError(
                f"percentiles must satisfy 0 <= lo < hi <= 100, got {self.percentiles}"
            )
        if self.fixed_clip[0] >= self.fixed_clip[1]:
            raise ConfigError(f"fixed_clip must be (lo, hi) with lo < hi, got {self.fixed_clip}")
        if self.std is not None and not self.std > 0:
            raise ConfigError(f"std must be positive, got {self.std}")
        if self.target_spacing is not None and (
            len(self.target_spacing) != 3 or min(self.target_spacing) <= 0
        ):
            raise ConfigError(
                f"target_spacing must be 3 positive numbers, got {self.target_spacing}"
            )

    @classmethod
    def from_stats(
        cls,
        stats: IntensityStats,
        target_spacing: tuple[float, float, float] | None = HEMSEG_SPACING,
    ) -> HemSegConfig:
        """Fixed clip + z-score from dataset-level statistics (the nnU-Net way)."""
        return cls(
            target_spacing, "fixed", fixed_clip=(stats.lo, stats.hi), mean=stats.mean, std=stats.std
        )


# --------------------------------------------------------------------------------------------
# resampling
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResampleGrid:
    """How an output grid maps to an input grid: ``i_in = ratio * i_out + offset`` per axis."""

    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    ratio: tuple[float, float, float]
    offset: tuple[float, float, float]

    @property
    def identity(self) -> bool:
        return (
            self.in_shape == self.out_shape
            and np.allclose(self.ratio, 1)
            and np.allclose(self.offset, 0)
        )


def plan_resample(
    volume: Volume, spacing: tuple[float, float, float]
) -> tuple[ResampleGrid, np.ndarray]:
    """The output grid (centred on the input field of view) and its affine for ``spacing`` mm."""
    sp_in = np.asarray(volume.spacing, dtype=np.float64)
    sp_out = np.asarray(spacing, dtype=np.float64)
    n_in = np.asarray(volume.shape)
    if np.allclose(sp_in, sp_out, rtol=1e-4, atol=1e-6):
        grid = ResampleGrid(volume.shape, volume.shape, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
        return grid, volume.affine.copy()
    n_out = np.maximum(1, np.round(n_in * sp_in / sp_out)).astype(int)
    ratio = sp_out / sp_in
    offset = (n_in - 1) / 2.0 - ratio * (n_out - 1) / 2.0
    t = np.eye(4)
    t[:3, :3] = np.diag(ratio)
    t[:3, 3] = offset
    grid = ResampleGrid(
        volume.shape,
        tuple(int(v) for v in n_out),  # type: ignore[arg-type]
        tuple(float(v) for v in ratio),  # type: ignore[arg-type]
        tuple(float(v) for v in offset),  # type: ignore[arg-type]
    )
    return grid, volume.affine @ t


def _sample(array: np.ndarray, ratio, offset, shape, order: int) -> np.ndarray:
    src = array if order == 0 else np.asarray(array, dtype=np.float32)
    return ndimage.affine_transform(
        src,
        np.asarray(ratio),
        offset=np.asarray(offset),
        output_shape=tuple(shape),
        order=order,
        mode="nearest",
    )


def resample_array(array: np.ndarray, grid: ResampleGrid, order: int) -> np.ndarray:
    """Array on ``grid.in_shape`` -> ``grid.out_shape`` (order 0 keeps the dtype)."""
    if tuple(array.shape) != grid.in_shape:
        raise GeometryError(f"expected shape {grid.in_shape} to resample, got {array.shape}")
    if grid.identity:
        return array.copy() if order == 0 else np.asarray(array, dtype=np.float32).copy()
    return _sample(array, grid.ratio, grid.offset, grid.out_shape, order)


def unresample_array(array: np.ndarray, grid: ResampleGrid, order: int) -> np.ndarray:
    """Inverse of :func:`resample_array`: ``grid.out_shape`` -> ``grid.in_shape``."""
    if tuple(array.shape) != grid.out_shape:
        raise GeometryError(f"expected shape {grid.out_shape} to map back, got {array.shape}")
    if grid.identity:
        return array.copy() if order == 0 else np.asarray(array, dtype=np.float32).copy()
    inv = 1.0 / np.asarray(grid.ratio)
    return _sample(array, inv, -np.asarray(grid.offset) * inv, grid.in_shape, order)


# --------------------------------------------------------------------------------------------
# intensity statistics
# --------------------------------------------------------------------------------------------
def foreground_intensity_stats(
    pairs: Iterable[tuple[Volume, Volume]],
    percentiles: tuple[float, float] = (0.5, 99.5),
    *,
    max_voxels_per_case: int | None = 100_000,
    seed: int = 0,
) -> IntensityStats:
    """Dataset-level HU statistics of the voxels inside the masks (nnU-Net's CT normalisation).

    ``pairs`` yields ``(image, mask)``; up to ``max_voxels_per_case`` foreground voxels are sampled
    per case. Mean/std are taken after clipping to the percentile bounds.
    """
    rng = np.random.default_rng(seed)
    values: list[np.ndarray] = []
    for image, mask in pairs:
        check_same_grid(image, mask)
        v = image.hu()[np.asarray(mask.array) > 0]
        if max_voxels_per_case is not None and v.size > max_voxels_per_case:
            v = rng.choice(v, max_voxels_per_case, replace=False)
        values.append(v.astype(np.float64))
    allv = np.concatenate(values) if values else np.zeros(0)
    if allv.size == 0:
        raise IntensityError("no foreground voxels: cannot compute intensity statistics")
    lo, hi = np.percentile(allv, percentiles)
    clipped = np.clip(allv, lo, hi)
    return IntensityStats(
        float(lo), float(hi), float(clipped.mean()), float(clipped.std()), int(allv.size)
    )


# --------------------------------------------------------------------------------------------
# the recipe
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HemSegRecord:
    """Everything needed to map outputs of :func:`hemseg_preprocess` back to the input grid."""

    reorientation: Reorientation
    grid: ResampleGrid
    original_shape: tuple[int, int, int]
    original_affine: np.ndarray
    output_affine: np.ndarray
    clip: tuple[float, float] | None
    clip_source: str
    mean: float
    std: float

    def undo(self, array: np.ndarray, *, kind: Literal["label", "prob"] = "label") -> np.ndarray:
        """Map a ``(i, j, k)`` array on the preprocessed grid back to the original voxel grid.

        ``kind="label"`` uses nearest-neighbour and keeps the dtype; ``"prob"`` uses linear
        interpolation and returns float32.
        """
        if kind not in ("label", "prob"):
            raise ConfigError(f"kind must be 'label' or 'prob', got {kind!r}")
        arr = np.asarray(array)
        if arr.shape != self.grid.out_shape:
            raise GeometryError(
                f"prediction shape {arr.shape} does not match the preprocessed grid "
                f"{self.grid.out_shape}"
            )
        back = unresample_array(arr, self.grid, 0 if kind == "label" else 1)
        return self.reorientation.undo(back)

    def undo_volume(
        self, array: np.ndarray, *, kind: Literal["label", "prob"] = "label", **meta: Any
    ) -> Volume:
        """Like :meth:`undo`, wrapped as a volume with the original affine."""
        out = self.undo(array, kind=kind)
        if kind == "label":
            return Volume(
                out.astype(np.uint8), self.original_affine.copy(), Intensity.label(), meta
            )
        return Volume(out, self.original_affine.copy(), Intensity(IntensityKind.UNKNOWN), meta)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (geometry and normalisation parameters)."""
        return {
            "original_shape": list(self.original_shape),
            "original_affine": self.original_affine.tolist(),
            "output_shape": list(self.grid.out_shape),
            "output_affine": self.output_affine.tolist(),
            "clip": None if self.clip is None else list(self.clip),
            "clip_source": self.clip_source,
            "mean": self.mean,
            "std": self.std,
        }


@dataclass
class HemSegResult:
    """Preprocessed image (z-scored float32), optional mask, and the record to undo it."""

    image: Volume
    mask: Volume | None
    record: HemSegRecord


def hemseg_preprocess(
    image: Volume, mask: Volume | None = None, config: HemSegConfig | None = None
) -> HemSegResult:
    """Apply the HemSeg recipe (see module docstring) to an image and optional label volume."""
    cfg = config or HemSegConfig()
    if image.intensity.kind == IntensityKind.LABEL:
        raise IntensityError("hemseg_preprocess got a label volume as the image")
    if mask is not None:
        check_same_grid(image, mask)
    can, reo = to_canonical(image)
    hu = can.hu()
    if not np.all(np.isfinite(hu)):
        raise IntensityError("image contains NaN or infinite values")
    can_mask = None
    if mask is not None:
        can_mask = reo_apply(mask.array, reo)

    fg = None if can_mask is None or not np.any(can_mask) else hu[can_mask > 0]
    clip: tuple[float, float] | None
    if cfg.clip == "none":
        clip, source = None, "none"
    elif cfg.clip == "fixed":
        clip, source = (float(cfg.fixed_clip[0]), float(cfg.fixed_clip[1])), "fixed"
    elif fg is not None:
        lo, hi = np.percentile(fg, cfg.percentiles)
        clip, source = (float(lo), float(hi)), "mask-percentile"
    else:
        clip, source = (float(cfg.fixed_clip[0]), float(cfg.fixed_clip[1])), "fixed (no mask)"

    if cfg.mean is not None and cfg.std is not None:
        mean, std = float(cfg.mean), float(cfg.std)
    else:
        ref = fg
        if ref is None:
            ref = hu[(hu >= clip[0]) & (hu <= clip[1])] if clip is not None else hu.ravel()
        if ref.size == 0:
            raise IntensityError("no voxels to compute the normalisation mean/std from")
        ref = np.clip(ref, *clip) if clip is not None else ref
        mean = float(cfg.mean) if cfg.mean is not None else float(ref.mean())
        std = float(cfg.std) if cfg.std is not None else float(ref.std())
        if std <= 1e-8:
            raise IntensityError(f"foreground standard deviation is ~0 ({std:g}); cannot z-score")

    if cfg.target_spacing is None:
        grid = ResampleGrid(can.shape, can.shape, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
        out_affine = can.affine.copy()
    else:
        grid, out_affine = plan_resample(can, cfg.target_spacing)
    img = resample_array(hu, grid, 1)
    if clip is not None:
        np.clip(img, clip[0], clip[1], out=img)
    img = ((img - np.float32(mean)) / np.float32(std)).astype(np.float32)

    record = HemSegRecord(
        reorientation=reo,
        grid=grid,
        original_shape=image.shape,
        original_affine=image.affine.copy(),
        output_affine=out_affine,
        clip=clip,
        clip_source=source,
        mean=mean,
        std=std,
    )
    meta = {**image.meta, "preprocess": "hemseg", "zscore": (mean, std), "clip": clip}
    out_img = Volume(img, out_affine, Intensity(IntensityKind.UNKNOWN), meta)
    out_mask = None
    if can_mask is not None:
        lab = resample_array(can_mask, grid, 0)
        out_mask = Volume(
            lab.astype(np.uint8), out_affine.copy(), Intensity.label(), dict(mask.meta)
        )  # type: ignore[union-attr]
    return HemSegResult(out_img, out_mask, record)


def reo_apply(array: np.ndarray, reo: Reorientation) -> np.ndarray:
    """Apply a recorded reorientation (original -> canonical) to another array on the same grid."""
    from nibabel import orientations as nio

    if tuple(np.asarray(array).shape[:3]) != reo.original_shape:
        raise GeometryError(f"array shape {np.shape(array)} does not match {reo.original_shape}")
    transform = nio.ornt_transform(reo.start_ornt, reo.target_ornt)
    return np.ascontiguousarray(nio.apply_orientation(np.asarray(array), transform))


class HemSegPreprocess:
    """Callable form: ``HemSegPreprocess(clip="fixed")(image, mask) -> HemSegResult``."""

    def __init__(self, config: HemSegConfig | None = None, **overrides: Any) -> None:
        base = config or HemSegConfig()
        if overrides:
            try:
                base = HemSegConfig(**{**base.__dict__, **overrides})
            except TypeError as exc:
                raise ConfigError(f"unknown HemSeg option: {exc}") from exc
        self.config = base

    def __call__(self, image: Volume, mask: Volume | None = None) -> HemSegResult:
        return hemseg_preprocess(image, mask, self.config)
