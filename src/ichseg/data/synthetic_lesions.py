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

from ichseg.data.subtypes import Subtype
from ichseg.data.synthetic_anatomy import HeadAnatomy, _ell
from ichseg.data.synthetic_fields import F32, Box, RandomField3D, ScanGeometry

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


@dataclass
class RasterLesion:
    """A rasterised lesion on a full-resolution box of the ``(Z, Y, X)`` scan grid."""

    spec: LesionSpec
    box: Box
    fraction: np.ndarray  #: blood (or calcification) fraction, float32
    mask: np.ndarray  #: bool, voxel centre inside
    value: np.ndarray  #: HU of the lesion material
    edema_fraction: np.ndarray | None = None


def rasterize(
    spec: LesionSpec, geom: ScanGeometry, voxel_ml: float, delta: float = 0.5
) -> RasterLesion | None:
    """Sample a lesion on the scan grid; ``None`` if it misses the scan or has no room."""
    box = geom.box_of_head_box(spec.lo, spec.hi)
    if box.empty:
        return None
    sp, T = geom.spacing, geom.thickness
    zs = np.arange(box.z0, box.z1) * T
    ys = np.arange(box.y0, box.y1) * sp
    xs = np.arange(box.x0, box.x1) * sp
    x, y, z = geom.head_coords(zs, ys, xs)
    ez = geom.scanner_dir_in_head(2).astype(F32) * F32(delta)
    dc0, ds0 = spec.fields(x, y, z)
    dc1, ds1 = spec.fields(x + ez[0], y + ez[1], z + ez[2])
    allowed = dc0 < 0
    n_allowed = int(allowed.sum())
    if n_allowed == 0:
        return None
    if spec.target_ml is None:
        tau = F32(0.0)
    else:
        target = max(1, int(round(spec.target_ml / voxel_ml)))
        vals = ds0[allowed]
        if target >= vals.size:
            tau = F32(vals.max() + 1e-3)
        else:
            part = np.partition(vals, (target - 1, target))
            tau = F32(0.5 * (float(part[target - 1]) + float(part[target])))
    frac, mask = _fraction(dc0, dc1, ds0 - tau, ds1 - tau, T, delta)
    if not mask.any():
        return None
    value = np.full(box.shape, F32(spec.hu), dtype=F32)
    if spec.texture is not None and spec.heterogeneity > 0:
        value += F32(spec.heterogeneity) * spec.texture(x, y, z)
    edema = None
    if spec.edema_mm > 0:
        shift = F32(spec.edema_mm)
        edema, _ = _fraction(dc0, dc1, ds0 - tau - shift, ds1 - tau - shift, T, delta)
    return RasterLesion(spec, box, frac, mask, value, edema)


def _fraction(
    dc0: Arr, dc1: Arr, ds0: Arr, ds1: Arr, thickness: float, delta: float
) -> tuple[Arr, Arr]:
    d0 = np.maximum(dc0, ds0)
    d1 = np.maximum(dc1, ds1)
    w = np.abs(d1 - d0) * F32(thickness / delta)
    if d0.shape[1] > 1:
        w += np.abs(np.gradient(d0, axis=1))
    if d0.shape[2] > 1:
        w += np.abs(np.gradient(d0, axis=2))
    np.maximum(w, F32(1e-3), out=w)
    frac = F32(0.5) - d0 / w
    np.clip(frac, 0.0, 1.0, out=frac)
    return frac, d0 < 0


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
            lambda x, y, z, d, cb: (d > 1.0) & (d < 10.0) & (cb > 4) & ((y < -35) | (np.abs(x) > 40)),
        )
        if found is None:
            return None
        centre = found
    r = float((3.0 * target_ml * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0))
    axes = np.exp(rng.normal(0.0, 0.28, 3))
    axes /= np.prod(axes) ** (1.0 / 3.0)
    radii = r * axes
    rot = _random_rotation(rng)
    fragmented = rng.random() < (0.45 if kind == "contusion" else 0.2)
    lob = r * (rng.uniform(0.5, 0.85) if fragmented else rng.uniform(0.1, 0.4))
    sigma = r * (rng.uniform(0.22, 0.35) if fragmented else rng.uniform(0.3, 0.55))
    n_sat = int(rng.poisson(0.8 if kind != "contusion" else 1.5))
    sats = []
    for _ in range(n_sat):
        direction = _unit(rng.standard_normal(3))
        sats.append((centre + direction * r * rng.uniform(0.7, 1.5), r * rng.uniform(0.2, 0.5)))
    reach = r * (axes.max() + 0.6) + max([np.linalg.norm(s[0] - centre) + s[1] for s in sats] or [0])
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
    hu = float(np.clip(rng.normal(66.0, 6.0), 50.0, 82.0))
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
    )


def ivh_spec(
    rng: np.random.Generator, anat: HeadAnatomy, geom: ScanGeometry, target_ml: float
) -> LesionSpec:
    """Intraventricular blood: layering in the dependent horns, or a cast."""
    g = _unit(geom.scanner_dir_in_head(1)).astype(F32)  # posterior = down for a supine patient
    cast = rng.random() < 0.3
    lo, hi = anat.vent_lo.copy(), anat.vent_hi.copy()
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
        float(rng.uniform(52.0, 72.0)),
        2.0,
        tex,
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
    radius = float(np.clip((3.0 * target_ml * 1000.0 / (4.0 * np.pi * 0.06)) ** (1 / 3), 12, 60))
    half = radius * 1.6 + 4.0
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
    thick = rng.uniform(8.0, 26.0) if edh else rng.uniform(3.0, 14.0)
    mean_profile = 0.5 if edh else 0.33
    area = target_ml * 1000.0 / (mean_profile * thick)
    cos_t = 1.0 - area / (2.0 * np.pi * r_icc * r_icc)
    theta = float(np.clip(np.arccos(np.clip(cos_t, -1.0, 1.0)), np.deg2rad(12 if edh else 28), 1.5))
    if not edh:
        theta = min(theta, np.deg2rad(rng.uniform(55.0, 85.0)))
    power = F32(0.5 if edh else 1.0)
    u32 = u.astype(F32)
    inv_t2 = F32(1.0 / theta**2)
    centre = u * r_icc
    half = r_icc * np.sin(min(theta, np.pi / 2)) + 45.0
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
        ds = np.maximum(-d_icc, F32(0.0)) / np.maximum(prof, F32(0.01))
        return dc, ds

    lo = np.maximum(centre - half, [-80.0, -100.0, -80.0])
    hi = np.minimum(centre + half, [80.0, 100.0, 85.0])
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
