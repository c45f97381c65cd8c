"""Per-scan segmentation metrics (numpy/scipy only).

Masks are boolean (or 0/1 numeric) arrays in any consistent axis order, ``(i, j, k)`` or
``(Z, Y, X)``; ``spacing`` gives the voxel size in mm **in the same axis order** as the arrays.
Every metric is computed on the whole array passed in (3D per scan unless stated otherwise).

Empty-mask conventions (one place, used by every function here)
-----------------------------------------------------------------
==================  =============================  ===========================================
case                overlap metrics                distance metrics
==================  =============================  ===========================================
both masks empty    Dice = Jaccard = 1             HD = HD95 = 0 mm, NSD = 1
exactly one empty   Dice = Jaccard = 0             HD = HD95 = NaN (flagged), NSD = 0
==================  =============================  ===========================================

The constants ``*_BOTH_EMPTY`` / ``*_ONE_EMPTY`` below hold these values. A NaN distance means
"undefined", never "bad but finite": :func:`evaluate_case` sets ``hd_undefined = 1.0`` for it and
:func:`summarize` (like :mod:`ichseg.evaluation.statistics`) reports how many values were NaN
instead of silently averaging them away.

Surface distances follow MONAI's ``compute_hausdorff_distance`` (v1.6): the surface of a mask is
its set of foreground voxels removed by one binary erosion with the face-connected structuring
element (voxels touching the array border count as surface); distances are Euclidean in mm
between voxel centres, from every surface voxel of one mask to the nearest surface voxel of the
other. HD is the maximum over both directions; HD95 is ``max(P95(pred -> gt), P95(gt -> pred))``,
the larger of the two *directed* 95th percentiles (linear interpolation), exactly as MONAI does
(it is not the percentile of the pooled distances). NSD (normalized surface Dice, Nikolov et al.)
counts surface voxels of both masks within ``tolerance_mm`` of the other surface, as MONAI's
``compute_surface_dice`` with ``use_subvoxels=False``.

The ``legacy_*`` functions reproduce the ICH-HPINet authors' per-slice "HD" (see
:func:`legacy_row_hausdorff`). It is **not** a Hausdorff distance and has no unit; it exists only
to place our numbers beside the paper's tables.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from ichseg.errors import ConfigError, DimensionalityError, GeometryError, IntensityError

# --- empty-mask conventions -------------------------------------------------------------------
DICE_BOTH_EMPTY: float = 1.0
DICE_ONE_EMPTY: float = 0.0
JACCARD_BOTH_EMPTY: float = 1.0
JACCARD_ONE_EMPTY: float = 0.0
HD_BOTH_EMPTY: float = 0.0
HD_ONE_EMPTY: float = math.nan  # undefined; flagged as ``hd_undefined`` by evaluate_case
NSD_BOTH_EMPTY: float = 1.0
NSD_ONE_EMPTY: float = 0.0
LEGACY_HD_BOTH_EMPTY: float = 0.0  # as the authors' code
LEGACY_HD_ONE_EMPTY: float = math.inf  # as the authors' code

SpacingLike = float | Sequence[float] | np.ndarray
Layout = Literal["zyx", "ijk"]


# --- input checking ---------------------------------------------------------------------------
def as_mask(array: np.ndarray, name: str = "mask") -> np.ndarray:
    """Return ``array`` as a boolean mask; raise :class:`IntensityError` unless it is binary.

    Accepts bool arrays and numeric arrays whose values are all 0 or 1. Probabilities and label
    maps with several labels are rejected (binarise first, e.g. ``prob >= 0.5``/``lab == 2``).
    """
    a = np.asarray(array)
    if a.dtype == bool:
        return a
    if a.dtype.kind not in "biuf":
        raise IntensityError(f"{name} has non-numeric dtype {a.dtype}")
    if a.size and a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise IntensityError(f"{name} contains NaN or infinite values")
    if a.size and not np.all((a == 0) | (a == 1)):
        bad = np.unique(a[(a != 0) & (a != 1)])[:5]
        raise IntensityError(
            f"{name} is not binary (found values such as {bad.tolist()}); "
            "threshold probabilities (e.g. prob >= 0.5) or select one label first"
        )
    return a.astype(bool)


def _pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = as_mask(pred, "prediction")
    g = as_mask(gt, "ground truth")
    if p.shape != g.shape:
        raise GeometryError(f"prediction shape {p.shape} does not match ground truth {g.shape}")
    if p.ndim < 1 or p.size == 0:
        raise DimensionalityError(f"masks must be non-empty arrays, got shape {p.shape}")
    return p, g


def as_spacing(spacing: SpacingLike, ndim: int) -> tuple[float, ...]:
    """Validate a voxel spacing (a scalar means isotropic) for ``ndim`` axes."""
    sp = np.atleast_1d(np.asarray(spacing, dtype=np.float64))
    if sp.ndim != 1:
        raise GeometryError(f"spacing must be a number or a 1D sequence, got shape {sp.shape}")
    if sp.size == 1:
        sp = np.repeat(sp, ndim)
    if sp.size != ndim:
        raise GeometryError(f"spacing has {sp.size} values but the masks have {ndim} axes")
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise GeometryError(f"spacing must be positive and finite, got {sp.tolist()}")
    return tuple(float(s) for s in sp)


# --- overlap ----------------------------------------------------------------------------------
def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice coefficient ``2|P∩G| / (|P| + |G|)`` over the whole array."""
    p, g = _pair(pred, gt)
    n_p, n_g = int(p.sum()), int(g.sum())
    if n_p == 0 and n_g == 0:
        return DICE_BOTH_EMPTY
    if n_p == 0 or n_g == 0:
        return DICE_ONE_EMPTY
    return 2.0 * int(np.logical_and(p, g).sum()) / (n_p + n_g)


def jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    """Jaccard index (IoU) ``|P∩G| / |P∪G|`` over the whole array."""
    p, g = _pair(pred, gt)
    n_p, n_g = int(p.sum()), int(g.sum())
    if n_p == 0 and n_g == 0:
        return JACCARD_BOTH_EMPTY
    if n_p == 0 or n_g == 0:
        return JACCARD_ONE_EMPTY
    return int(np.logical_and(p, g).sum()) / int(np.logical_or(p, g).sum())


# --- surfaces ---------------------------------------------------------------------------------
def surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels: foreground voxels removed by one face-connected erosion (border = 0)."""
    m = as_mask(mask)
    structure = ndimage.generate_binary_structure(m.ndim, 1)
    return m & ~ndimage.binary_erosion(m, structure=structure, border_value=0)


def _crop_to_union(p: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop both masks to the bounding box of their union plus a 1-voxel margin (exact)."""
    idx = np.argwhere(p | g)
    lo = np.maximum(idx.min(axis=0) - 1, 0)
    hi = np.minimum(idx.max(axis=0) + 2, p.shape)
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    return p[sl], g[sl]


def surface_distances(
    pred: np.ndarray, gt: np.ndarray, spacing: SpacingLike
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm: ``(pred -> gt, gt -> pred)``.

    Each array has one entry per surface voxel of the source mask (distance to the nearest
    surface voxel of the other mask). If a mask is empty, distances towards it are ``inf``.
    """
    p, g = _pair(pred, gt)
    sp = as_spacing(spacing, p.ndim)
    if not p.any() and not g.any():
        return np.zeros(0), np.zeros(0)
    p, g = _crop_to_union(p, g)
    sp_, sg = surface(p), surface(g)

    def directed(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        if not src.any():
            return np.zeros(0)
        if not dst.any():
            return np.full(int(src.sum()), np.inf)
        dist = ndimage.distance_transform_edt(~dst, sampling=sp)
        return np.asarray(dist[src], dtype=np.float64)

    return directed(sp_, sg), directed(sg, sp_)


def _empty_state(p: np.ndarray, g: np.ndarray) -> Literal["both", "one", "none"]:
    ep, eg = not p.any(), not g.any()
    if ep and eg:
        return "both"
    if ep or eg:
        return "one"
    return "none"


def hausdorff(pred: np.ndarray, gt: np.ndarray, spacing: SpacingLike) -> float:
    """Symmetric (maximum) Hausdorff distance between the mask surfaces, in mm."""
    return hd_percentile(pred, gt, spacing, percentile=None)


def hd95(pred: np.ndarray, gt: np.ndarray, spacing: SpacingLike) -> float:
    """95th-percentile Hausdorff distance in mm (MONAI definition, see module docstring)."""
    return hd_percentile(pred, gt, spacing, percentile=95.0)


def hd_percentile(
    pred: np.ndarray, gt: np.ndarray, spacing: SpacingLike, percentile: float | None = 95.0
) -> float:
    """``max`` over both directions of the directed ``percentile`` (None = max) surface distance."""
    if percentile is not None and not 0.0 <= percentile <= 100.0:
        raise ConfigError(f"percentile must lie in [0, 100], got {percentile}")
    p, g = _pair(pred, gt)
    state = _empty_state(p, g)
    if state == "both":
        return HD_BOTH_EMPTY
    if state == "one":
        return HD_ONE_EMPTY
    d_pg, d_gp = surface_distances(p, g, spacing)
    if percentile is None:
        return float(max(d_pg.max(), d_gp.max()))
    return float(max(np.percentile(d_pg, percentile), np.percentile(d_gp, percentile)))


def normalized_surface_dice(
    pred: np.ndarray, gt: np.ndarray, spacing: SpacingLike, tolerance_mm: float = 2.0
) -> float:
    """Normalized surface Dice: fraction of both surfaces within ``tolerance_mm`` of the other."""
    if not math.isfinite(tolerance_mm) or tolerance_mm < 0:
        raise ConfigError(f"tolerance_mm must be finite and >= 0, got {tolerance_mm}")
    p, g = _pair(pred, gt)
    state = _empty_state(p, g)
    if state == "both":
        return NSD_BOTH_EMPTY
    if state == "one":
        return NSD_ONE_EMPTY
    d_pg, d_gp = surface_distances(p, g, spacing)
    good = int((d_pg <= tolerance_mm).sum()) + int((d_gp <= tolerance_mm).sum())
    return good / (d_pg.size + d_gp.size)


# --- probabilities and volumes ----------------------------------------------------------------
def mae(prob: np.ndarray, gt: np.ndarray) -> float:
    """Mean absolute error between probabilities in [0, 1] and the binary GT, over all voxels."""
    pr = np.asarray(prob, dtype=np.float64)
    g = as_mask(gt, "ground truth")
    if pr.shape != g.shape:
        raise GeometryError(f"probability shape {pr.shape} does not match ground truth {g.shape}")
    if pr.size == 0:
        raise DimensionalityError("probability map is empty")
    if not np.all(np.isfinite(pr)) or pr.min() < 0.0 or pr.max() > 1.0:
        raise IntensityError("probabilities must be finite and lie in [0, 1]")
    return float(np.abs(pr - g).mean())


def volume_ml(
    mask: np.ndarray,
    spacing: SpacingLike | None = None,
    *,
    voxel_volume_ml: float | None = None,
) -> float:
    """Foreground volume in mL from the voxel ``spacing`` (mm) or a ``voxel_volume_ml``."""
    m = as_mask(mask)
    if (spacing is None) == (voxel_volume_ml is None):
        raise ConfigError("give exactly one of spacing or voxel_volume_ml")
    if voxel_volume_ml is None:
        voxel_volume_ml = float(np.prod(as_spacing(spacing, m.ndim))) / 1000.0  # type: ignore[arg-type]
    elif not math.isfinite(voxel_volume_ml) or voxel_volume_ml <= 0:
        raise GeometryError(f"voxel volume must be positive and finite, got {voxel_volume_ml}")
    return int(m.sum()) * float(voxel_volume_ml)


def abs_volume_error_ml(pred: np.ndarray, gt: np.ndarray, spacing: SpacingLike) -> float:
    """``|V(pred) - V(gt)|`` in mL."""
    p, g = _pair(pred, gt)
    return abs(volume_ml(p, spacing) - volume_ml(g, spacing))


# --- the authors' legacy "row Hausdorff" ------------------------------------------------------
def legacy_row_hausdorff(pred2d: np.ndarray, gt2d: np.ndarray) -> float:
    """The ICH-HPINet authors' per-slice "HD": NOT a Hausdorff distance between pixel sets.

    Each row of the ``H x W`` binary array is treated as one point in R^W; the value is the
    symmetric Hausdorff distance between the set of rows of ``pred2d`` and that of ``gt2d``, so the
    distance between two rows is sqrt(number of pixels in which they differ). It has no unit, is
    bounded by sqrt(largest per-row foreground count) and saturates; use it only to compare with
    the paper's tables. Both empty -> 0, exactly one empty -> inf (as the authors' code).
    """
    p, g = _pair(pred2d, gt2d)
    if p.ndim != 2:
        raise DimensionalityError(f"legacy row HD needs 2D slices, got shape {p.shape}")
    state = _empty_state(p, g)
    if state == "both":
        return LEGACY_HD_BOTH_EMPTY
    if state == "one":
        return LEGACY_HD_ONE_EMPTY
    a = np.unique(p, axis=0).astype(np.int64)
    b = np.unique(g, axis=0).astype(np.int64)
    # Hamming distance between every row of a and every row of b.
    ham = a @ (1 - b).T + (1 - a) @ b.T
    d = np.sqrt(ham.astype(np.float64))
    return float(max(d.min(axis=1).max(), d.min(axis=0).max()))


@dataclass(frozen=True)
class LegacyRowHD:
    """Slice-averaged legacy row-HD: mean over finite slices, with counts."""

    mean: float  #: mean over slices with a finite value (NaN if none)
    n_slices: int  #: slices where GT or prediction has foreground
    n_inf: int  #: of those, slices where exactly one mask is empty (skipped from the mean)


def _slices(a: np.ndarray, layout: Layout) -> np.ndarray:
    """``(n_slices, rows, cols)`` view with rows = image rows of the displayed slice."""
    if layout == "zyx":
        return a
    if layout == "ijk":
        return a.transpose(2, 1, 0)  # slice k displayed as a[:, :, k].T: rows = j, cols = i
    raise ConfigError(f"layout must be 'zyx' or 'ijk', got {layout!r}")


def legacy_slice_mean_row_hd(
    pred3d: np.ndarray, gt3d: np.ndarray, layout: Layout = "zyx"
) -> LegacyRowHD:
    """Average :func:`legacy_row_hausdorff` over axial slices where GT or prediction is non-empty.

    ``layout`` says how to find the axial slices: ``"zyx"`` (slices ``a[z]``, rows ``y``) or
    ``"ijk"`` (canonical LPS volume, slices displayed as ``a[:, :, k].T``, rows ``j``).
    Slices with an infinite value (exactly one mask empty) are skipped and counted.
    """
    p, g = _pair(pred3d, gt3d)
    if p.ndim != 3:
        raise DimensionalityError(f"expected 3D masks, got shape {p.shape}")
    ps, gs = _slices(p, layout), _slices(g, layout)
    values: list[float] = []
    n_slices = n_inf = 0
    for z in range(ps.shape[0]):
        if not (ps[z].any() or gs[z].any()):
            continue
        n_slices += 1
        v = legacy_row_hausdorff(ps[z], gs[z])
        if math.isinf(v):
            n_inf += 1
        else:
            values.append(v)
    mean = float(np.mean(values)) if values else math.nan
    return LegacyRowHD(mean=mean, n_slices=n_slices, n_inf=n_inf)


# --- bundles and aggregation ------------------------------------------------------------------
METRIC_KEYS: tuple[str, ...] = (
    "dice",
    "jaccard",
    "hd",
    "hd95",
    "nsd2mm",
    "mae",
    "vol_pred_ml",
    "vol_gt_ml",
    "abs_vol_err_ml",
    "legacy_row_hd",
)


def evaluate_case(
    pred_mask: np.ndarray,
    gt_mask: np.ndarray,
    spacing: SpacingLike,
    prob: np.ndarray | None = None,
    *,
    layout: Layout = "zyx",
    nsd_tolerance_mm: float = 2.0,
) -> dict[str, float]:
    """All per-scan metrics of one 3D prediction.

    Keys: ``dice, jaccard, hd, hd95`` (mm), ``nsd2mm``, ``mae`` (only if ``prob`` is given),
    ``vol_pred_ml, vol_gt_ml, abs_vol_err_ml``, ``legacy_row_hd`` (authors' per-slice row-HD
    mean; ``layout`` tells which axis is axial) and the flags/counts ``hd_undefined`` (1.0 when
    HD/HD95 are NaN because exactly one mask is empty), ``legacy_row_hd_slices`` and
    ``legacy_row_hd_inf``.
    """
    p, g = _pair(pred_mask, gt_mask)
    if p.ndim != 3:
        raise DimensionalityError(f"evaluate_case expects 3D masks, got shape {p.shape}")
    sp = as_spacing(spacing, p.ndim)
    state = _empty_state(p, g)
    out: dict[str, float] = {"dice": dice(p, g), "jaccard": jaccard(p, g)}
    if state == "none":
        d_pg, d_gp = surface_distances(p, g, sp)
        out["hd"] = float(max(d_pg.max(), d_gp.max()))
        out["hd95"] = float(max(np.percentile(d_pg, 95.0), np.percentile(d_gp, 95.0)))
        good = int((d_pg <= nsd_tolerance_mm).sum()) + int((d_gp <= nsd_tolerance_mm).sum())
        out["nsd2mm"] = good / (d_pg.size + d_gp.size)
    else:
        both = state == "both"
        out["hd"] = out["hd95"] = HD_BOTH_EMPTY if both else HD_ONE_EMPTY
        out["nsd2mm"] = NSD_BOTH_EMPTY if both else NSD_ONE_EMPTY
    if prob is not None:
        out["mae"] = mae(prob, g)
    out["vol_pred_ml"] = volume_ml(p, sp)
    out["vol_gt_ml"] = volume_ml(g, sp)
    out["abs_vol_err_ml"] = abs(out["vol_pred_ml"] - out["vol_gt_ml"])
    legacy = legacy_slice_mean_row_hd(p, g, layout)
    out["legacy_row_hd"] = legacy.mean
    out["hd_undefined"] = 1.0 if state == "one" else 0.0
    out["legacy_row_hd_slices"] = float(legacy.n_slices)
    out["legacy_row_hd_inf"] = float(legacy.n_inf)
    return out


@dataclass(frozen=True)
class MetricSummary:
    """Mean/std/median of one metric over cases, NaNs dropped and counted."""

    mean: float
    std: float  #: sample standard deviation (ddof=1); NaN with fewer than 2 values
    median: float
    n: int  #: finite values used
    n_nan: int  #: NaN values dropped


def summarize(values: Iterable[float]) -> MetricSummary:
    """Summarize per-case values of one metric (NaN-aware; ``inf`` is kept and propagates)."""
    v = np.asarray(list(values), dtype=np.float64)
    nan = np.isnan(v)
    ok = v[~nan]
    if ok.size == 0:
        return MetricSummary(math.nan, math.nan, math.nan, 0, int(nan.sum()))
    std = float(np.std(ok, ddof=1)) if ok.size > 1 else math.nan
    return MetricSummary(float(ok.mean()), std, float(np.median(ok)), int(ok.size), int(nan.sum()))


def aggregate_cases(cases: Iterable[Mapping[str, float]]) -> dict[str, MetricSummary]:
    """Summarize a list of :func:`evaluate_case` outputs, metric by metric."""
    rows = list(cases)
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    return {k: summarize(r.get(k, math.nan) for r in rows) for k in keys}
