"""Clinical hemorrhage volume quantification: planimetric mL, ABC/2, expansion, components.

* **Planimetric volume** = foreground voxel count x voxel volume (|det| of the affine's 3x3
  part, mm³) / 1000 -> mL. This is the reference measurement.
* **ABC/2** (Kothari et al., Stroke 1996) is computed automatically, on the volume reoriented to
  canonical LPS so the ``k`` axis is axial whatever the stored orientation: on the axial slice
  with the largest hemorrhage area (first one on ties), ``A`` = largest in-plane diameter, ``B`` =
  largest diameter perpendicular to ``A`` on that slice, ``C`` = weighted number of slices with
  hemorrhage x slice thickness (Kothari weighting: area >= 75 % of the largest counts 1,
  25–75 % counts 0.5, < 25 % counts 0; ``weighting="unweighted"`` counts every slice as 1).
  Volume = A·B·C/2 / 1000 mL. Diameters are measured on the pixel squares (edge to edge), the
  way calipers are laid on an image; ``B`` is the outer extent along the perpendicular line.
  The caliper endpoints are returned in voxel indices of the *input* grid and in RAS mm so a UI
  can draw them. Known biases: on an ellipsoid, Kothari-weighted ABC/2 gives about 0.65x the true
  volume (ellipsoid slices below 75 % area are down-weighted) and the unweighted form about
  0.95x; ABC/2 is unreliable for irregular, multilobar, IVH and SDH bleeds. Always show it next to
  the planimetric volume.
* **Expansion** between a baseline and a follow-up volume, with the common named definitions.
* **Components**: per connected component volume, slice extent and centroid.

Masks are :class:`~ichseg.io.volume.Volume` objects; foreground is ``array != 0`` (or
``array == label`` when a label is given).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull

from ichseg.errors import ConfigError, IntensityError
from ichseg.io.volume import Volume, to_canonical

Weighting = Literal["kothari", "unweighted"]

#: Kothari slice weights: (minimum fraction of the largest slice area, weight), highest first.
KOTHARI_WEIGHTS: tuple[tuple[float, float], ...] = ((0.75, 1.0), (0.25, 0.5), (0.0, 0.0))


def foreground(mask: Volume, label: int | None = None) -> np.ndarray:
    """Boolean foreground of a mask volume (``!= 0``, or ``== label``)."""
    a = mask.array
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)):
            raise IntensityError("mask contains NaN or infinite values")
        if label is None and not np.all((a == 0) | (a == 1)):
            raise IntensityError(
                "mask has non-integer values (a probability map or an image?); "
                "threshold it first (e.g. prob >= 0.5)"
            )
    elif a.dtype.kind not in "biu":
        raise IntensityError(f"mask has unsupported dtype {a.dtype}")
    return a != 0 if label is None else a == label


def planimetric_volume_ml(mask: Volume, label: int | None = None) -> float:
    """Foreground volume in mL: voxel count x |det(affine[:3, :3])| / 1000."""
    return int(foreground(mask, label).sum()) * mask.voxel_volume_ml


def volumes_by_label(mask: Volume) -> dict[int, float]:
    """Planimetric volume (mL) of every non-zero integer label (e.g. hemorrhage subtypes)."""
    a = mask.array
    if a.dtype.kind not in "biu" and not np.all(np.mod(a, 1) == 0):
        raise IntensityError("label volumes need integer labels")
    labels, counts = np.unique(a[a != 0].astype(np.int64), return_counts=True)
    return {int(lab): int(c) * mask.voxel_volume_ml for lab, c in zip(labels, counts, strict=True)}


def axial_axis(volume: Volume) -> int:
    """Index of the voxel axis closest to superior–inferior in ``volume``'s grid."""
    codes = nib.aff2axcodes(volume.affine)
    return next(n for n, c in enumerate(codes) if c in ("S", "I"))


# --- ABC/2 -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Caliper:
    """A measured diameter: length and endpoints (voxel indices of the input grid, RAS mm)."""

    length_mm: float
    ijk: np.ndarray  #: (2, 3) float voxel indices in the input volume's grid
    ras: np.ndarray  #: (2, 3) RAS world coordinates in mm

    def as_dict(self) -> dict[str, Any]:
        return {"length_mm": self.length_mm, "ijk": self.ijk.tolist(), "ras": self.ras.tolist()}


@dataclass(frozen=True)
class ABC2Result:
    """ABC/2 estimate with its measurements. All lengths in mm, volume in mL."""

    volume_ml: float
    a_mm: float
    b_mm: float
    c_mm: float
    weighting: str
    slice_thickness_mm: float
    n_slices: int  #: axial slices containing hemorrhage
    weighted_slices: float  #: C / slice thickness
    slice_axis: int  #: axial axis in the input grid
    slice_index: int  #: index of the largest-area slice along ``slice_axis`` (-1 if empty)
    max_area_mm2: float
    a: Caliper | None = None
    b: Caliper | None = None
    slice_weights: dict[int, float] = field(default_factory=dict)  #: input-grid index -> weight

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("a", "b")}
        out["a"] = self.a.as_dict() if self.a else None
        out["b"] = self.b.as_dict() if self.b else None
        return out


def _slice_weight(ratio: float, weighting: Weighting) -> float:
    if weighting == "unweighted":
        return 1.0
    for lo, w in KOTHARI_WEIGHTS:
        if ratio >= lo:
            return w
    return 0.0


def _longest_diameter(corners_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Endpoints of the largest distance between points (via the convex hull)."""
    hull = corners_mm[ConvexHull(corners_mm).vertices]
    d2 = ((hull[:, None, :] - hull[None, :, :]) ** 2).sum(axis=-1)
    a, b = np.unravel_index(int(np.argmax(d2)), d2.shape)
    return hull[a], hull[b]


def _perpendicular_extent(
    sl: np.ndarray, spacing: tuple[float, float], p0: np.ndarray, p1: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Longest extent of the slice mask along lines perpendicular to ``p0 -> p1`` (mm coords)."""
    sx, sy = spacing
    u = (p1 - p0) / np.linalg.norm(p1 - p0)
    v = np.array([-u[1], u[0]])
    ii, jj = np.nonzero(sl)
    corners = np.concatenate(
        [
            np.stack([(ii + di) * sx, (jj + dj) * sy], axis=1)
            for di in (-0.5, 0.5)
            for dj in (-0.5, 0.5)
        ]
    )
    t_all, s_all = corners @ u, corners @ v
    h = min(sx, sy) / 4.0
    ts = np.arange(t_all.min() + h, t_all.max(), 2.0 * h)
    ss = np.arange(s_all.min() + h / 2.0, s_all.max(), h)
    if ts.size == 0 or ss.size == 0:
        ts, ss = np.array([float(t_all.mean())]), np.array([float(s_all.mean())])
    pts = ts[:, None, None] * u + ss[None, :, None] * v  # (nt, ns, 2) in mm
    pi = np.floor(pts[..., 0] / sx + 0.5).astype(np.int64)
    pj = np.floor(pts[..., 1] / sy + 0.5).astype(np.int64)
    ok = (pi >= 0) & (pi < sl.shape[0]) & (pj >= 0) & (pj < sl.shape[1])
    inside = np.zeros(pi.shape, dtype=bool)
    inside[ok] = sl[pi[ok], pj[ok]]
    has = inside.any(axis=1)
    if not has.any():  # degenerate: fall back to the extent of the corners along v
        t0 = float(t_all.mean())
        return t0 * u + s_all.min() * v, t0 * u + s_all.max() * v
    first = np.argmax(inside, axis=1)
    last = ss.size - 1 - np.argmax(inside[:, ::-1], axis=1)
    length = np.where(has, ss[last] - ss[first] + h, -np.inf)
    best = int(np.argmax(length))
    t = ts[best]
    return t * u + (ss[first[best]] - h / 2.0) * v, t * u + (ss[last[best]] + h / 2.0) * v


def abc2(mask: Volume, weighting: Weighting = "kothari", label: int | None = None) -> ABC2Result:
    """Automatic Kothari ABC/2 volume estimate (see module docstring). Empty mask -> 0 mL."""
    if weighting not in ("kothari", "unweighted"):
        raise ConfigError(f"weighting must be 'kothari' or 'unweighted', got {weighting!r}")
    fg = foreground(mask, label)
    canon, _ = to_canonical(mask.with_array(fg.astype(np.uint8)))
    cfg = canon.array.astype(bool)
    sx, sy, sz = canon.spacing
    ax = axial_axis(mask)
    areas = cfg.sum(axis=(0, 1))
    if not areas.any():
        return ABC2Result(0.0, 0.0, 0.0, 0.0, weighting, sz, 0, 0.0, ax, -1, 0.0)

    to_input = np.linalg.inv(mask.affine) @ canon.affine  # canonical voxel -> input voxel

    def map_k(k: int) -> int:
        return round(float((to_input @ np.array([0.0, 0.0, k, 1.0]))[ax]))

    k_star = int(np.argmax(areas))
    max_area = int(areas[k_star])
    weights = {int(k): _slice_weight(areas[k] / max_area, weighting) for k in np.nonzero(areas)[0]}
    weighted = float(sum(weights.values()))
    sl = cfg[:, :, k_star]
    ii, jj = np.nonzero(sl)
    corners = np.concatenate(
        [
            np.stack([(ii + di) * sx, (jj + dj) * sy], axis=1)
            for di in (-0.5, 0.5)
            for dj in (-0.5, 0.5)
        ]
    )
    a0, a1 = _longest_diameter(corners)
    b0, b1 = _perpendicular_extent(sl, (sx, sy), a0, a1)

    def caliper(p: np.ndarray, q: np.ndarray) -> Caliper:
        ijk_c = np.array([[p[0] / sx, p[1] / sy, k_star], [q[0] / sx, q[1] / sy, k_star]])
        ijk_in = ijk_c @ to_input[:3, :3].T + to_input[:3, 3]
        return Caliper(float(np.linalg.norm(q - p)), ijk_in, canon.voxel_to_world(ijk_c))

    ca, cb = caliper(a0, a1), caliper(b0, b1)
    c_mm = weighted * sz
    volume = ca.length_mm * cb.length_mm * c_mm / 2.0 / 1000.0
    return ABC2Result(
        volume_ml=volume,
        a_mm=ca.length_mm,
        b_mm=cb.length_mm,
        c_mm=c_mm,
        weighting=weighting,
        slice_thickness_mm=sz,
        n_slices=len(weights),
        weighted_slices=weighted,
        slice_axis=ax,
        slice_index=map_k(k_star),
        max_area_mm2=max_area * sx * sy,
        a=ca,
        b=cb,
        slice_weights={map_k(k): w for k, w in weights.items()},
    )


# --- expansion ---------------------------------------------------------------------------------
#: Named hematoma-expansion definitions (see docs/peers notes for sources).
EXPANSION_CRITERIA: dict[str, str] = {
    "dowlatshahi": "growth > 6 mL or > 33 % (Dowlatshahi et al., Neurology 2011; default)",
    "kazui": "growth >= 12.5 mL or follow-up/baseline >= 1.4 (Kazui et al., Stroke 1996)",
    "jcm2025": "growth >= 12.5 mL or >= 30 % (J Clin Med 2025;14(13):4404)",
}
DEFAULT_EXPANSION_CRITERION = "dowlatshahi"
UHG_THRESHOLD_ML_PER_H = 9.3  #: ultra-early hematoma growth cut-off (Front Neurol 2021)
_THRESHOLD_TOLERANCE = 1e-9  #: mL and fractions: a value this close to a threshold is on it


@dataclass(frozen=True)
class ExpansionResult:
    """Change between a baseline and a follow-up hemorrhage volume."""

    baseline_ml: float
    followup_ml: float
    abs_change_ml: float  #: follow-up - baseline
    rel_change: float  #: (follow-up - baseline) / baseline; inf/NaN when baseline is 0
    ratio: float  #: follow-up / baseline; inf/NaN when baseline is 0
    flags: dict[str, bool]  #: criterion name -> expansion according to it
    criterion: str  #: the criterion used for :attr:`expanded`
    uhg_ml_per_h: float | None = None  #: baseline volume / onset-to-baseline-CT hours
    uhg_high: bool | None = None  #: uHG > 9.3 mL/h
    growth_ml_per_h: float | None = None  #: abs change / hours between the scans

    @property
    def expanded(self) -> bool:
        return self.flags[self.criterion]

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["expanded"] = self.expanded
        return out


def _check_ml(x: float, name: str) -> float:
    v = float(x)
    if not math.isfinite(v) or v < 0:
        raise ConfigError(f"{name} must be a finite volume >= 0 mL, got {x}")
    return v


def _check_hours(x: float | None, name: str) -> float | None:
    if x is None:
        return None
    v = float(x)
    if not math.isfinite(v) or v <= 0:
        raise ConfigError(f"{name} must be a positive number of hours, got {x}")
    return v


def expansion(
    baseline_ml: float,
    followup_ml: float,
    hours: float | None = None,
    *,
    interval_hours: float | None = None,
    criterion: str = DEFAULT_EXPANSION_CRITERION,
) -> ExpansionResult:
    """Hematoma expansion flags for every definition in :data:`EXPANSION_CRITERIA`.

    ``hours`` is the onset-to-baseline-CT time, used for ultra-early hematoma growth
    (uHG = baseline mL / hours, flagged above 9.3 mL/h); ``interval_hours`` (time between the two
    scans) gives the growth rate in mL/h. A baseline of 0 mL makes the relative change infinite
    (any new bleed is flagged as relative expansion).
    """
    if criterion not in EXPANSION_CRITERIA:
        raise ConfigError(
            f"unknown expansion criterion {criterion!r}; use one of {list(EXPANSION_CRITERIA)}"
        )
    v1 = _check_ml(baseline_ml, "baseline volume")
    v2 = _check_ml(followup_ml, "follow-up volume")
    h = _check_hours(hours, "onset-to-CT time")
    dh = _check_hours(interval_hours, "interval between scans")
    delta = v2 - v1
    if v1 > 0:
        rel, ratio = delta / v1, v2 / v1
    else:
        rel = ratio = math.inf if v2 > 0 else math.nan
    grows = delta > 0  # NaN comparisons below are False, so 0 -> 0 never expands
    # A threshold met exactly counts as met exactly: volumes are sums of voxel volumes, so
    # 3 -> 3.99 mL can come out as 33.000000000000007 %; compare with a tolerance far below
    # any measurable difference.
    eps = _THRESHOLD_TOLERANCE
    flags = {
        "dowlatshahi": bool(delta > 6.0 + eps or (grows and rel > 0.33 + eps)),
        "kazui": bool(delta >= 12.5 - eps or (grows and ratio >= 1.4 - eps)),
        "jcm2025": bool(delta >= 12.5 - eps or (grows and rel >= 0.30 - eps)),
    }
    uhg = v1 / h if h is not None else None
    return ExpansionResult(
        baseline_ml=v1,
        followup_ml=v2,
        abs_change_ml=delta,
        rel_change=rel,
        ratio=ratio,
        flags=flags,
        criterion=criterion,
        uhg_ml_per_h=uhg,
        uhg_high=(uhg > UHG_THRESHOLD_ML_PER_H) if uhg is not None else None,
        growth_ml_per_h=delta / dh if dh is not None else None,
    )


# --- components --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ComponentInfo:
    """One connected component of a mask (ordered by volume, largest first)."""

    index: int  #: 1-based rank by volume
    n_voxels: int
    volume_ml: float
    slice_axis: int  #: axial axis of the input grid
    slices: tuple[int, ...]  #: axial slice indices (input grid) the component occupies
    centroid_ijk: tuple[float, float, float]  #: voxel indices of the input grid
    centroid_ras: tuple[float, float, float]  #: RAS mm

    @property
    def n_slices(self) -> int:
        return len(self.slices)

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["slices"] = list(self.slices)
        out["n_slices"] = self.n_slices
        return out


def components_report(
    mask: Volume, connectivity: int = 3, label: int | None = None
) -> list[ComponentInfo]:
    """Per connected component: volume (mL), axial slices, centroid in voxels and RAS mm.

    ``connectivity`` 1 = faces (6-neighbourhood), 2 = edges (18), 3 = corners (26, default).
    An empty mask gives an empty list.
    """
    return label_components(mask, connectivity, label)[1]


def label_components(
    mask: Volume, connectivity: int = 3, label: int | None = None
) -> tuple[np.ndarray, list[ComponentInfo]]:
    """:func:`components_report` plus the component image: an ``int32`` array on the mask's
    grid whose value at a voxel is the :attr:`ComponentInfo.index` (rank) of its component."""
    if connectivity not in (1, 2, 3):
        raise ConfigError(f"connectivity must be 1, 2 or 3, got {connectivity}")
    fg = foreground(mask, label)
    labels, n = ndimage.label(fg, structure=ndimage.generate_binary_structure(3, connectivity))
    if n == 0:
        return np.zeros(mask.shape, dtype=np.int32), []
    ax = axial_axis(mask)
    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    coords = np.nonzero(labels)
    lab_vals = labels[coords]
    sums = [np.bincount(lab_vals, weights=c, minlength=n + 1)[1:] for c in coords]
    # a connected component occupies a contiguous run of slices along any axis
    boxes = ndimage.find_objects(labels)
    infos = []
    for lab in range(1, n + 1):
        cnt = int(counts[lab - 1])
        cen = np.array([s[lab - 1] / cnt for s in sums])
        ks = range(boxes[lab - 1][ax].start, boxes[lab - 1][ax].stop)  # type: ignore[index]
        infos.append(
            (
                cnt,
                lab,
                tuple(int(k) for k in ks),
                tuple(float(c) for c in cen),
                tuple(float(c) for c in mask.voxel_to_world(cen)[0]),
            )
        )
    infos.sort(key=lambda t: (-t[0], t[1]))
    rank_of = np.zeros(n + 1, dtype=np.int32)
    for rank, (_, lab, *_rest) in enumerate(infos, start=1):
        rank_of[lab] = rank
    ranked = rank_of[labels]
    return ranked, [
        ComponentInfo(
            index=rank,
            n_voxels=cnt,
            volume_ml=cnt * mask.voxel_volume_ml,
            slice_axis=ax,
            slices=ks,
            centroid_ijk=cen,  # type: ignore[arg-type]
            centroid_ras=ras,  # type: ignore[arg-type]
        )
        for rank, (cnt, _, ks, cen, ras) in enumerate(infos, start=1)
    ]


@dataclass(frozen=True)
class VolumeReport:
    """Everything a UI shows for one hemorrhage mask."""

    planimetric_ml: float
    abc2: ABC2Result
    components: list[ComponentInfo]

    def as_dict(self) -> dict[str, Any]:
        return {
            "planimetric_ml": self.planimetric_ml,
            "abc2": self.abc2.as_dict(),
            "components": [c.as_dict() for c in self.components],
        }


def volume_report(
    mask: Volume, weighting: Weighting = "kothari", label: int | None = None
) -> VolumeReport:
    """Planimetric volume, ABC/2 and the component list of one mask."""
    return VolumeReport(
        planimetric_volume_ml(mask, label),
        abc2(mask, weighting, label),
        components_report(mask, label=label),
    )
