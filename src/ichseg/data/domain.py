"""Domain randomisation of head CT (training) and fixed domain shifts (robustness benchmark).

The phantoms the network is trained on are raw-HU scans with skull, scalp, head holder and mild
correlated noise. Real scans reach us skull-stripped, windowed to ``0..255``, with other slice
thickness, field of view, reconstruction kernel or noise. This module simulates those shifts.

**(A) Array-level transforms** work on a canonical ``(Z, Y, X)`` float HU array ``hu``, an optional
``uint8`` mask of the same shape, the voxel size ``spacing_zyx`` in mm and, where random, an
explicit :class:`numpy.random.Generator`. They are pure (inputs are never modified) and return new
arrays, plus the new spacing where it changes. :func:`randomize` draws a random chain of them
from a :class:`DomainRandomization` config (for training on the network grid).

**(B) Volume-level fixed transforms** (:data:`ROBUSTNESS_TRANSFORMS`) take an image
:class:`~ichseg.io.volume.Volume` and its label mask and return ``(image, mask)`` with correct
affines; they are deterministic given the case id. Parameters are fixed and, where training
randomises the same effect, lie outside the training range unless the table says otherwise:

==========================  ===============================================  =========================
transform                   benchmark setting                                training (defaults)
==========================  ===============================================  =========================
``none``                    untouched                                        --
``skull_stripped_bg0``      intracranial + lesion voxels kept, rest 0 HU     p=0.15, bg 0 / -1000 /
                                                                             U(-1000, 0) (same kind)
``skull_stripped_bg-1000``  same, background -1000 HU                        (see above)
``windowed_0_255``          stored WINDOWED 40/80 -> 0..255 (uint8), window  p=0.2, level U(35, 50),
                            declared when loading                            width U(80, 100),
                                                                             256 or 86 levels
``slices_1mm``              resliced to 1 mm slices (linear)                 p=0.2, 2.5-7 mm
``slices_2.5mm``            2.5 mm (edge of the training range)              (see above)
``slices_10mm``             10 mm slices (thick-slab average)                (see above)
``cropped_fov``             in-plane box of 55 % of each side, lesion kept   p=0.1, keep 0.7-0.95
``wide_fov``                reconstructed over a 1.6x wider field of view    p=0.3, zoom 0.7-1.3
                            (same matrix, 1.6x larger pixels)
``noise_x2``                noise sigma doubled (added sigma = sqrt(3) x     p=0.5, sigma 0-15 HU
                            estimated, 1 px correlation)                     absolute (inside range)
``kernel_smooth``           Gaussian in-plane blur sigma 1.3 mm              p=0.15, 0.3-0.9 mm
``kernel_sharp``            unsharp mask amount 2.0, sigma 1.0 mm            p=0.15, 0.2-1.0 x 0.5-1 mm
``streaks``                 6 streaks per slice, amplitude 80 HU             p=0.15, 1-4 x 10-40 HU
``skull_defect``            150 deg arc over 60 % of the cranial slices,     p=0.1, 70-130 deg over
                            bone -> 30 HU soft tissue                        25-55 %, 15-45 HU or air
==========================  ===============================================  =========================

Geometry: transforms that change the grid (:func:`reslice_z`, :func:`zoom_inplane`,
:func:`crop_fov`) have index maps (:class:`IndexMap`) from which the Volume-level versions build the
exact new affine, so a voxel's world position is preserved.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError

from ichseg.errors import ConfigError, GeometryError
from ichseg.io.volume import Intensity, IntensityKind, Volume, Window, to_canonical

__all__ = [
    "ROBUSTNESS_NOTES",
    "ROBUSTNESS_TRANSFORMS",
    "DomainRandomization",
    "IndexMap",
    "add_noise",
    "apply_robustness",
    "case_rng",
    "crop_fov",
    "estimate_noise_sigma",
    "head_mask",
    "hu_affine",
    "intracranial_mask",
    "motion_ghost",
    "randomize",
    "reslice_z",
    "reslice_z_map",
    "sharp_kernel",
    "skull_defect",
    "skull_strip",
    "smooth_kernel",
    "streaks",
    "window_quantize",
    "zoom_inplane",
    "zoom_inplane_map",
]

Spacing = tuple[float, float, float]
F32 = np.float32
#: Voxels above this are bone (the skull, calcifications) for the intracranial estimate.
BONE_HU = 200.0
#: Voxels above this belong to the head (scalp, fat, skull, brain); below is air.
HEAD_HU = -300.0
#: In-plane connectivity only: components never join across slices.
_PLANE4 = np.zeros((3, 3, 3), bool)
_PLANE4[1] = ndi.generate_binary_structure(2, 1)
_PLANE8 = np.zeros((3, 3, 3), bool)
_PLANE8[1] = True


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def _as_hu(hu: np.ndarray) -> np.ndarray:
    a = np.asarray(hu, dtype=F32)
    if a.ndim != 3:
        raise GeometryError(f"expected a (Z, Y, X) array, got shape {a.shape}")
    return a


def _check_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise GeometryError(f"mask shape {m.shape} does not match image shape {tuple(shape)}")
    return m


def _spacing(spacing_zyx: Spacing) -> Spacing:
    sp = tuple(float(s) for s in spacing_zyx)
    if len(sp) != 3 or not all(math.isfinite(s) and s > 0 for s in sp):
        raise GeometryError(f"spacing_zyx must be three positive numbers, got {spacing_zyx!r}")
    return sp  # type: ignore[return-value]


def _largest_component(binary: np.ndarray) -> np.ndarray:
    """The largest 3D connected component (6-connectivity) of ``binary``."""
    lab, n = ndi.label(binary)
    if n == 0:
        return np.zeros(binary.shape, bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def head_mask(hu: np.ndarray, head_hu: float = HEAD_HU) -> np.ndarray:
    """The head (scalp, skull, brain): largest 3D component above ``head_hu`` (holder excluded)."""
    return _largest_component(_as_hu(hu) > head_hu)


def _hull_2d(m: np.ndarray) -> np.ndarray:
    """Filled convex hull of a 2D mask (from per-row extreme pixels)."""
    rows = np.flatnonzero(m.any(axis=1))
    out = m.copy()
    if rows.size < 2:
        return out
    sub = m[rows]
    first = sub.argmax(axis=1)
    last = m.shape[1] - 1 - sub[:, ::-1].argmax(axis=1)
    pts = np.concatenate([np.stack([rows, first], 1), np.stack([rows, last], 1)]).astype(float)
    try:
        hull = ConvexHull(pts)
    except (QhullError, ValueError):
        return out
    v = pts[hull.vertices]
    y0, x0 = v[:, 0], v[:, 1]
    y1, x1 = np.roll(y0, -1), np.roll(x0, -1)
    ys = np.arange(int(y0.min()), int(y0.max()) + 1)
    dy = np.where(y1 == y0, np.nan, y1 - y0)
    t = (ys[:, None] - y0[None, :]) / dy[None, :]
    on_edge = (t >= 0.0) & (t <= 1.0)
    xs = x0[None, :] + t * (x1 - x0)[None, :]
    left = np.where(on_edge, xs, np.inf).min(axis=1)
    right = np.where(on_edge, xs, -np.inf).max(axis=1)
    cols = np.arange(m.shape[1])
    out[ys] |= (cols[None, :] >= left[:, None] - 1e-6) & (cols[None, :] <= right[:, None] + 1e-6)
    return out


def _enclosed(walls: np.ndarray, min_voxels: float) -> np.ndarray:
    """Per-slice holes of ``walls``: in-plane components of ``~walls`` not touching the border."""
    lab, n = ndi.label(~walls, structure=_PLANE4)
    if n == 0:
        return np.zeros(walls.shape, bool)
    keep = np.bincount(lab.ravel(), minlength=n + 1) >= min_voxels
    border = np.unique(
        np.concatenate(
            [
                lab[:, 0, :].ravel(),
                lab[:, -1, :].ravel(),
                lab[:, :, 0].ravel(),
                lab[:, :, -1].ravel(),
            ]
        )
    )
    keep[border] = False
    keep[0] = False
    return keep[lab]


# ------------------------------------------------------------------------------------------
# (A) array-level transforms
# ------------------------------------------------------------------------------------------
def _bridged_holes(ring2d: np.ndarray, radius_px: float, min_px: float) -> np.ndarray:
    """Holes of a 2D ring after a morphological closing of ``radius_px`` (gaps < 2 radii)."""
    ys, xs = np.nonzero(ring2d)
    pad = math.ceil(radius_px) + 2
    y0, x0 = max(ys.min() - pad, 0), max(xs.min() - pad, 0)
    box = (slice(y0, ys.max() + pad + 1), slice(x0, xs.max() + pad + 1))
    r = np.pad(ring2d[box], 1)  # exterior always touches the border
    grown = ndi.distance_transform_edt(~r) <= radius_px
    closed = (ndi.distance_transform_edt(grown) > radius_px) | r
    out = np.zeros_like(ring2d)
    out[box] = _enclosed(closed[None], min_px)[0][1:-1, 1:-1]
    return out


def _ring_holes(
    ring: np.ndarray, sy: float, sx: float, min_area_mm2: float, open_ratio: float, bridge_mm: float
) -> np.ndarray:
    """Inside of the bone ring per slice (see :func:`intracranial_mask`)."""
    min_px = min_area_mm2 / (sy * sx)
    grown = ndi.maximum_filter(ring.view(np.uint8), size=(1, 3, 3))
    closed = ring | ndi.minimum_filter(grown, size=(1, 3, 3)).astype(bool)  # 3x3 closing
    holes = _enclosed(closed, min_px)
    for z in np.flatnonzero(ring.any(axis=(1, 2))):
        hull = _hull_2d(ring[z]) & ~ring[z]
        area = int(hull.sum())
        if area < min_px or holes[z].sum() >= open_ratio * area:
            continue
        bridged = _bridged_holes(ring[z], bridge_mm / math.sqrt(sy * sx), min_px)
        holes[z] = bridged if bridged.sum() >= open_ratio * area else hull
    return holes & ~ring


def _pool(m: np.ndarray, f: int, majority: bool) -> np.ndarray:
    """Boolean ``f x f`` in-plane pooling: any voxel (or the majority) of each block."""
    z, y, x = m.shape
    p = np.pad(m, ((0, 0), (0, -y % f), (0, -x % f)))
    count = np.zeros((z, p.shape[1] // f, p.shape[2] // f), np.uint8)
    for dy in range(f):
        for dx in range(f):
            count += p[:, dy::f, dx::f]
    return count * 2 >= f * f if majority else count > 0


def intracranial_mask(
    hu: np.ndarray,
    spacing_zyx: Spacing,
    *,
    bone_hu: float = BONE_HU,
    head_hu: float = HEAD_HU,
    min_area_mm2: float = 100.0,
    open_ratio: float = 0.25,
    bridge_mm: float = 10.0,
    coarse_mm: float = 2.0,
) -> np.ndarray:
    """Estimate of the inside of the skull, slice by slice (bool ``(Z, Y, X)``).

    Bone is ``hu > bone_hu`` within the head (:func:`head_mask` with ``head_hu``, so a separate
    head holder is ignored); 1-pixel gaps of the bone ring are closed in-plane; the intracranial
    space of a slice is the bone ring's holes of at least ``min_area_mm2`` (several compartments
    at the skull base). A ring is *open* when its holes cover less than ``open_ratio`` of the
    area inside the bone's convex hull; then gaps narrower than ``2 * bridge_mm`` are bridged
    (foramina and fissures of the skull base), and if that is not enough (a craniectomy, a
    partial-volume skull) the convex hull of the bone is used. Bone and air (< -500 HU) voxels
    are never inside. All-False when there is no bone (already skull-stripped input).

    Pixels finer than ``coarse_mm`` are pooled to about that size first (bone: any pixel of a
    block) and the coarse result is grown back to the inner table at full resolution.
    """
    a = _as_hu(hu)
    _, sy, sx = _spacing(spacing_zyx)
    bone = a > bone_hu
    f = max(1, int(coarse_mm / min(sy, sx) + 1e-9))
    args = (min_area_mm2, open_ratio, bridge_mm)
    if f == 1:
        ring = bone & head_mask(a, head_hu)
        if not ring.any():
            return np.zeros(a.shape, bool)
        holes = _ring_holes(ring, sy, sx, *args)
    else:
        head = _largest_component(_pool(a > head_hu, f, majority=True))
        ring = _pool(bone, f, majority=False) & head
        if not ring.any():
            return np.zeros(a.shape, bool)
        coarse = _ring_holes(ring, sy * f, sx * f, *args)
        up = np.repeat(np.repeat(coarse, f, axis=1), f, axis=2)[:, : a.shape[1], : a.shape[2]]
        holes = ndi.maximum_filter(up.view(np.uint8), size=(1, 2 * f + 1, 2 * f + 1)) > 0
    return holes & ~bone & (a > -500.0)


def skull_strip(
    hu: np.ndarray,
    spacing_zyx: Spacing,
    background: float = 0.0,
    *,
    keep: np.ndarray | None = None,
    intracranial: np.ndarray | None = None,
    bone_hu: float = BONE_HU,
) -> np.ndarray:
    """Keep the intracranial voxels (:func:`intracranial_mask`), set the rest to ``background``.

    Voxels of ``keep`` (pass the hemorrhage mask) are never stripped, so the ground truth stays
    visible: extra-axial blood next to the inner table has partial-volume voxels above
    ``bone_hu`` that the intracranial estimate leaves out.
    """
    a = _as_hu(hu)
    ic = (
        intracranial
        if intracranial is not None
        else intracranial_mask(a, spacing_zyx, bone_hu=bone_hu)
    )
    if ic.shape != a.shape:
        raise GeometryError(f"intracranial mask shape {ic.shape} does not match {a.shape}")
    inside = ic if keep is None else ic | (_check_mask(keep, a.shape) > 0)
    return np.where(inside, a, F32(background)).astype(F32)


def hu_affine(hu: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """Scanner calibration: ``scale * hu + offset``."""
    return (_as_hu(hu) * F32(scale) + F32(offset)).astype(F32)


def _gaussian_gain(sigma_px: float, truncate: float) -> float:
    """Std of 1D white noise of unit std after ``gaussian_filter1d`` with ``sigma_px``."""
    n = 2 * int(truncate * sigma_px + 0.5) + 1
    impulse = np.zeros(2 * n + 1)
    impulse[n] = 1.0
    k = ndi.gaussian_filter1d(impulse, sigma_px, truncate=truncate, mode="constant")
    return float(np.sqrt(np.sum(k**2)))


def add_noise(
    hu: np.ndarray, sigma_hu: float, corr_px: float, rng: np.random.Generator
) -> np.ndarray:
    """Add Gaussian noise of std ``sigma_hu``, smoothed in-plane with a Gaussian of ``corr_px``
    pixels (0: white) and re-scaled so its std is exactly ``sigma_hu`` in expectation."""
    a = _as_hu(hu)
    if sigma_hu < 0 or corr_px < 0:
        raise ConfigError(f"sigma_hu and corr_px must be >= 0, got {sigma_hu}, {corr_px}")
    if sigma_hu == 0:
        return a.copy()
    noise = rng.standard_normal(a.shape, dtype=F32)
    gain = 1.0
    if corr_px > 0:
        truncate = 3.0
        for axis in (1, 2):
            noise = ndi.gaussian_filter1d(noise, corr_px, axis=axis, truncate=truncate)
        gain = _gaussian_gain(corr_px, truncate) ** 2
    noise *= F32(sigma_hu / gain)
    return a + noise


def smooth_kernel(hu: np.ndarray, sigma_mm: float, spacing_zyx: Spacing) -> np.ndarray:
    """A softer reconstruction kernel: in-plane Gaussian blur of ``sigma_mm``."""
    a = _as_hu(hu)
    _, sy, sx = _spacing(spacing_zyx)
    if sigma_mm <= 0:
        return a.copy()
    return ndi.gaussian_filter(a, (0.0, sigma_mm / sy, sigma_mm / sx), truncate=3.0)


def sharp_kernel(
    hu: np.ndarray, amount: float, sigma_mm: float, spacing_zyx: Spacing
) -> np.ndarray:
    """A sharper kernel: unsharp mask ``hu + amount * (hu - blur_sigma_mm(hu))`` (amplifies noise)."""
    a = _as_hu(hu)
    blur = smooth_kernel(a, sigma_mm, spacing_zyx)
    return (a + F32(amount) * (a - blur)).astype(F32)


def streaks(
    hu: np.ndarray,
    amplitude_hu: float,
    n: int,
    rng: np.random.Generator,
    spacing_zyx: Spacing,
    *,
    width_mm: tuple[float, float] = (0.8, 2.5),
    head_hu: float = HEAD_HU,
) -> np.ndarray:
    """Beam-hardening-like straight streaks through the head centre, ``n`` per slice.

    Each streak has a random angle, sign (dark or bright), amplitude ``U(0.5, 1) * amplitude_hu``,
    Gaussian cross-profile of ``width_mm`` and fades as ``exp(-d / R)`` with the distance ``d``
    from the (jittered) head centre, ``R`` the head's equivalent radius on that slice. Only voxels
    of the head (:func:`head_mask` with ``head_hu``) change.
    """
    a = _as_hu(hu)
    _, sy, sx = _spacing(spacing_zyx)
    out = a.copy()
    if n <= 0 or amplitude_hu == 0:
        return out
    head = head_mask(a, head_hu)
    for z in range(a.shape[0]):
        hz = head[z]
        rows = np.flatnonzero(hz.any(axis=1))
        if rows.size == 0:
            continue
        cols = np.flatnonzero(hz.any(axis=0))
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        yy = (np.arange(y0, y1, dtype=F32) * F32(sy))[:, None]
        xx = (np.arange(x0, x1, dtype=F32) * F32(sx))[None, :]
        ys, xs = np.nonzero(hz[y0:y1, x0:x1])
        cy, cx = float((ys.mean() + y0) * sy), float((xs.mean() + x0) * sx)
        radius = max(math.sqrt(ys.size * sy * sx / math.pi), 1.0)
        field = np.zeros((y1 - y0, x1 - x0), F32)
        for _ in range(int(n)):
            ang = rng.uniform(0.0, math.pi)
            amp = amplitude_hu * rng.uniform(0.5, 1.0) * (1.0 if rng.random() < 0.5 else -1.0)
            w = rng.uniform(*width_mm)
            jy, jx = rng.normal(0.0, 0.1 * radius, 2)
            dy, dx = yy - F32(cy + jy), xx - F32(cx + jx)
            perp = dy * F32(math.cos(ang)) - dx * F32(math.sin(ang))
            along = np.abs(dy * F32(math.sin(ang)) + dx * F32(math.cos(ang)))
            field += F32(amp) * np.exp(-0.5 * (perp / F32(w)) ** 2 - along / F32(radius))
        out[z, y0:y1, x0:x1] += field * hz[y0:y1, x0:x1]
    return out


def _shift2d(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Shift the last two axes by whole pixels, repeating the edge values."""
    py, px = abs(dy), abs(dx)
    padded = np.pad(a, ((0, 0), (py, py), (px, px)), mode="edge")
    y, x = py - dy, px - dx
    return padded[:, y : y + a.shape[1], x : x + a.shape[2]]


def motion_ghost(
    hu: np.ndarray, shift_px: float, weight: float, rng: np.random.Generator
) -> np.ndarray:
    """Motion ghost: on a random contiguous third-or-more of the slices, blend in a copy shifted
    by ``shift_px`` pixels in a random in-plane direction: ``(1 - weight) * hu + weight * shifted``.
    """
    a = _as_hu(hu)
    if not 0.0 <= weight <= 1.0:
        raise ConfigError(f"weight must be in [0, 1], got {weight}")
    nz = a.shape[0]
    length = int(rng.integers(max(1, nz // 3), nz + 1))
    start = int(rng.integers(0, nz - length + 1))
    ang = rng.uniform(0.0, 2.0 * math.pi)
    dy, dx = round(shift_px * math.sin(ang)), round(shift_px * math.cos(ang))
    out = a.copy()
    slab = a[start : start + length]
    out[start : start + length] = (1.0 - weight) * slab + weight * _shift2d(slab, dy, dx)
    return out


def skull_defect(
    hu: np.ndarray,
    spacing_zyx: Spacing,
    rng: np.random.Generator,
    fill_hu: float = 30.0,
    *,
    arc_deg: tuple[float, float] = (70.0, 130.0),
    z_fraction: tuple[float, float] = (0.25, 0.55),
    noise_hu: float = 3.0,
    bone_hu: float = BONE_HU,
    keep: np.ndarray | None = None,
    intracranial: np.ndarray | None = None,
) -> np.ndarray:
    """Craniectomy: remove the skull over an arc on a contiguous range of cranial slices.

    Slices whose intracranial area is at least half the largest are candidates; a contiguous run
    of ``U(z_fraction)`` of them is chosen. On each, the bone (``> bone_hu``, and its
    partial-volume rim above ``min(120, bone_hu)`` HU) outside the intracranial space, within an
    angular sector of ``U(arc_deg)`` degrees around the slice's intracranial centroid, becomes
    ``fill_hu`` (soft tissue ~30 HU, or -1000 for air) plus Gaussian noise of ``noise_hu``. The
    intracranial space and the voxels of ``keep`` (pass the hemorrhage mask: extra-axial blood
    mixed with bone lies outside the estimate) are untouched.
    """
    a = _as_hu(hu)
    out = a.copy()
    ic = (
        intracranial
        if intracranial is not None
        else intracranial_mask(a, spacing_zyx, bone_hu=bone_hu)
    )
    area = ic.sum(axis=(1, 2))
    if area.max() == 0:
        return out
    cand = np.flatnonzero(area >= 0.5 * area.max())
    n = max(1, round(rng.uniform(*z_fraction) * cand.size))
    first = int(rng.integers(0, cand.size - n + 1))
    zs = cand[first : first + n]
    centre = rng.uniform(-math.pi, math.pi)
    half = math.radians(rng.uniform(*arc_deg)) / 2.0
    cavity = _fill_per_slice(ic[zs])
    rim = min(120.0, bone_hu)
    bone = ndi.binary_dilation(a[zs] > bone_hu, structure=_PLANE8) & (a[zs] > rim) & ~cavity
    if keep is not None:
        bone &= _check_mask(keep, a.shape)[zs] == 0
    yy, xx = np.mgrid[0 : a.shape[1], 0 : a.shape[2]]
    for i, z in enumerate(zs):
        ys, xs = np.nonzero(ic[z])
        ang = np.arctan2(yy - ys.mean(), xx - xs.mean())
        sector = np.abs(np.angle(np.exp(1j * (ang - centre)))) <= half
        region = bone[i] & sector
        k = int(region.sum())
        if k:
            out[z][region] = F32(fill_hu) + rng.normal(0.0, noise_hu, k).astype(F32)
    return out


def _fill_per_slice(m: np.ndarray) -> np.ndarray:
    return m | _enclosed(m, 1)


@dataclass(frozen=True)
class IndexMap:
    """``old_index = offset + scale * new_index`` per axis ``(Z, Y, X)`` of a resampled grid."""

    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def affine_ijk(self) -> np.ndarray:
        """4x4 matrix mapping new canonical ``(i, j, k)`` = ``(X, Y, Z)`` to old ``(i, j, k)``."""
        m = np.eye(4)
        m[0, 0], m[1, 1], m[2, 2] = self.scale[2], self.scale[1], self.scale[0]
        m[:3, 3] = self.offset[2], self.offset[1], self.offset[0]
        return m


def _axis_weights(
    n_in: int, n_out: int, scale: float, offset: float, clamp: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Dense ``(n_out, n_in)`` resampling weights for ``q = offset + scale * p``.

    ``scale <= 1`` (finer output): linear interpolation at ``q``; ``scale > 1`` (coarser output):
    box average of the input pixels (each a unit box) over ``[q - scale/2, q + scale/2]``. With
    ``clamp`` the edge pixels extend forever; otherwise the out-of-range part is returned as the
    second array (fraction of each output's weight lying outside the input, for a fill value).
    """
    p = np.arange(n_out, dtype=np.float64)
    q = offset + scale * p
    w = np.zeros((n_out, n_in))
    if scale <= 1.0:
        qc = np.clip(q, 0, n_in - 1) if clamp else q
        i0 = np.floor(qc).astype(int)
        f = qc - i0
        for idx, wt in ((i0, 1.0 - f), (i0 + 1, f)):
            ok = (idx >= 0) & (idx < n_in)
            np.add.at(w, (p[ok].astype(int), idx[ok]), wt[ok])
        if clamp:  # q exactly at n_in - 1 puts weight 0 on index n_in: nothing lost
            w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    else:
        lo, hi = q - scale / 2.0, q + scale / 2.0
        if clamp:
            lo, hi = np.clip(lo, -0.5, n_in - 0.5), np.clip(hi, -0.5, n_in - 0.5)
        edges = np.arange(n_in + 1) - 0.5
        overlap = np.clip(
            np.minimum(hi[:, None], edges[None, 1:]) - np.maximum(lo[:, None], edges[None, :-1]),
            0.0,
            None,
        )
        if clamp:
            w = overlap / np.maximum(overlap.sum(axis=1, keepdims=True), 1e-12)
        else:
            w = overlap / scale
    outside = np.clip(1.0 - w.sum(axis=1), 0.0, 1.0)
    return w.astype(F32), outside.astype(F32)


def _binarize(frac: np.ndarray, tol: float = 1e-4) -> np.ndarray:
    """Resampled mask fraction -> ``uint8`` mask: ``> 0.5`` is in, ``< 0.5`` out.

    Voxels exactly half inside (common when two thin slices make one thick slice, or a new slice
    falls midway between two) are split per slice so that half of them are kept, the innermost
    first (largest in-plane distance to the outside, then most core neighbours): the contour
    runs between the two source contours and the volume is unbiased (keeping all ties would grow
    a lesion by its top and bottom surfaces, dropping them would shrink it as much).
    """
    out = frac > 0.5 + tol
    tie = np.abs(frac - 0.5) <= tol
    for z in np.flatnonzero(tie.any(axis=(1, 2))):
        region = out[z] | tie[z]
        ys, xs = np.nonzero(region)
        box = (slice(max(ys.min() - 1, 0), ys.max() + 2), slice(max(xs.min() - 1, 0), xs.max() + 2))
        t, core = tie[z][box], out[z][box]
        depth = ndi.distance_transform_edt(region[box])
        support = ndi.uniform_filter(core.astype(F32), 3)
        idx = np.flatnonzero(t)
        order = np.lexsort((-support.ravel()[idx], -depth.ravel()[idx]))
        keep = idx[order[: (idx.size + 1) // 2]]
        sub = out[z][box]
        sub.flat[keep] = True
        out[z][box] = sub
    return out.astype(np.uint8)


def reslice_z_map(n_slices: int, spacing_z: float, thickness_mm: float) -> tuple[int, IndexMap]:
    """Number of new slices and the z index map of :func:`reslice_z` (same stack extent and
    centre, contiguous slices of ``thickness_mm``)."""
    if thickness_mm <= 0:
        raise ConfigError(f"thickness_mm must be > 0, got {thickness_mm}")
    extent = n_slices * spacing_z
    n_new = max(1, round(extent / thickness_mm))
    step = thickness_mm / spacing_z
    offset = (n_slices - 1) / 2.0 - step * (n_new - 1) / 2.0
    return n_new, IndexMap((step, 1.0, 1.0), (offset, 0.0, 0.0))


def reslice_z(
    hu: np.ndarray, mask: np.ndarray | None, spacing_zyx: Spacing, thickness_mm: float
) -> tuple[np.ndarray, np.ndarray | None, Spacing]:
    """Resample to contiguous slices of ``thickness_mm`` covering the same z extent.

    Thicker slices average the thin ones they overlap (partial volume, box model); thinner
    slices interpolate linearly. The mask is resampled with the same weights and kept where the
    fraction is above 0.5; voxels exactly half inside are split evenly (see :func:`_binarize`).
    """
    a = _as_hu(hu)
    m = _check_mask(mask, a.shape)
    sz, sy, sx = _spacing(spacing_zyx)
    n_new, imap = reslice_z_map(a.shape[0], sz, thickness_mm)
    w, _ = _axis_weights(a.shape[0], n_new, imap.scale[0], imap.offset[0], clamp=True)
    out = np.tensordot(w, a, axes=(1, 0)).astype(F32)
    new_mask = None
    if m is not None:
        frac = np.tensordot(w, (m > 0).astype(F32), axes=(1, 0))
        new_mask = _binarize(frac)
    return out, new_mask, (float(thickness_mm), sy, sx)


def _resample_yx(
    a: np.ndarray,
    out_shape: tuple[int, int],
    imap: IndexMap,
    fill: float,
) -> np.ndarray:
    wy, oy = _axis_weights(a.shape[1], out_shape[0], imap.scale[1], imap.offset[1], clamp=False)
    wx, ox = _axis_weights(a.shape[2], out_shape[1], imap.scale[2], imap.offset[2], clamp=False)
    out = np.matmul(np.matmul(wy, a), wx.T)
    if fill != 0.0 and (oy.any() or ox.any()):
        inside = np.outer(1.0 - oy, 1.0 - ox).astype(F32)
        out += F32(fill) * (1.0 - inside)
    return out.astype(F32)


def _resample_mask(m: np.ndarray, out_shape: tuple[int, int], imap: IndexMap) -> np.ndarray:
    """:func:`_resample_yx` of a binary mask (only its bounding box is multiplied), binarised."""
    inside = np.asarray(m) > 0
    frac = np.zeros((m.shape[0], *out_shape), F32)
    if inside.any():
        ys = np.flatnonzero(inside.any(axis=(0, 2)))
        xs = np.flatnonzero(inside.any(axis=(0, 1)))
        y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
        wy, _ = _axis_weights(m.shape[1], out_shape[0], imap.scale[1], imap.offset[1], clamp=False)
        wx, _ = _axis_weights(m.shape[2], out_shape[1], imap.scale[2], imap.offset[2], clamp=False)
        sub = inside[:, y0:y1, x0:x1].astype(F32)
        frac = np.matmul(np.matmul(wy[:, y0:y1], sub), wx[:, x0:x1].T)
    return _binarize(frac)


def zoom_inplane_map(shape_yx: tuple[int, int], factor: float) -> IndexMap:
    """Index map of :func:`zoom_inplane`: magnify by ``factor`` about the in-plane centre."""
    if not factor > 0:
        raise ConfigError(f"zoom factor must be > 0, got {factor}")
    s = 1.0 / factor
    cy, cx = (shape_yx[0] - 1) / 2.0, (shape_yx[1] - 1) / 2.0
    return IndexMap((1.0, s, s), (0.0, cy * (1.0 - s), cx * (1.0 - s)))


def zoom_inplane(
    hu: np.ndarray,
    mask: np.ndarray | None,
    spacing_zyx: Spacing,
    factor: float,
    fill_hu: float = -1000.0,
) -> tuple[np.ndarray, np.ndarray | None, Spacing]:
    """Rescale the image in-plane by ``factor`` about the centre, in the same field of view.

    ``factor < 1`` shrinks the head (area averaging, new border filled with ``fill_hu`` air),
    ``> 1`` magnifies it (linear interpolation, edges cut off). The array shape is unchanged; the
    returned spacing ``(sz, sy / factor, sx / factor)`` keeps the head's physical size, i.e. it
    simulates a scan reconstructed with other pixels (0.35-1 mm at 512 px); keep the input spacing
    instead to simulate a smaller or larger head. The mask is resampled alike (fraction > 0.5,
    ties split evenly).
    """
    a = _as_hu(hu)
    m = _check_mask(mask, a.shape)
    sz, sy, sx = _spacing(spacing_zyx)
    imap = zoom_inplane_map((a.shape[1], a.shape[2]), factor)
    shape = (a.shape[1], a.shape[2])
    out = _resample_yx(a, shape, imap, fill_hu)
    new_mask = None
    if m is not None:
        new_mask = _resample_mask(m, shape, imap)
    return out, new_mask, (sz, sy / factor, sx / factor)


def crop_fov(
    hu: np.ndarray,
    mask: np.ndarray | None,
    keep_fraction: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
    """Crop in-plane to a box of ``keep_fraction`` of each side that contains the whole lesion.

    The box is placed uniformly at random among the positions keeping every mask voxel (it grows
    to the lesion's extent if the lesion is larger). Returns the cropped image and mask and the
    box's ``(y0, x0)`` start in the input grid (new index ``p`` is old index ``p + start``).
    """
    a = _as_hu(hu)
    m = _check_mask(mask, a.shape)
    if not 0.0 < keep_fraction <= 1.0:
        raise ConfigError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    starts = []
    for axis in (1, 2):
        n = a.shape[axis]
        size = max(1, round(keep_fraction * n))
        lo_ok, hi_ok = 0, n - size
        if m is not None and m.any():
            other = tuple(x for x in range(3) if x != axis)
            idx = np.flatnonzero(np.asarray(m > 0).any(axis=other))
            size = max(size, int(idx[-1] - idx[0] + 1))
            lo_ok, hi_ok = max(0, int(idx[-1]) + 1 - size), min(int(idx[0]), n - size)
        starts.append((int(rng.integers(lo_ok, hi_ok + 1)), size))
    (y0, h), (x0, w) = starts
    out = a[:, y0 : y0 + h, x0 : x0 + w].copy()
    new_mask = None if m is None else m[:, y0 : y0 + h, x0 : x0 + w].copy()
    return out, new_mask, (y0, x0)


def window_quantize(
    hu: np.ndarray, window: tuple[float, float] = (40.0, 80.0), levels: int = 256
) -> np.ndarray:
    """What a windowed export keeps: clip to the ``(level, width)`` window, quantise to
    ``levels`` steps, map back to HU (error <= half a step inside the window)."""
    a = _as_hu(hu)
    level, width = float(window[0]), float(window[1])
    if width <= 0 or levels < 2:
        raise ConfigError(f"need width > 0 and levels >= 2, got {width}, {levels}")
    lo = level - width / 2.0
    step = width / (levels - 1)
    q = np.round((np.clip(a, lo, lo + width) - lo) / step)
    return (lo + q * step).astype(F32)


def estimate_noise_sigma(
    hu: np.ndarray,
    spacing_zyx: Spacing,
    *,
    region: np.ndarray | None = None,
    size: int = 5,
) -> float:
    """Noise of a scan: median local ``size x size`` std over brain tissue.

    Brain is the intracranial voxels between 0 and 60 HU, eroded by one pixel in-plane (or the
    given ``region``). The same definition as the phantoms' ``noise_hu`` (anatomical texture
    adds a little). Returns NaN when the region is empty.
    """
    a = _as_hu(hu).astype(np.float64)
    if region is None:
        ic = intracranial_mask(a, spacing_zyx)
        region = ndi.binary_erosion(ic & (a > 0) & (a < 60), structure=_PLANE8)
    if not region.any():
        return float("nan")
    k = (1, size, size)
    mean = ndi.uniform_filter(a, k)
    var = np.maximum(ndi.uniform_filter(a * a, k) - mean * mean, 0.0)
    return float(np.median(np.sqrt(var[region])))


# ------------------------------------------------------------------------------------------
# randomisation for training
# ------------------------------------------------------------------------------------------
def _range(name: str, v: tuple[float, float], lo: float = -math.inf, hi: float = math.inf) -> None:
    if len(v) != 2 or not (lo <= v[0] <= v[1] <= hi):
        raise ConfigError(f"{name} must be (low, high) with {lo} <= low <= high <= {hi}, got {v}")


@dataclass(frozen=True)
class DomainRandomization:
    """Probabilities (``*_p``) and uniform ranges of the transforms :func:`randomize` draws.

    Applied in this order (each independently with its probability): skull defect, slice
    thickness, in-plane zoom, FOV crop, HU calibration, smooth *or* sharp kernel, streaks, motion
    ghost, noise, skull strip, window quantisation. Grid-changing steps return the new spacing;
    with ``keep_inplane_shape`` a crop is padded to a square with air and resized back to the
    input's in-plane shape (as the network-grid preprocessing would), so only the slice count
    can change (through the slice-thickness step).
    """

    skull_defect_p: float = 0.1
    skull_defect_arc_deg: tuple[float, float] = (70.0, 130.0)
    skull_defect_z_fraction: tuple[float, float] = (0.25, 0.55)
    #: probability that the removed bone becomes air instead of soft tissue U(15, 45) HU
    skull_defect_air_p: float = 0.25
    reslice_p: float = 0.2
    reslice_thickness_mm: tuple[float, float] = (2.5, 7.0)
    zoom_p: float = 0.3
    zoom_factor: tuple[float, float] = (0.7, 1.3)
    crop_p: float = 0.1
    crop_keep: tuple[float, float] = (0.7, 0.95)
    hu_affine_p: float = 0.8
    hu_scale: tuple[float, float] = (0.9, 1.1)
    hu_offset: tuple[float, float] = (-8.0, 8.0)
    smooth_p: float = 0.15
    smooth_sigma_mm: tuple[float, float] = (0.3, 0.9)
    sharp_p: float = 0.15
    sharp_amount: tuple[float, float] = (0.2, 1.0)
    sharp_sigma_mm: tuple[float, float] = (0.5, 1.0)
    streaks_p: float = 0.15
    streaks_amplitude_hu: tuple[float, float] = (10.0, 40.0)
    streaks_n: tuple[int, int] = (1, 4)
    ghost_p: float = 0.1
    ghost_shift_px: tuple[float, float] = (2.0, 8.0)
    ghost_weight: tuple[float, float] = (0.05, 0.2)
    noise_p: float = 0.5
    noise_sigma_hu: tuple[float, float] = (0.0, 15.0)
    noise_corr_px: tuple[float, float] = (0.0, 1.5)
    skull_strip_p: float = 0.15
    #: background after skull stripping: 0, -1000 or U(-1000, 0) HU, each with probability 1/3
    skull_strip_background: tuple[float, float] = (-1000.0, 0.0)
    window_p: float = 0.2
    window_level: tuple[float, float] = (35.0, 50.0)
    window_width: tuple[float, float] = (80.0, 100.0)
    #: quantisation levels, one drawn uniformly (256: full 0..255; 86: steps of 3 as case166)
    window_levels: tuple[int, ...] = (256, 86)
    keep_inplane_shape: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name.endswith("_p"):
                if not 0.0 <= float(v) <= 1.0:
                    raise ConfigError(f"{f.name} must be a probability in [0, 1], got {v}")
            elif f.name in ("window_levels", "keep_inplane_shape"):
                continue
            else:
                _range(f.name, v)
        if self.smooth_p + self.sharp_p > 1.0:
            raise ConfigError("smooth_p + sharp_p must be <= 1 (one kernel at most)")
        _range("zoom_factor", self.zoom_factor, 0.1, 10.0)
        _range("crop_keep", self.crop_keep, 0.05, 1.0)
        _range("reslice_thickness_mm", self.reslice_thickness_mm, 0.1, 50.0)
        _range("noise_sigma_hu", self.noise_sigma_hu, 0.0)
        _range("noise_corr_px", self.noise_corr_px, 0.0)
        _range("ghost_weight", self.ghost_weight, 0.0, 1.0)
        _range("streaks_n", self.streaks_n, 0)
        if not self.window_levels or min(self.window_levels) < 2:
            raise ConfigError(f"window_levels must be integers >= 2, got {self.window_levels}")


def _refit(
    a: np.ndarray, m: np.ndarray | None, spacing: Spacing, shape_yx: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray | None, Spacing]:
    """Pad to a square (air) and resize to ``shape_yx``, like the network-grid preprocessing."""
    side = max(a.shape[1], a.shape[2])
    sc_y, sc_x = side / shape_yx[0], side / shape_yx[1]
    # output pixel p covers square pixels around (p + 0.5) * sc - 0.5; square -> crop: minus pad
    pad_y, pad_x = (side - a.shape[1]) / 2.0, (side - a.shape[2]) / 2.0
    imap = IndexMap((1.0, sc_y, sc_x), (0.0, sc_y / 2 - 0.5 - pad_y, sc_x / 2 - 0.5 - pad_x))
    out = _resample_yx(a, shape_yx, imap, -1000.0)
    mm = None
    if m is not None:
        mm = _resample_mask(m, shape_yx, imap)
    return out, mm, (spacing[0], spacing[1] * sc_y, spacing[2] * sc_x)


def randomize(
    hu: np.ndarray,
    mask: np.ndarray | None,
    spacing_zyx: Spacing,
    rng: np.random.Generator,
    cfg: DomainRandomization | None = None,
) -> tuple[np.ndarray, np.ndarray | None, Spacing, list[str]]:
    """Draw and apply a random chain of transforms (see :class:`DomainRandomization`).

    Returns ``(hu, mask, spacing_zyx, applied)``; ``applied`` names the transforms used, in order,
    with their parameters (e.g. ``"reslice_z(3.1mm)"``). Deterministic given ``rng``'s state.
    Skull strip and skull defect are skipped when no skull is found.
    """
    c = cfg or DomainRandomization()
    a = _as_hu(hu)
    m = _check_mask(mask, a.shape)
    sp = _spacing(spacing_zyx)
    shape_yx = (a.shape[1], a.shape[2])
    applied: list[str] = []

    def hit(p: float) -> bool:
        return p > 0 and rng.random() < p

    if hit(c.skull_defect_p):
        fill = -1000.0 if rng.random() < c.skull_defect_air_p else rng.uniform(15.0, 45.0)
        ic = intracranial_mask(a, sp)
        if ic.any():
            a = skull_defect(
                a,
                sp,
                rng,
                fill,
                arc_deg=c.skull_defect_arc_deg,
                z_fraction=c.skull_defect_z_fraction,
                keep=m,
                intracranial=ic,
            )
            applied.append(f"skull_defect(fill={fill:.0f})")
    if hit(c.reslice_p):
        t = rng.uniform(*c.reslice_thickness_mm)
        a, m, sp = reslice_z(a, m, sp, t)
        applied.append(f"reslice_z({t:.2f}mm)")
    if hit(c.zoom_p):
        f = rng.uniform(*c.zoom_factor)
        a, m, sp = zoom_inplane(a, m, sp, f)
        applied.append(f"zoom_inplane({f:.2f})")
    if hit(c.crop_p):
        k = rng.uniform(*c.crop_keep)
        a, m, _ = crop_fov(a, m, k, rng)
        if c.keep_inplane_shape:
            a, m, sp = _refit(a, m, sp, shape_yx)
        applied.append(f"crop_fov({k:.2f})")
    if hit(c.hu_affine_p):
        s, o = rng.uniform(*c.hu_scale), rng.uniform(*c.hu_offset)
        a = hu_affine(a, s, o)
        applied.append(f"hu_affine({s:.3f},{o:+.1f})")
    u = rng.random()
    if u < c.smooth_p:
        sig = rng.uniform(*c.smooth_sigma_mm)
        a = smooth_kernel(a, sig, sp)
        applied.append(f"smooth_kernel({sig:.2f}mm)")
    elif u < c.smooth_p + c.sharp_p:
        amt, sig = rng.uniform(*c.sharp_amount), rng.uniform(*c.sharp_sigma_mm)
        a = sharp_kernel(a, amt, sig, sp)
        applied.append(f"sharp_kernel({amt:.2f},{sig:.2f}mm)")
    if hit(c.streaks_p):
        amp = rng.uniform(*c.streaks_amplitude_hu)
        n = int(rng.integers(c.streaks_n[0], c.streaks_n[1] + 1))
        a = streaks(a, amp, n, rng, sp)
        applied.append(f"streaks({n}x{amp:.0f}HU)")
    if hit(c.ghost_p):
        sh, w = rng.uniform(*c.ghost_shift_px), rng.uniform(*c.ghost_weight)
        a = motion_ghost(a, sh, w, rng)
        applied.append(f"motion_ghost({sh:.1f}px,{w:.2f})")
    if hit(c.noise_p):
        sig, corr = rng.uniform(*c.noise_sigma_hu), rng.uniform(*c.noise_corr_px)
        a = add_noise(a, sig, corr, rng)
        applied.append(f"add_noise({sig:.1f}HU,{corr:.2f}px)")
    if hit(c.skull_strip_p):
        choice = int(rng.integers(3))
        lo, hi = c.skull_strip_background
        bg = (0.0, -1000.0, rng.uniform(lo, hi))[choice]
        ic = intracranial_mask(a, sp)
        if ic.any():
            a = skull_strip(a, sp, bg, keep=m, intracranial=ic)
            applied.append(f"skull_strip(bg={bg:.0f})")
    if hit(c.window_p):
        level, width = rng.uniform(*c.window_level), rng.uniform(*c.window_width)
        levels = int(c.window_levels[int(rng.integers(len(c.window_levels)))])
        a = window_quantize(a, (level, width), levels)
        applied.append(f"window_quantize({level:.0f}/{width:.0f},{levels})")
    if np.may_share_memory(a, hu):  # nothing applied: still never hand back the input
        a = a.copy()
    if m is not None and mask is not None and np.may_share_memory(m, mask):
        m = m.copy()
    return a.astype(F32, copy=False), m, sp, applied


# ------------------------------------------------------------------------------------------
# (B) fixed Volume-level transforms for the robustness benchmark
# ------------------------------------------------------------------------------------------
VolumeTransform = Callable[[Volume, Volume, str], tuple[Volume, Volume]]

#: HU window and stored range of the ``windowed_0_255`` export (PhysioNet-like brain window).
EXPORT_WINDOW = Window(40.0, 80.0)


def case_rng(case_id: str, transform: str) -> np.random.Generator:
    """The RNG of one (case, transform): independent of case order and of other transforms."""
    key = [zlib.crc32(str(case_id).encode()), zlib.crc32(str(transform).encode())]
    return np.random.default_rng(np.random.SeedSequence(key))


@dataclass
class _Canon:
    """An image in canonical ``(Z, Y, X)`` HU with what is needed to go back."""

    image: Volume
    canonical: Volume
    hu: np.ndarray
    mask: np.ndarray
    spacing: Spacing

    @classmethod
    def of(cls, image: Volume, mask: Volume) -> _Canon:
        if image.shape != mask.shape or not np.allclose(image.affine, mask.affine, atol=1e-3):
            raise GeometryError("mask must lie on the image grid")
        canon, _ = to_canonical(image)
        mcanon, _ = to_canonical(mask)
        sx, sy, sz = canon.spacing
        hu = np.ascontiguousarray(canon.hu().transpose(2, 1, 0))
        m = np.ascontiguousarray((mcanon.array > 0).transpose(2, 1, 0)).astype(np.uint8)
        return cls(image, canon, hu, m, (sz, sy, sx))

    @property
    def bone_hu(self) -> float:
        """Bone threshold that works for windowed sources (clipped below 200 HU)."""
        w = self.image.intensity.window
        if self.image.intensity.kind == IntensityKind.WINDOWED and w is not None:
            return min(BONE_HU, w.hi - 0.01 * w.width)
        return BONE_HU

    @property
    def head_hu(self) -> float:
        """Head threshold that works for windowed sources (air clipped to the window's low end)."""
        w = self.image.intensity.window
        if self.image.intensity.kind == IntensityKind.WINDOWED and w is not None:
            return max(HEAD_HU, w.lo + 0.01 * w.width)
        return HEAD_HU

    def intracranial(self) -> np.ndarray:
        return intracranial_mask(self.hu, self.spacing, bone_hu=self.bone_hu, head_hu=self.head_hu)

    def encode(self, hu_zyx: np.ndarray) -> tuple[np.ndarray, Intensity]:
        """HU back to the source's kind: int16 HU, or the source's window and stored range."""
        it = self.image.intensity
        if it.kind == IntensityKind.WINDOWED and it.window is not None:
            return _encode_windowed(hu_zyx, it.window, it.stored_range or (0.0, 255.0))
        arr = np.clip(np.round(hu_zyx), -32768, 32767).astype(np.int16)
        return arr, Intensity.hu()

    def same_grid(
        self,
        hu_zyx: np.ndarray,
        intensity: Intensity | None = None,
        encoded: np.ndarray | None = None,
    ) -> tuple[Volume, Volume]:
        """Wrap a transformed canonical array on the canonical grid (mask unchanged); ``encoded``
        (with its ``intensity``) replaces the default encoding of ``hu_zyx``."""
        if encoded is None:
            arr, it = self.encode(hu_zyx)
        else:
            arr, it = encoded, intensity or Intensity.hu()
        img = Volume(arr.transpose(2, 1, 0), self.canonical.affine, it, dict(self.image.meta))
        return img, img.as_label(self.mask.transpose(2, 1, 0))

    def new_grid(
        self, hu_zyx: np.ndarray, mask_zyx: np.ndarray, imap: IndexMap
    ) -> tuple[Volume, Volume]:
        """Wrap arrays on a resampled grid: affine = canonical affine @ index map."""
        affine = self.canonical.affine @ imap.affine_ijk()
        arr, it = self.encode(hu_zyx)
        img = Volume(arr.transpose(2, 1, 0), affine, it, dict(self.image.meta))
        return img, img.as_label(mask_zyx.transpose(2, 1, 0))


def _encode_windowed(
    hu_zyx: np.ndarray, window: Window, stored: tuple[float, float]
) -> tuple[np.ndarray, Intensity]:
    """HU -> ``window`` mapped linearly onto ``stored`` (uint8 integers for 0..255, else float)."""
    s0, s1 = stored
    vals = s0 + np.clip((hu_zyx - window.lo) / window.width, 0.0, 1.0) * (s1 - s0)
    arr = np.round(vals).astype(np.uint8) if (s0, s1) == (0.0, 255.0) else vals.astype(F32)
    return arr, Intensity.windowed(window, stored)


def _t_none(image: Volume, mask: Volume, case_id: str) -> tuple[Volume, Volume]:
    return image, mask


def _skull_stripped(background: float) -> VolumeTransform:
    def fn(image: Volume, mask: Volume, case_id: str) -> tuple[Volume, Volume]:
        c = _Canon.of(image, mask)
        ic = c.intracranial()
        if not ic.any():
            raise GeometryError(f"case {case_id}: no skull found, cannot skull-strip")
        return c.same_grid(skull_strip(c.hu, c.spacing, background, keep=c.mask, intracranial=ic))

    return fn


def _t_windowed(image: Volume, mask: Volume, case_id: str) -> tuple[Volume, Volume]:
    c = _Canon.of(image, mask)
    arr, it = _encode_windowed(c.hu, EXPORT_WINDOW, (0.0, 255.0))
    return c.same_grid(c.hu, it, arr)


def _slices(thickness_mm: float) -> VolumeTransform:
    def fn(image: Volume, mask: Volume, case_id: str) -> tuple[Volume, Volume]:
        c = _Canon.of(image, mask)
        hu, m, _ = reslice_z(c.hu, c.mask, c.spacing, thickness_mm)
        _, imap = reslice_z_map(c.hu.shape[0], c.spacing[0], thickness_mm)
        assert m is not None
        return c.new_grid(hu, m, imap)

    return fn


def _t_cropped(image: Volume, mask: Volume, case_id: str) -> tuple[Volume, Volume]:
    c = _Canon.of(image, mask)
    hu, m, (y0, x0) = crop_fov(c.hu, c.mask, 0.55, case_rng(case_id, "cropped_fov"))
    assert m is not None
    return c.new_grid(hu, m, IndexMap((1.0, 1.0, 1.0), (0.0, float(y0), float(x0))))


def _t_wide(image: Volume, mask: Volume, case_id: str) -> tuple[Volume, Volume]:
    c = _Canon.of(image, mask)
    factor = 1.0 / 1.6
    hu, m, _ = zoom_inplane(c.hu, c.mask, c.spacing, factor)
    assert m is not None
    return c.new_grid(hu, m, zoom_inplane_map((c.hu.shape[1], c.hu.shape[2]), factor))


def _t_noise_x2(image: Volume, mask: Volume, case_id: str) -> tuple[Volume, Volume]:
    c = _Canon.of(image, mask)
    ic = c.intracranial()
    region = ndi.binary_erosion(ic & (c.hu > 0) & (c.hu < 60), structure=_PLANE8)
    sigma = estimate_noise_sigma(c.hu, c.spacing, region=region)
    if not math.isfinite(sigma) or sigma <= 0:
        raise GeometryError(f"case {case_id}: no brain tissue to estimate the noise from")
    rng = case_rng(case_id, "noise_x2")
    unit = add_noise(np.zeros_like(c.hu), 1.0, 1.0, rng)
    # scale the added field so its own local std is sqrt(3) sigma: total local std = 2 sigma
    local = estimate_noise_sigma(unit, c.spacing, region=region)
    return c.same_grid(c.hu + unit * F32(math.sqrt(3.0) * sigma / local))


def _t_smooth(image: Volume, mask: Volume, case_id: str) -> tuple[Volume, Volume]:
    c = _Canon.of(image, mask)
    return c.same_grid(smooth_kernel(c.hu, 1.3, c.spacing))


def _t_sharp(image: Volume, mask: Volume, case_id: str) -> tuple[Volume, Volume]:
    c = _Canon.of(image, mask)
    return c.same_grid(sharp_kernel(c.hu, 2.0, 1.0, c.spacing))


def _t_streaks(image: Volume, mask: Volume, case_id: str) -> tuple[Volume, Volume]:
    c = _Canon.of(image, mask)
    rng = case_rng(case_id, "streaks")
    return c.same_grid(streaks(c.hu, 80.0, 6, rng, c.spacing, head_hu=c.head_hu))


def _t_skull_defect(image: Volume, mask: Volume, case_id: str) -> tuple[Volume, Volume]:
    c = _Canon.of(image, mask)
    ic = c.intracranial()
    out = skull_defect(
        c.hu,
        c.spacing,
        case_rng(case_id, "skull_defect"),
        30.0,
        arc_deg=(150.0, 150.0),
        z_fraction=(0.6, 0.6),
        bone_hu=c.bone_hu,
        keep=c.mask,
        intracranial=ic,
    )
    return c.same_grid(out)


#: Fixed benchmark transforms ``(image, mask, case_id) -> (image, mask)`` (table in module doc).
ROBUSTNESS_TRANSFORMS: dict[str, VolumeTransform] = {
    "none": _t_none,
    "skull_stripped_bg0": _skull_stripped(0.0),
    "skull_stripped_bg-1000": _skull_stripped(-1000.0),
    "windowed_0_255": _t_windowed,
    "slices_1mm": _slices(1.0),
    "slices_2.5mm": _slices(2.5),
    "slices_10mm": _slices(10.0),
    "cropped_fov": _t_cropped,
    "wide_fov": _t_wide,
    "noise_x2": _t_noise_x2,
    "kernel_smooth": _t_smooth,
    "kernel_sharp": _t_sharp,
    "streaks": _t_streaks,
    "skull_defect": _t_skull_defect,
}


#: Per benchmark transform: (its fixed setting, how training randomises the same effect).
ROBUSTNESS_NOTES: dict[str, tuple[str, str]] = {
    "none": ("untouched", "-"),
    "skull_stripped_bg0": (
        "intracranial and hemorrhage voxels kept, the rest 0 HU",
        "p=0.15, background 0 / -1000 / U(-1000, 0) HU (same kind)",
    ),
    "skull_stripped_bg-1000": (
        "intracranial and hemorrhage voxels kept, the rest -1000 HU",
        "p=0.15, background 0 / -1000 / U(-1000, 0) HU (same kind)",
    ),
    "windowed_0_255": (
        "stored WINDOWED 40/80 as uint8 0..255, window declared on loading",
        "p=0.2, level U(35, 50), width U(80, 100), 256 or 86 levels (inside)",
    ),
    "slices_1mm": ("1 mm slices (linear interpolation)", "p=0.2, 2.5-7 mm (outside)"),
    "slices_2.5mm": ("2.5 mm slices", "p=0.2, 2.5-7 mm (edge of the range)"),
    "slices_10mm": ("10 mm slices (thick-slab average)", "p=0.2, 2.5-7 mm (outside)"),
    "cropped_fov": ("in-plane box of 55 % of each side, lesion kept", "p=0.1, 70-95 % (outside)"),
    "wide_fov": (
        "1.6x wider field of view, same matrix (pixels 1.6x larger, head smaller in the image)",
        "p=0.3, in-plane zoom 0.7-1.3 (outside)",
    ),
    "noise_x2": (
        "noise sigma doubled (estimated from brain, sqrt(3) sigma added, 1 px correlation)",
        "p=0.5, sigma U(0, 15) HU absolute (inside)",
    ),
    "kernel_smooth": ("Gaussian in-plane blur, sigma 1.3 mm", "p=0.15, 0.3-0.9 mm (outside)"),
    "kernel_sharp": (
        "unsharp mask, amount 2.0, sigma 1.0 mm",
        "p=0.15, amount 0.2-1.0, sigma 0.5-1 mm (outside)",
    ),
    "streaks": ("6 streaks per slice, amplitude 80 HU", "p=0.15, 1-4 x 10-40 HU (outside)"),
    "skull_defect": (
        "150 deg arc on 60 % of the cranial slices, bone -> 30 HU",
        "p=0.1, 70-130 deg on 25-55 %, 15-45 HU or air (outside)",
    ),
}


def apply_robustness(name: str, image: Volume, mask: Volume, case_id: str) -> tuple[Volume, Volume]:
    """Apply the benchmark transform ``name`` (a key of :data:`ROBUSTNESS_TRANSFORMS`)."""
    try:
        fn = ROBUSTNESS_TRANSFORMS[name]
    except KeyError:
        raise ConfigError(
            f"unknown robustness transform {name!r}; known: {', '.join(ROBUSTNESS_TRANSFORMS)}"
        ) from None
    return fn(image, mask, str(case_id))
