"""Rendering a :class:`~ichseg.data.synthetic_anatomy.HeadAnatomy` into a CT volume (HU).

Implicit fields are evaluated on a coarse in-plane grid (about 2 mm; slices are not resampled)
and only inside an envelope of the head. Each boundary becomes a footprint ratio ``u = d / w``
(see :mod:`ichseg.data.synthetic_fields`), is linearly up-sampled to full resolution inside the
layer's bounding box and turned into a partial-volume fraction there; tissues are composited from
the outside in (air, soft tissue, bone, CSF, brain, falx). Thin sheets (sulci, interhemispheric
fissure, falx) are up-sampled as signed fields and converted to exact slab coverage at full
resolution, so they neither alias nor vanish between coarse samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from ichseg.data.synthetic_anatomy import HeadAnatomy, TissueHU, _ell
from ichseg.data.synthetic_fields import F32, Box, ScanGeometry, smoothstep, upsample_box

_BIG = F32(1e3)


class Tissue(IntEnum):
    """Labels of the optional tissue map (dominant tissue of each voxel)."""

    AIR = 0
    SOFT = 1
    BONE = 2
    CSF = 3
    BRAIN = 4
    HEMORRHAGE = 5
    EDEMA = 6
    CALCIFICATION = 7
    DEVICE = 8
    MIXED = 9  #: partial-volume voxel without a dominant tissue
    DURA = 10  #: falx and dural venous sinuses (inside the cavity, denser than CSF)


class CoarseLayers:
    """Coarse-grid layer fields of a rendered head, up-sampled on demand for any full-res box."""

    def __init__(self, factor: int, grids: dict[str, np.ndarray], consts: dict[str, float]) -> None:
        self.factor = factor
        self.grids = grids
        self.consts = consts

    def up(self, name: str, box: Box) -> np.ndarray:
        return upsample_box(self.grids[name], self.factor, box)

    def icc_fraction(self, box: Box) -> np.ndarray:
        """Intracranial (CSF + brain) fraction on a full-res box."""
        return _frac(self.up("u_icc", box))

    def brain_fraction(self, box: Box, f_icc: np.ndarray | None = None) -> np.ndarray:
        """Brain-tissue fraction on a full-res box (sulci and fissure carved out)."""
        if f_icc is None:
            f_icc = self.icc_fraction(box)
        fb = _frac(self.up("u_brain", box))
        fb *= F32(1.0) - slab_coverage(self.up("a_s", box), self.up("b_s", box))
        fb *= F32(1.0) - slab_coverage(self.up("a_m", box), self.up("b_m", box))
        np.minimum(fb, f_icc, out=fb)
        return fb


@dataclass
class RenderedHead:
    """A rendered head: the float32 HU image ``(Z, Y, X)`` and its coarse layer fields."""

    image: np.ndarray
    layers: CoarseLayers
    tissue: np.ndarray | None = None  #: uint8 :class:`Tissue` map or ``None``
    holder: dict[str, float] = field(default_factory=dict)


def slab_coverage(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Fraction of a voxel covered by the slab ``|s| < t`` given ``a = s / w`` and ``b = t / w``.

    ``w`` is the variation of ``s`` across the voxel; the voxel sees ``s`` in ``[a - 1/2, a + 1/2]``
    (units of ``w``) and the slab occupies ``[-b, b]``; negative ``b`` means no slab.
    """
    hi = np.minimum(a + F32(0.5), b)
    lo = np.maximum(a - F32(0.5), -b)
    out = hi - lo
    np.clip(out, 0.0, 1.0, out=out)
    return out


class _Points:
    """A subset of the coarse grid evaluated as flat arrays, with scatter back to the grid."""

    def __init__(self, grid_shape: tuple[int, ...], flat_index: np.ndarray) -> None:
        self.grid_shape = grid_shape
        self.index = flat_index

    def grid(self, values: np.ndarray, default: float) -> np.ndarray:
        out = np.full(int(np.prod(self.grid_shape)), default, dtype=F32)
        out[self.index] = values
        return out.reshape(self.grid_shape)


def _unit_footprint(d: np.ndarray, step_mm: float, sp: float, thickness: float) -> np.ndarray:
    """``u = d / w`` for a signed-distance-like field on the coarse grid (``|grad d| ~ 1``)."""
    gy = np.gradient(d, step_mm, axis=1) if d.shape[1] > 1 else np.zeros_like(d)
    gx = np.gradient(d, step_mm, axis=2) if d.shape[2] > 1 else np.zeros_like(d)
    g2 = np.minimum(gx * gx + gy * gy, F32(1.0))
    w = F32(sp) * (np.abs(gx) + np.abs(gy)) + F32(thickness) * np.sqrt(F32(1.0) - g2)
    np.clip(w, sp, thickness + 2 * sp, out=w)
    return (d / w).astype(F32, copy=False)


def _signed_footprint(
    s0: np.ndarray, s1: np.ndarray, delta: float, step_mm: float, sp: float, thickness: float
) -> np.ndarray:
    """Footprint ``w`` of a smooth signed field from in-plane gradients and a z-difference."""
    gy = np.gradient(s0, step_mm, axis=1) if s0.shape[1] > 1 else np.zeros_like(s0)
    gx = np.gradient(s0, step_mm, axis=2) if s0.shape[2] > 1 else np.zeros_like(s0)
    gz = np.abs(s1 - s0) / F32(delta)
    w = F32(sp) * (np.abs(gx) + np.abs(gy)) + F32(thickness) * gz
    np.clip(w, 0.05 * sp, 3 * (thickness + 2 * sp), out=w)
    return w.astype(F32, copy=False)


def _layer_box(u: np.ndarray, factor: int, full_shape: tuple[int, int, int]) -> Box:
    """Full-res box covering coarse cells where the fraction can be non-zero (``u < 1``)."""
    m = u < 1.0
    if not m.any():
        return Box(0, 0, 0, 0, 0, 0)
    zs = np.flatnonzero(m.any(axis=(1, 2)))
    ys = np.flatnonzero(m.any(axis=(0, 2)))
    xs = np.flatnonzero(m.any(axis=(0, 1)))
    box = Box(
        int(zs[0]),
        int(zs[-1]) + 1,
        (int(ys[0]) - 1) * factor,
        (int(ys[-1]) + 2) * factor,
        (int(xs[0]) - 1) * factor,
        (int(xs[-1]) + 2) * factor,
    )
    return box.clip(full_shape)


def _frac(u: np.ndarray) -> np.ndarray:
    out = F32(0.5) - u
    np.clip(out, 0.0, 1.0, out=out)
    return out


def render_head(
    anat: HeadAnatomy,
    geom: ScanGeometry,
    lowres_mm: float,
    rng: np.random.Generator,
    *,
    holder_probability: float = 0.5,
    tissue_map: bool = False,
) -> RenderedHead:
    """Render the anatomy on the scan grid (no lesions, no noise). See the module docstring."""
    Z, Y, X = geom.shape_zyx
    sp, T = geom.spacing, geom.thickness
    f = max(1, round(lowres_mm / sp))
    yl, xl = -(-Y // f), -(-X // f)
    step = f * sp
    ys = (np.arange(yl) * f + (f - 1) / 2.0) * sp
    xs = (np.arange(xl) * f + (f - 1) / 2.0) * sp
    zs = np.arange(Z) * T
    hx, hy, hz = geom.head_coords(zs, ys, xs)
    gshape = (Z, yl, xl)
    margin = 4.0 + T + 2 * step
    env = np.minimum(
        _ell(hx, hy, hz, (0.0, -8.0, -15.0), (92.0, 120.0, 105.0)),
        _ell(hx, hy, hz, (0.0, 8.0, -118.0), (64.0, 66.0, 64.0)),
    )
    idx = np.flatnonzero(env.ravel() < margin)
    pts = _Points(gshape, idx)
    x, y, z = hx.ravel()[idx], hy.ravel()[idx], hz.ravel()[idx]
    del env

    tis = anat.tissue
    d_icc = anat.icc(x, y, z)
    t_sk = anat.skull_thickness(x, y, z)
    low = np.flatnonzero(z < -10.0)
    air = np.full(x.shape, _BIG, dtype=F32)
    orb = np.full(x.shape, _BIG, dtype=F32)
    globe = np.full(x.shape, _BIG, dtype=F32)
    if low.size:
        xl_, yl_, zl_ = x[low], y[low], z[low]
        air[low] = anat.air_cavities(xl_, yl_, zl_)
        o, g = anat.orbits(xl_, yl_, zl_)
        orb[low], globe[low] = o, g
    d_head = np.maximum(anat.head_outer(x, y, z, d_icc, t_sk), -air)
    d_bone = np.maximum(np.maximum(d_icc - t_sk, -orb), -air)
    # Thin bony walls around the sinuses and the back of the orbits (face only).
    orb_wall = np.maximum(np.maximum(orb - F32(1.5), -orb - F32(0.5)), F32(-72.0) - y)
    walls = np.minimum(np.maximum(air - F32(1.8), -air), orb_wall)
    walls = np.maximum(walls, np.maximum(z + F32(25.0), -F32(85.0) - y))
    d_bone = np.minimum(d_bone, walls)

    # Soft-tissue values (outside the cavity) and bone values.
    outer = np.flatnonzero(d_icc > -margin)
    v_soft = np.full(x.shape, tis.soft, dtype=F32)
    v_soft[outer] = anat.soft_value(
        x[outer], y[outer], z[outer], d_icc[outer], t_sk[outer], globe[outer], orb[outer]
    )
    base = smoothstep((F32(-26.0) - z) / F32(10.0))
    tex = anat.f_bone(x, y, z)
    v_dip = F32(tis.diploe) + F32(120.0) * tex
    v_dip = v_dip + (F32(tis.petrous) + F32(150.0) * tex - v_dip) * base * F32(0.8)

    # Brain fields inside the cavity.
    inner = np.flatnonzero(d_icc < margin)
    xi, yi, zi = x[inner], y[inner], z[inner]
    di = d_icc[inner]
    depth = -(di + F32(anat.gap))
    cb = anat.cerebellar(xi, yi, zi)
    vent = anat.ventricles(xi, yi, zi)
    cist = anat.cisterns(xi, yi, zi)
    mid = anat.midline(xi, yi, zi)
    sinus = anat.sinuses(xi, yi, zi, di, mid)
    csf_int = np.minimum(np.minimum(vent, cist), sinus)
    brainb = np.maximum(di + F32(anat.gap), -csf_int)
    s, w_s = anat.sulcal(xi, yi, zi, depth, cb)
    ez = geom.scanner_dir_in_head(2).astype(F32)
    delta = 0.5
    x2, y2, z2 = xi + F32(delta) * ez[0], yi + F32(delta) * ez[1], zi + F32(delta) * ez[2]
    s_dz, _ = anat.sulcal(x2, y2, z2, depth, cb)
    mid_dz = anat.midline(x2, y2, z2)
    floor_cc = anat.callosal_floor(yi)
    gate = smoothstep((zi - floor_cc) / F32(3.0)) * smoothstep((cb - F32(1.0)) / F32(3.0))
    ihf_w = F32(anat.ihf_width) * gate - F32(0.5) * (F32(1.0) - gate)
    ihf_dist = np.where(gate > 0.5, np.abs(mid) - F32(anat.ihf_width), _BIG)
    sulc_dist = np.abs(s) - w_s + F32(2.0) * np.maximum(depth - F32(anat.sulcus_depth), F32(0.0))
    v_brain = anat.brain_value(xi, yi, zi, depth, sulc_dist, cb, ihf_dist)
    v_csf = F32(tis.csf) + F32(tis.dura - tis.csf) * smoothstep(F32(0.5) - sinus / F32(1.5))

    def inner_grid(values: np.ndarray, default: float) -> np.ndarray:
        full = np.full(x.shape, default, dtype=F32)
        full[inner] = values
        return pts.grid(full, default)

    # Footprint ratios on the coarse grid.
    u_head = _unit_footprint(pts.grid(d_head, _BIG), step, sp, T)
    u_bone = _unit_footprint(pts.grid(d_bone, _BIG), step, sp, T)
    u_icc = _unit_footprint(pts.grid(d_icc, _BIG), step, sp, T)
    u_brain = _unit_footprint(inner_grid(brainb, _BIG), step, sp, T)
    s_g = inner_grid(s, _BIG)
    w_sul = _signed_footprint(s_g, inner_grid(s_dz, _BIG), delta, step, sp, T)
    a_s = s_g / w_sul
    b_s = inner_grid(w_s, 0.0) / w_sul
    m_g = inner_grid(mid, _BIG)
    w_mid = _signed_footprint(m_g, inner_grid(mid_dz, _BIG), delta, step, sp, T)
    a_m = m_g / w_mid
    b_m = inner_grid(ihf_w, -1.0) / w_mid

    grids = {
        "u_head": u_head,
        "u_bone": u_bone,
        "u_icc": u_icc,
        "u_brain": u_brain,
        "a_s": a_s,
        "b_s": b_s,
        "a_m": a_m,
        "b_m": b_m,
        "soft": pts.grid(v_soft, tis.soft),
        "diploe": pts.grid(v_dip, tis.diploe),
        "d_icc": pts.grid(d_icc, _BIG),
        "t_skull": pts.grid(t_sk, 5.0),
        "brain": inner_grid(v_brain, tis.white),
        "csf": inner_grid(v_csf, tis.csf),
    }
    layers = CoarseLayers(f, grids, {"falx_ratio": 0.45 / max(anat.ihf_width, 0.5)})
    image = np.full(geom.shape_zyx, -1000.0, dtype=F32)
    lab = np.zeros(geom.shape_zyx, dtype=np.uint8) if tissue_map else None
    for z0 in range(0, Z, _CHUNK):
        _composite_chunk(image, lab, layers, tis, z0, min(Z, z0 + _CHUNK))
    out = RenderedHead(image, layers, lab)
    if rng.random() < holder_probability:
        _add_head_holder(out, geom, u_head, f, rng)
    return out


_CHUNK = 4  # slices composited together (boxes adapt to the head's size on each chunk)


def _composite_chunk(
    image: np.ndarray,
    lab: np.ndarray | None,
    layers: CoarseLayers,
    tis: TissueHU,
    z0: int,
    z1: int,
) -> None:
    """Composite soft tissue, bone, CSF, brain and falx on slices ``z0:z1``."""
    f = layers.factor
    g = layers.grids
    shape = image.shape

    def box_of(name: str) -> Box:
        b = _layer_box(g[name][z0:z1], f, (z1 - z0, shape[1], shape[2]))
        return Box(b.z0 + z0, b.z1 + z0, b.y0, b.y1, b.x0, b.x1)

    hb = box_of("u_head")
    if hb.empty:
        return
    fr = _frac(layers.up("u_head", hb))
    v = layers.up("soft", hb)
    v += F32(1000.0)
    v *= fr
    v -= F32(1000.0)
    image[hb.slices] = v
    fracs: list[tuple[Box, np.ndarray]] = [(hb, fr)]
    # Bone: dense inner/outer tables around the diploe; basal bone dense throughout.
    bb = box_of("u_bone")
    if not bb.empty:
        fr = _frac(layers.up("u_bone", bb))
        dd = layers.up("d_icc", bb)
        tt = layers.up("t_skull", bb)
        vd = layers.up("diploe", bb)
        # Table weight: 1 within 1.6 mm of either surface of the bone, linear ramps of 0.8 mm.
        tt -= dd  # distance to the outer surface
        np.minimum(dd, tt, out=dd)
        dd *= F32(-1.0 / 0.8)
        dd += F32(1.6 / 0.8 + 0.5)
        np.clip(dd, 0.0, 1.0, out=dd)
        v = F32(tis.table) - vd
        v *= dd
        v += vd
        sub = image[bb.slices]
        v -= sub
        v *= fr
        sub += v
        fracs.append((bb, fr))
    ib = box_of("u_icc")
    if ib.empty:
        if lab is not None:
            _label_chunk(lab, fracs)
        return
    f_icc = layers.icc_fraction(ib)
    sub = image[ib.slices]
    v = layers.up("csf", ib)
    dural = (v > F32(tis.csf + 12.0)) if lab is not None else None
    v -= sub
    v *= f_icc
    sub += v
    am = layers.up("a_m", ib)
    bm = layers.up("b_m", ib)
    fb = _frac(layers.up("u_brain", ib))
    fb *= F32(1.0) - slab_coverage(layers.up("a_s", ib), layers.up("b_s", ib))
    fb *= F32(1.0) - slab_coverage(am, bm)
    np.minimum(fb, f_icc, out=fb)
    v = layers.up("brain", ib)
    v -= sub
    v *= fb
    sub += v
    bm *= F32(layers.consts["falx_ratio"])
    falx = slab_coverage(am, bm)
    falx *= f_icc
    v = F32(tis.dura) - sub
    v *= falx
    sub += v
    if lab is not None:
        fracs += [(ib, f_icc), (ib, fb)]
        _label_chunk(lab, fracs)
        lsub = lab[ib.slices]
        assert dural is not None
        lsub[(dural | (falx > 0.3)) & (lsub == Tissue.CSF)] = Tissue.DURA


#: A voxel gets a tissue label when that tissue fills at least this fraction of it.
PURE_FRACTION = 0.75


def _label_chunk(lab: np.ndarray, fracs: list[tuple[Box, np.ndarray]]) -> None:
    """Tissue labels from nested fractions (head > bone > cavity > brain) on the head box.

    Each tissue's own fraction is its layer's minus the next one's; voxels where no tissue
    reaches :data:`PURE_FRACTION` are labelled :attr:`Tissue.MIXED`.
    """
    hb = fracs[0][0]
    nested = []
    for box, fr in fracs:
        full = np.zeros(hb.shape, dtype=F32)
        z0, z1 = max(box.z0, hb.z0), min(box.z1, hb.z1)
        y0, y1 = max(box.y0, hb.y0), min(box.y1, hb.y1)
        x0, x1 = max(box.x0, hb.x0), min(box.x1, hb.x1)
        if z1 > z0 and y1 > y0 and x1 > x0:
            full[z0 - hb.z0 : z1 - hb.z0, y0 - hb.y0 : y1 - hb.y0, x0 - hb.x0 : x1 - hb.x0] = fr[
                z0 - box.z0 : z1 - box.z0, y0 - box.y0 : y1 - box.y0, x0 - box.x0 : x1 - box.x0
            ]
        nested.append(full)
    while len(nested) < 4:
        nested.append(np.zeros(hb.shape, dtype=F32))
    fh, fbo, fi, fb = nested
    own = np.stack([F32(1.0) - fh, fh - fbo, fbo - fi, fi - fb, fb])
    best = own.argmax(axis=0)
    names = np.array(
        [Tissue.AIR, Tissue.SOFT, Tissue.BONE, Tissue.CSF, Tissue.BRAIN], dtype=np.uint8
    )
    out = names[best]
    out[own.max(axis=0) < PURE_FRACTION] = Tissue.MIXED
    lab[hb.slices] = out


def _add_head_holder(
    out: RenderedHead, geom: ScanGeometry, u_head: np.ndarray, f: int, rng: np.random.Generator
) -> None:
    """A curved head holder (a thin dense arc behind the head, constant along z)."""
    _Z, Y, X = geom.shape_zyx
    sp = geom.spacing
    inside = (u_head < 0.5).any(axis=0)
    if not inside.any():
        return
    cy_l, cx_l = np.nonzero(inside)
    py = (cy_l * f + (f - 1) / 2.0) * sp
    px = (cx_l * f + (f - 1) / 2.0) * sp
    cx, cy = float(geom.centre[0]), float(geom.centre[1]) - rng.uniform(0.0, 25.0)
    radius = float(np.sqrt((px - cx) ** 2 + (py - cy) ** 2).max()) + rng.uniform(6.0, 18.0)
    thick = rng.uniform(2.0, 4.0)
    half_angle = np.deg2rad(rng.uniform(45.0, 80.0))
    hu = rng.uniform(150.0, 450.0)
    yy = (np.arange(Y) * sp)[:, None]
    xx = (np.arange(X) * sp)[None, :]
    r = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    ang = np.arctan2(xx - cx, yy - cy)  # 0 = straight posterior (+y)
    d = np.abs(r - radius) - thick / 2.0
    cover = np.clip(0.5 - d / sp, 0.0, 1.0) * np.clip((half_angle - np.abs(ang)) / 0.05, 0.0, 1.0)
    cover = cover.astype(F32)
    rows = np.flatnonzero(cover.any(axis=1))
    if rows.size == 0:
        return
    sub = out.image[:, rows, :]
    c = cover[rows][None]
    out.image[:, rows, :] = sub + c * (F32(hu) - sub)
    if out.tissue is not None:
        t = out.tissue[:, rows, :]
        t[np.broadcast_to(c > 0.5, t.shape)] = Tissue.DEVICE
        out.tissue[:, rows, :] = t
    out.holder = {"radius_mm": radius, "thickness_mm": thick, "hu": hu}
