"""Hemorrhages (five subtypes), perihematomal edema and calcifications for synthetic head CT.

A lesion is a pair of implicit fields in head coordinates: a *constraint* ``dc`` (where the blood
may be: brain, ventricles, subarachnoid CSF, one side of the intracranial cavity) and a *shape*
``ds`` (ellipsoid with lobulation and satellites, a gravity level, distance from a centre, a
thickness profile along the inner table). The blood is ``max(dc, ds - tau)`` < 0, where the level
``tau`` is chosen from the sampled voxels so that the lesion has exactly its target number of
voxels; the mask is the field's sign at voxel centres and the image gets the matching
partial-volume fraction (so a 0.5 threshold of the rendered blood fraction gives the mask).

Subtype models:

* IPH — deep (putamen, thalamus, caudate), lobar, cerebellar, pontine or cortical contusions;
  lobulated ellipsoids, optionally fragmented or with satellites; optional edema (not hemorrhage).
* IVH — blood layering in the dependent (posterior) horns of the ventricles, or a cast.
* SAH — blood filling sulci, fissures and cisterns around a basal, Sylvian or convexity centre.
* SDH — a crescent along the inner table of one hemisphere (thin, tapered edges).
* EDH — a biconvex lens along the inner table (compact, steep edges).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ichseg.data.subtypes import Subtype
from ichseg.data.synthetic_anatomy import HeadAnatomy, _ell
from ichseg.data.synthetic_fields import F32, Box, RandomField3D, ScanGeometry, upsample_box

Arr = np.ndarray
FieldFn = Callable[[Arr, Arr, Arr], tuple[Arr, Arr]]

_BIG = F32(1e3)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    a, b, c, d = q
    return np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
        ]
    )


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


def _unit_rows(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)


@dataclass
class LesionSpec:
    """A sampled lesion before rasterisation (head coordinates, mm)."""

    subtype: Subtype | None  #: ``None`` for calcifications (not hemorrhage)
    kind: str
    centre: np.ndarray
    lo: np.ndarray  #: head-frame bounding box of the region to sample
    hi: np.ndarray
    fields: FieldFn
    target_ml: float | None  #: ``None``: the level is fixed at 0 (no volume calibration)
    hu: float
    heterogeneity: float = 0.0
    texture: RandomField3D | None = None
    edema_mm: float = 0.0
    edema_hu: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)
    resolution_mm: float = 0.0  #: in-plane sampling of the fields (0 = full resolution)


@dataclass
class RasterLesion:
    """A rasterised lesion on a full-resolution box of the ``(Z, Y, X)`` scan grid."""

    spec: LesionSpec
    box: Box
    fraction: np.ndarray  #: blood (or calcification) fraction, float32
    mask: np.ndarray  #: bool, voxel centre inside
    value: np.ndarray  #: HU of the lesion material
    edema_fraction: np.ndarray | None = None


def _drop_specks(frac: Arr, mask: Arr, min_voxels: int) -> None:
    """Remove mask islands smaller than ``min_voxels`` (keeping the largest), in place.

    Their blood fraction is capped just below one half, so they stay visible as faint partial
    volume and the rule "mask = blood fraction > 0.5" still holds.
    """
    lab, n = ndi.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n <= 1:
        return
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    small = sizes < min_voxels
    small[int(sizes.argmax())] = False
    if not small[1:].any():
        return
    drop = small[lab]
    mask[drop] = False
    np.minimum(frac, F32(0.45), out=frac, where=drop)


def rasterize(
    spec: LesionSpec,
    geom: ScanGeometry,
    voxel_ml: float,
    delta: float = 0.5,
    min_island_ml: float = 0.03,
) -> RasterLesion | None:
    """Sample a lesion on the scan grid; ``None`` if it misses the scan or has no room.

    The fields are evaluated on an in-plane sub-grid of about ``spec.resolution_mm`` (full
    resolution for small lesions) and linearly up-sampled inside the lesion's box; the level that
    gives the target volume is chosen on the full-resolution samples.
    """
    box = geom.box_of_head_box(spec.lo, spec.hi)
    if box.empty:
        return None
    sp, T = geom.spacing, geom.thickness
    fr = max(1, round(spec.resolution_mm / sp))
    ny, nx = -(-box.shape[1] // fr), -(-box.shape[2] // fr)
    zs = np.arange(box.z0, box.z1) * T
    ys = (box.y0 + np.arange(ny) * fr + (fr - 1) / 2.0) * sp
    xs = (box.x0 + np.arange(nx) * fr + (fr - 1) / 2.0) * sp
    x, y, z = geom.head_coords(zs, ys, xs)
    ez = geom.scanner_dir_in_head(2).astype(F32) * F32(delta)
    dc0, ds0 = spec.fields(x, y, z)
    dc1, ds1 = spec.fields(x + ez[0], y + ez[1], z + ez[2])
    local = Box(0, box.shape[0], 0, box.shape[1], 0, box.shape[2])
    if fr > 1:
        DC = upsample_box(dc0, fr, local)
        DS = upsample_box(ds0, fr, local)
    else:
        DC, DS = dc0, ds0
    allowed = DC < 0
    n_allowed = int(allowed.sum())
    if n_allowed == 0:
        return None
    if spec.target_ml is None:
        tau = F32(0.0)
    else:
        target = max(1, round(spec.target_ml / voxel_ml))
        vals = DS[allowed]
        if target >= vals.size:
            tau = F32(vals.max() + 1e-3)
        else:
            part = np.partition(vals, (target - 1, target))
            tau = F32(0.5 * (float(part[target - 1]) + float(part[target])))
    w_max = 3.0 * (T + 2.0 * sp)

    def frac_mask(shift: np.float32) -> tuple[Arr, Arr]:
        d0 = np.maximum(dc0, ds0 - shift)
        d1 = np.maximum(dc1, ds1 - shift)
        w = np.abs(d1 - d0) * F32(T / delta)
        if d0.shape[1] > 1:
            w += np.abs(np.gradient(d0, axis=1)) * F32(1.0 / fr)
        if d0.shape[2] > 1:
            w += np.abs(np.gradient(d0, axis=2)) * F32(1.0 / fr)
        np.clip(w, 1e-3, w_max, out=w)
        if fr > 1:
            w = upsample_box(w, fr, local)
            D = np.maximum(DC, DS - shift)
        else:
            D = d0
        frac = F32(0.5) - D / w
        np.clip(frac, 0.0, 1.0, out=frac)
        return frac, D < 0

    frac, mask = frac_mask(tau)
    if not mask.any():
        return None
    _drop_specks(frac, mask, max(2, round(min_island_ml / voxel_ml)))
    if spec.texture is not None and spec.heterogeneity > 0:
        tex = F32(spec.heterogeneity) * spec.texture(x, y, z) + F32(spec.hu)
        value = upsample_box(tex, fr, local) if fr > 1 else tex
    else:
        value = np.full(box.shape, F32(spec.hu), dtype=F32)
    edema = None
    if spec.edema_mm > 0:
        edema, _ = frac_mask(F32(tau + spec.edema_mm))
    # Shrink to the region the lesion (or its edema) touches.
    touched = frac > 0 if edema is None else (frac > 0) | (edema > 0)
    zz = np.flatnonzero(touched.any(axis=(1, 2)))
    yy = np.flatnonzero(touched.any(axis=(0, 2)))
    xx = np.flatnonzero(touched.any(axis=(0, 1)))
    sl = (
        slice(int(zz[0]), int(zz[-1]) + 1),
        slice(int(yy[0]), int(yy[-1]) + 1),
        slice(int(xx[0]), int(xx[-1]) + 1),
    )
    tight = Box(
        box.z0 + sl[0].start,
        box.z0 + sl[0].stop,
        box.y0 + sl[1].start,
        box.y0 + sl[1].stop,
        box.x0 + sl[2].start,
        box.x0 + sl[2].stop,
    )
    return RasterLesion(
        spec,
        tight,
        np.ascontiguousarray(frac[sl]),
        np.ascontiguousarray(mask[sl]),
        np.ascontiguousarray(value[sl]),
        None if edema is None else np.ascontiguousarray(edema[sl]),
    )


# ---------------------------------------------------------------------------------- sampling
def _local_field(
    rng: np.random.Generator, centre: np.ndarray, half: float, sigma: float
) -> RandomField3D:
    spacing = float(np.clip(sigma / 2.0, 0.6, 4.0))
    lo = tuple(float(c - half - 2 * spacing) for c in centre)
    hi = tuple(float(c + half + 2 * spacing) for c in centre)
    return RandomField3D(rng, lo, hi, spacing, sigma)  # type: ignore[arg-type]


def _find_point(
    rng: np.random.Generator,
    anat: HeadAnatomy,
    lo: tuple[float, float, float],
    hi: tuple[float, float, float],
    ok: Callable[[Arr, Arr, Arr, Arr, Arr], Arr],
    n: int = 3000,
) -> np.ndarray | None:
    """Rejection-sample a point in a head box satisfying ``ok(x, y, z, depth, cb)``."""
    p = rng.uniform(lo, hi, size=(n, 3)).astype(F32)
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    depth = -(anat.icc(x, y, z) + F32(anat.gap))
    cb = anat.cerebellar(x, y, z)
    good = ok(x, y, z, depth, cb) & (anat.ventricles(x, y, z) > 3.0)
    idx = np.flatnonzero(good)
    if idx.size == 0:
        return None
    return p[int(idx[0])].astype(np.float64)


IPH_KINDS = ("deep", "lobar", "cerebellar", "brainstem", "contusion")
IPH_KIND_P = (0.42, 0.3, 0.08, 0.04, 0.16)


def iph_spec(
    rng: np.random.Generator,
    anat: HeadAnatomy,
    target_ml: float,
    kind: str,
    edema_probability: float,
) -> LesionSpec | None:
    """An intraparenchymal hematoma (or contusion) of ``target_ml``."""
    side = rng.choice([-1.0, 1.0])
    if kind == "deep":
        sites = [((24.0, -3.0, -1.0), 4.0), ((10.0, 10.0, 3.0), 3.0), ((14.0, -14.0, 8.0), 2.0)]
        c, jit = sites[int(rng.choice(3, p=[0.6, 0.3, 0.1]))]
        centre = np.array([side * c[0], c[1], c[2]]) + rng.normal(0, jit, 3)
    elif kind == "cerebellar":
        centre = np.array([side * 20.0, 42.0, -50.0]) + rng.normal(0, 4.0, 3)
    elif kind == "brainstem":
        centre = np.array([0.0, 13.0, -38.0]) + rng.normal(0, 2.0, 3)
    elif kind == "lobar":
        found = _find_point(
            rng,
            anat,
            (-65.0, -80.0, -25.0),
            (65.0, 85.0, 65.0),
            lambda x, y, z, d, cb: (d > 6) & (d < 28) & (cb > 6),
        )
        if found is None:
            return None
        centre = found
    else:  # contusion: cortical, frontal or temporal base
        found = _find_point(
            rng,
            anat,
            (-65.0, -85.0, -45.0),
            (65.0, 10.0, 15.0),
            lambda x, y, z, d, cb: (
                (d > 1.0) & (d < 10.0) & (cb > 4) & ((y < -35) | (np.abs(x) > 40))
            ),
        )
        if found is None:
            return None
        centre = found
    r = float((3.0 * target_ml * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0))
    axes = np.exp(rng.normal(0.0, 0.28, 3))
    axes /= np.prod(axes) ** (1.0 / 3.0)
    radii = r * axes
    rot = _random_rotation(rng)
    fragmented = rng.random() < (0.35 if kind == "contusion" else 0.12)
    lob = r * (rng.uniform(0.5, 0.85) if fragmented else rng.uniform(0.1, 0.4))
    sigma = r * (rng.uniform(0.22, 0.35) if fragmented else rng.uniform(0.3, 0.55))
    n_sat = int(rng.poisson(0.4 if kind != "contusion" else 1.0))
    sats = []
    for _ in range(n_sat):
        direction = _unit(rng.standard_normal(3))
        sats.append((centre + direction * r * rng.uniform(0.6, 1.25), r * rng.uniform(0.25, 0.55)))
    reach = r * (axes.max() + 0.6) + max(
        [np.linalg.norm(s[0] - centre) + s[1] for s in sats] or [0]
    )
    half = float(reach + lob + 3.0)
    tex = _local_field(rng, centre, half, max(sigma, 0.8))
    inv_r = (rot / radii[None, :]).T.astype(F32)  # local = inv_r @ (h - c)
    c32 = centre.astype(F32)
    gap = F32(anat.gap * 0.6)
    lobf = F32(lob)

    def fields(x: Arr, y: Arr, z: Arr) -> tuple[Arr, Arr]:
        px, py, pz = x - c32[0], y - c32[1], z - c32[2]
        qx = inv_r[0, 0] * px + inv_r[0, 1] * py + inv_r[0, 2] * pz
        qy = inv_r[1, 0] * px + inv_r[1, 1] * py + inv_r[1, 2] * pz
        qz = inv_r[2, 0] * px + inv_r[2, 1] * py + inv_r[2, 2] * pz
        ds = (np.sqrt(qx * qx + qy * qy + qz * qz) - F32(1.0)) * F32(r)
        for sc, sr in sats:
            ds = np.minimum(ds, _ell(x, y, z, tuple(sc), (sr, sr, sr)))
        ds = ds + lobf * tex(x, y, z)
        dc = anat.icc(x, y, z) + gap
        return dc, ds

    edema = 0.0
    if rng.random() < edema_probability:
        edema = float(rng.uniform(1.0, 4.0) + 0.5 * r * rng.uniform(0.0, 0.6))
    hu = float(np.clip(rng.normal(72.0, 5.0), 58.0, 88.0))
    het = float(rng.uniform(2.0, 5.0) if kind != "contusion" else rng.uniform(6.0, 10.0))
    if kind == "contusion":
        hu = float(rng.uniform(55.0, 68.0))
    return LesionSpec(
        Subtype.IPH,
        kind,
        centre,
        centre - half - edema,
        centre + half + edema,
        fields,
        target_ml,
        hu,
        het,
        tex,
        edema,
        float(anat.tissue.white - rng.uniform(6.0, 14.0)),
        {"radius_mm": r, "fragmented": bool(fragmented), "satellites": n_sat},
        resolution_mm=float(np.clip(r / 6.0, 0.0, 1.5)),
    )


def ivh_spec(
    rng: np.random.Generator, anat: HeadAnatomy, geom: ScanGeometry, target_ml: float
) -> LesionSpec:
    """Intraventricular blood: layering in the dependent horns, or a cast."""
    g = _unit(geom.scanner_dir_in_head(1)).astype(F32)  # posterior = down for a supine patient
    cast = rng.random() < 0.3
    lo, hi = anat.ventricle_bounds()
    centre = (lo + hi) / 2.0
    tex = _local_field(rng, centre, float((hi - lo).max() / 2.0), rng.uniform(4.0, 8.0))
    wt = F32(6.0 if cast else 1.0)
    wg = F32(0.2 if cast else 1.0)

    def fields(x: Arr, y: Arr, z: Arr) -> tuple[Arr, Arr]:
        dc = anat.ventricles(x, y, z) + F32(0.3)
        ds = -(x * g[0] + y * g[1] + z * g[2]) * wg + wt * tex(x, y, z)
        return dc, ds

    return LesionSpec(
        Subtype.IVH,
        "cast" if cast else "layering",
        centre,
        lo,
        hi,
        fields,
        target_ml,
        float(rng.uniform(60.0, 78.0)),
        2.0,
        tex,
        resolution_mm=1.0,
    )


def sah_spec(rng: np.random.Generator, anat: HeadAnatomy, target_ml: float) -> LesionSpec | None:
    """Subarachnoid blood in sulci, fissures and cisterns around a centre."""
    kind = str(rng.choice(["basal", "sylvian", "convexity"], p=[0.3, 0.25, 0.45]))
    side = rng.choice([-1.0, 1.0])
    if kind == "basal":
        centre = np.array([0.0, -6.0, -22.0]) + rng.normal(0, 4.0, 3)
    elif kind == "sylvian":
        centre = np.array([side * 42.0, -8.0, -10.0]) + rng.normal(0, 4.0, 3)
    else:
        found = _find_point(
            rng,
            anat,
            (-70.0, -80.0, -10.0),
            (70.0, 85.0, 70.0),
            lambda x, y, z, d, cb: (d > -1.0) & (d < 4.0) & (cb > 5),
        )
        if found is None:
            return None
        centre = found
    radius = float(np.clip((3.0 * target_ml * 1000.0 / (4.0 * np.pi * 0.1)) ** (1 / 3), 10, 50))
    half = radius * 1.25 + 3.0
    tex = _local_field(rng, centre, half, rng.uniform(5.0, 10.0))
    c32 = centre.astype(F32)

    def fields(x: Arr, y: Arr, z: Arr) -> tuple[Arr, Arr]:
        dc = anat.csf_space(x, y, z)
        r = np.sqrt((x - c32[0]) ** 2 + (y - c32[1]) ** 2 + (z - c32[2]) ** 2)
        ds = r * (F32(1.0) + F32(0.3) * tex(x, y, z))
        return dc, ds

    return LesionSpec(
        Subtype.SAH,
        kind,
        centre,
        centre - half,
        centre + half,
        fields,
        target_ml,
        float(rng.uniform(58.0, 78.0)),
        2.0,
        tex,
        resolution_mm=1.0,
    )


def extra_axial_spec(
    rng: np.random.Generator, anat: HeadAnatomy, target_ml: float, subtype: Subtype
) -> LesionSpec:
    """SDH (crescent) or EDH (lens) against the inner table of one hemisphere."""
    side = float(rng.choice([-1.0, 1.0]))
    edh = subtype == Subtype.EDH
    while True:
        u = _unit(rng.standard_normal(3))
        if edh:
            good = abs(u[0]) > 0.55 and -0.35 < u[2] < 0.55
        else:
            good = abs(u[0]) > 0.35 and -0.3 < u[2] < 0.75 and abs(u[1]) < 0.8
        if good:
            break
    u[0] = side * abs(u[0])
    r_icc = 70.0

    def cap_angle(area_mm2: float) -> float:
        cos_t = 1.0 - area_mm2 / (2.0 * np.pi * r_icc * r_icc)
        return float(np.arccos(np.clip(cos_t, -1.0, 1.0)))

    if edh:  # compact and thick: the thickness is drawn, the extent follows from the volume
        thick = rng.uniform(8.0, 26.0)
        theta = float(np.clip(cap_angle(target_ml * 1000.0 / (0.5 * thick)), np.deg2rad(10), 1.2))
    else:  # broad and thin: the extent is drawn, the thickness follows (at least 3 mm)
        theta = float(np.deg2rad(rng.uniform(45.0, 80.0)))
        area = 2.0 * np.pi * r_icc * r_icc * (1.0 - np.cos(theta))
        thick = target_ml * 1000.0 / (0.33 * area)
        if thick < 3.0:
            thick = 3.0
            theta = max(cap_angle(target_ml * 1000.0 / (0.33 * thick)), float(np.deg2rad(8)))
    power = F32(0.5 if edh else 1.0)
    u32 = u.astype(F32)
    inv_t2 = F32(1.0 / theta**2)
    centre = u * r_icc
    # Bounding box of the cap: directions within theta of u, radii 35..95 mm, one hemisphere.
    dirs = _unit_rows(rng.standard_normal((400, 3)))
    cosd = dirs @ u
    keep = dirs[cosd >= np.cos(min(theta * 1.05, np.pi))]
    keep = np.vstack([keep, u[None, :]])
    pts = np.concatenate([keep * 35.0, keep * 95.0])
    half = float(np.max(np.abs(pts - u * r_icc))) + 5.0
    tex = _local_field(rng, centre, half, 12.0)
    s32 = F32(side)

    def fields(x: Arr, y: Arr, z: Arr) -> tuple[Arr, Arr]:
        d_icc = anat.icc(x, y, z)
        dc = np.maximum(d_icc, F32(0.5) - s32 * anat.midline(x, y, z))
        r = np.sqrt(x * x + y * y + z * z)
        cosang = (x * u32[0] + y * u32[1] + z * u32[2]) / np.maximum(r, F32(1.0))
        ang = np.arccos(np.clip(cosang, -1.0, 1.0))
        prof = np.clip(F32(1.0) - ang * ang * inv_t2, 0.0, 1.0) ** power
        prof = prof * (F32(1.0) + F32(0.15) * tex(x, y, z))
        ds = (np.maximum(-d_icc, F32(0.0)) + F32(0.3)) / np.maximum(prof, F32(0.01))
        return dc, ds

    lo = np.maximum(np.minimum(pts.min(axis=0), centre) - 5.0, [-80.0, -100.0, -80.0])
    hi = np.minimum(np.maximum(pts.max(axis=0), centre) + 5.0, [80.0, 100.0, 85.0])
    if side > 0:
        lo[0] = max(lo[0], -5.0)
    else:
        hi[0] = min(hi[0], 5.0)
    hu = rng.uniform(58.0, 82.0) if edh else rng.uniform(50.0, 78.0)
    return LesionSpec(
        subtype,
        "lens" if edh else "crescent",
        centre,
        lo,
        hi,
        fields,
        target_ml,
        float(hu),
        3.0,
        tex,
        params={"max_thickness_mm": float(thick), "angle_deg": float(np.rad2deg(theta))},
        resolution_mm=1.5,
    )


def calcification_specs(rng: np.random.Generator, anat: HeadAnatomy, p: float) -> list[LesionSpec]:
    """Physiological calcifications (hard negatives): choroid plexus, pineal, pallidum, falx."""
    out: list[LesionSpec] = []

    def blob(kind: str, c: np.ndarray, r: np.ndarray, hu: float) -> LesionSpec:
        c32, rr = c.astype(F32), tuple(float(v) for v in r)

        def fields(x: Arr, y: Arr, z: Arr) -> tuple[Arr, Arr]:
            return np.full(x.shape, F32(-1.0), dtype=F32), _ell(x, y, z, tuple(c32), rr)

        half = float(np.max(r)) + 2.0
        return LesionSpec(None, kind, c, c - half, c + half, fields, None, hu)

    if rng.random() < p:
        for a in anat.atria:
            c = a + np.array([0.0, 1.0, 0.0]) + rng.normal(0.0, 1.0, 3)
            out.append(blob("choroid", c, rng.uniform(1.5, 3.5, 3), rng.uniform(90.0, 350.0)))
    if rng.random() < p:
        c = np.array([0.0, 17.0, 3.0]) + rng.normal(0.0, 1.5, 3)
        out.append(blob("pineal", c, rng.uniform(1.5, 3.0, 3), rng.uniform(80.0, 300.0)))
    if rng.random() < 0.15 * p:
        for s in (-1.0, 1.0):
            c = np.array([s * 18.0, -3.0, -3.0]) + rng.normal(0.0, 1.0, 3)
            out.append(blob("pallidum", c, rng.uniform(1.5, 3.0, 3), rng.uniform(70.0, 160.0)))
    if rng.random() < 0.2 * p:
        c = np.array([anat.mid_shift, rng.uniform(-40.0, 40.0), rng.uniform(25.0, 50.0)])
        r = np.array([0.8, rng.uniform(2.0, 6.0), rng.uniform(1.5, 4.0)])
        out.append(blob("falx", c, r, rng.uniform(150.0, 600.0)))
    return out
