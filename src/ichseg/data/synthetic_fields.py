"""Numerical building blocks of the synthetic head-CT generator.

Everything here works in float32 and is written for speed on one CPU core:

* :class:`RandomField3D` / :class:`GridMap2D` — smooth random fields and height maps stored on small
  regular grids in head coordinates (mm) and read back by trilinear/bilinear interpolation;
* :func:`upsample_box` — separable linear up-sampling of a low-resolution in-plane grid onto a box
  of the full-resolution grid (the generator evaluates anatomy at ~2 mm and up-samples);
* :func:`footprint_ratio` / :func:`fraction` — partial-volume fractions of an implicit surface:
  a field ``d`` (negative inside) is turned into ``u = d / w``, where ``w`` is the variation of
  ``d`` across one voxel (in-plane pixel plus the whole slice thickness), and the occupied fraction
  of the voxel is ``clip(0.5 - u, 0, 1)``. The fraction is >= 0.5 exactly where ``d <= 0`` at the
  voxel centre, so masks thresholded at the centre agree with the rendered partial volume;
* :func:`correlated_noise` — scanner-like noise (binomially smoothed white noise, whose in-plane
  autocorrelation 1 / 0.67 / 0.17 at lags 0 / 1 / 2 pixels matches a real 0.49 mm head CT).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

F32 = np.float32
_EPS = F32(1e-4)


class RandomField3D:
    """A stationary, unit-variance, smooth Gaussian random field on a box in head coordinates.

    White noise on a grid of spacing ``spacing`` mm is Gaussian-filtered with ``sigma`` mm and
    normalised to unit standard deviation; evaluation is trilinear (points outside the box take
    the nearest edge value).
    """

    def __init__(
        self,
        rng: np.random.Generator,
        lo: tuple[float, float, float],
        hi: tuple[float, float, float],
        spacing: float,
        sigma: float,
    ) -> None:
        self.lo = np.asarray(lo, dtype=np.float64)
        self.spacing = float(spacing)
        shape = tuple(int(np.ceil((h - a) / spacing)) + 2 for a, h in zip(lo, hi, strict=True))
        white = rng.standard_normal(shape, dtype=F32)
        field = ndi.gaussian_filter(white, sigma / spacing, mode="wrap")
        field -= field.mean()
        field /= max(float(field.std()), 1e-6)
        self.values = np.ascontiguousarray(field, dtype=F32)

    def __call__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        shape = np.shape(x)
        inv = 1.0 / self.spacing
        coords = np.stack(
            [
                (np.ravel(x) - F32(self.lo[0])) * F32(inv),
                (np.ravel(y) - F32(self.lo[1])) * F32(inv),
                (np.ravel(z) - F32(self.lo[2])) * F32(inv),
            ]
        )
        out = ndi.map_coordinates(self.values, coords, order=1, mode="nearest", output=F32)
        return out.reshape(shape)


class GridMap2D:
    """A 2D map ``f(x, y)`` stored on a regular grid (mm) and read by bilinear interpolation."""

    def __init__(self, values: np.ndarray, lo: tuple[float, float], spacing: float) -> None:
        self.values = np.ascontiguousarray(values, dtype=F32)
        self.lo = (float(lo[0]), float(lo[1]))
        self.spacing = float(spacing)

    def coords(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Cell-centre coordinates (x along axis 0, y along axis 1) for painting the map."""
        xs = self.lo[0] + self.spacing * np.arange(self.values.shape[0], dtype=F32)
        ys = self.lo[1] + self.spacing * np.arange(self.values.shape[1], dtype=F32)
        return xs, ys

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        shape = np.shape(x)
        inv = F32(1.0 / self.spacing)
        coords = np.stack(
            [
                (np.ravel(x) - F32(self.lo[0])) * inv,
                (np.ravel(y) - F32(self.lo[1])) * inv,
            ]
        )
        out = ndi.map_coordinates(self.values, coords, order=1, mode="nearest", output=F32)
        return out.reshape(shape)


@dataclass(frozen=True)
class Box:
    """A half-open box ``[z0, z1) x [y0, y1) x [x0, x1)`` of a ``(Z, Y, X)`` array."""

    z0: int
    z1: int
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return slice(self.z0, self.z1), slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def empty(self) -> bool:
        return self.z1 <= self.z0 or self.y1 <= self.y0 or self.x1 <= self.x0

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.z1 - self.z0, self.y1 - self.y0, self.x1 - self.x0)

    def clip(self, shape: tuple[int, int, int]) -> Box:
        return Box(
            max(0, self.z0),
            min(shape[0], self.z1),
            max(0, self.y0),
            min(shape[1], self.y1),
            max(0, self.x0),
            min(shape[2], self.x1),
        )


def _linear_weights(
    n_low: int, factor: int, start: int, stop: int, low_offset: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gather indices and weights that map full-res rows ``start..stop`` onto a low-res axis.

    Low-res sample ``n`` (of the whole grid) sits at full-res coordinate ``n * factor +
    (factor - 1) / 2``; ``low_offset`` is the first low-res index held in the array.
    """
    pos = (np.arange(start, stop, dtype=np.float64) - (factor - 1) / 2.0) / factor - low_offset
    pos = np.clip(pos, 0.0, n_low - 1.0)
    i0 = np.floor(pos).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_low - 1)
    w1 = (pos - i0).astype(F32)
    return i0, i1, w1


def upsample_box(
    low: np.ndarray, factor: int, box: Box, low_y0: int = 0, low_x0: int = 0
) -> np.ndarray:
    """Linearly up-sample a ``(Z, Yl, Xl)`` low-res array onto the full-res ``box``.

    ``low`` holds low-res rows ``low_y0..`` and columns ``low_x0..`` of the whole low-res grid and
    all slices (the slice axis is not resampled; ``box.z0:z1`` selects slices).
    """
    low = low[box.z0 : box.z1]
    if factor == 1:
        return np.array(
            low[:, box.y0 - low_y0 : box.y1 - low_y0, box.x0 - low_x0 : box.x1 - low_x0],
            dtype=F32,
        )
    iy0, iy1, wy = _linear_weights(low.shape[1], factor, box.y0, box.y1, low_y0)
    ix0, ix1, wx = _linear_weights(low.shape[2], factor, box.x0, box.x1, low_x0)
    rlo, rhi = int(iy0.min()), int(iy1.max()) + 1
    rows = low[:, rlo:rhi, :]
    b0 = np.take(rows, ix0, axis=2)
    cols = np.take(rows, ix1, axis=2)
    cols -= b0
    cols *= wx
    cols += b0
    out = cols[:, iy0 - rlo, :]
    d = cols[:, iy1 - rlo, :]
    d -= out
    d *= wy[:, None]
    out += d
    return out


def footprint_ratio(d3: np.ndarray, pixel_factor: float = 1.0) -> np.ndarray:
    """``u = d / w`` for a field sampled at slice offsets ``(-T/2, 0, +T/2)`` (axis 0 of ``d3``).

    ``d3`` has shape ``(3, Z, Y, X)``; the in-plane variation across one *full-res* pixel is the
    finite difference on this grid divided by ``pixel_factor`` (the up-sampling factor when ``d3``
    lives on the low-res grid).
    """
    d0 = d3[1]
    wz = np.abs(d3[2] - d3[0])
    if d0.shape[1] > 1:
        gy = np.abs(np.gradient(d0, axis=1))
    else:
        gy = np.zeros_like(d0)
    if d0.shape[2] > 1:
        gx = np.abs(np.gradient(d0, axis=2))
    else:
        gx = np.zeros_like(d0)
    w = wz + (gy + gx) * F32(1.0 / pixel_factor) + _EPS
    return (d0 / w).astype(F32, copy=False)


def fraction(u: np.ndarray) -> np.ndarray:
    """Occupied fraction ``clip(0.5 - u, 0, 1)`` of a voxel from its footprint ratio ``u``."""
    out = F32(0.5) - u
    np.clip(out, 0.0, 1.0, out=out)
    return out


def smoothstep(x: np.ndarray) -> np.ndarray:
    """Cubic smooth step of ``clip(x, 0, 1)`` (float32)."""
    t = np.clip(x, 0.0, 1.0).astype(F32, copy=False)
    return t * t * (F32(3.0) - F32(2.0) * t)


def correlated_noise(
    rng: np.random.Generator, shape: tuple[int, int, int], smooth: bool
) -> np.ndarray:
    """Zero-mean noise of unit *local* standard deviation (std over 5x5 in-plane patches).

    With ``smooth`` (sub-millimetre pixels) uniform white noise is filtered in-plane with the
    binomial kernel ``[1, 2, 1] / 4`` along both axes (two ``[1, 1]`` passes each; the result is
    close to Gaussian), as reconstruction kernels correlate neighbouring pixels; without it
    (coarse pixels) the noise is white Gaussian.
    """
    z, y, x = shape
    if not smooth or y < 3 or x < 3:
        return rng.standard_normal(shape, dtype=F32)
    n = rng.random((z, y + 2, x + 2), dtype=F32)
    a = n[:, :, :-1] + n[:, :, 1:]
    del n
    b = a[:, :, :-1] + a[:, :, 1:]
    del a
    a = b[:, :-1, :] + b[:, 1:, :]
    del b
    out = a[:, :-1, :] + a[:, 1:, :]
    del a
    # Uniform(0, 1): mean 1/2, variance 1/12; the 16-weight kernel sums to 16.
    out -= F32(8.0)
    out *= F32(np.sqrt(12.0) / 16.0 / NOISE_LOCAL_STD_SMOOTH)
    return out


#: Local 5x5 standard deviation of unit white noise after the binomial smoothing above.
NOISE_LOCAL_STD_SMOOTH = 0.321


def local_std(image2d: np.ndarray, size: int = 5) -> np.ndarray:
    """Standard deviation in ``size x size`` patches around each pixel (float64)."""
    a = np.asarray(image2d, dtype=np.float64)
    m = ndi.uniform_filter(a, size)
    m2 = ndi.uniform_filter(a * a, size)
    return np.sqrt(np.maximum(m2 - m * m, 0.0))


@dataclass(frozen=True)
class ScanGeometry:
    """The scan grid and the head pose: scanner mm ``p = (i*sp, j*sp, k*T)`` <-> head mm ``h``.

    ``h = to_head @ (p - centre)`` where ``to_head = diag(1/scale) @ R.T`` (``R`` rotates head
    axes into scanner axes; scanner axes are LPS-aligned like the canonical voxel axes).
    """

    shape_zyx: tuple[int, int, int]
    spacing: float  #: in-plane pixel size (mm)
    thickness: float  #: slice spacing (mm)
    centre: np.ndarray  #: head origin in scanner mm (x, y, z)
    rotation: np.ndarray  #: 3x3, head -> scanner
    scale: np.ndarray  #: head scale factors (x, y, z)

    @property
    def to_head(self) -> np.ndarray:
        return np.diag(1.0 / self.scale) @ self.rotation.T

    @property
    def to_scanner(self) -> np.ndarray:
        return self.rotation @ np.diag(self.scale)

    def head_coords(
        self, zs: np.ndarray, ys: np.ndarray, xs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Head coordinates of the grid ``zs x ys x xs`` (scanner mm, 1D each), broadcast 3D."""
        m = self.to_head.astype(F32)
        c = self.centre
        pz = (np.asarray(zs, dtype=np.float64) - c[2]).astype(F32)[:, None, None]
        py = (np.asarray(ys, dtype=np.float64) - c[1]).astype(F32)[None, :, None]
        px = (np.asarray(xs, dtype=np.float64) - c[0]).astype(F32)[None, None, :]
        out = []
        for r in range(3):
            out.append(m[r, 0] * px + m[r, 1] * py + m[r, 2] * pz)
        return out[0], out[1], out[2]

    def scanner_dir_in_head(self, axis: int) -> np.ndarray:
        """Head-frame displacement of a 1 mm step along scanner ``axis`` (0=x, 1=y, 2=z)."""
        return self.to_head[:, axis].astype(np.float64)

    def head_to_voxel(self, h: np.ndarray) -> np.ndarray:
        """Head mm points ``(N, 3)`` -> continuous voxel indices ``(N, 3)`` as ``(k, j, i)``."""
        p = np.atleast_2d(h) @ self.to_scanner.T + self.centre
        return np.stack(
            [p[:, 2] / self.thickness, p[:, 1] / self.spacing, p[:, 0] / self.spacing], 1
        )

    def box_of_head_box(self, lo: np.ndarray, hi: np.ndarray, margin_mm: float = 2.0) -> Box:
        """The voxel box (clipped to the scan) covering an axis-aligned box in head mm."""
        corners = np.array(
            [[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])]
        )
        v = self.head_to_voxel(corners)
        mz = 0.5 + margin_mm / self.thickness
        mxy = margin_mm / self.spacing
        box = Box(
            int(np.floor(v[:, 0].min() - mz + 0.5)),
            int(np.floor(v[:, 0].max() + mz + 0.5)) + 1,
            int(np.floor(v[:, 1].min() - mxy)),
            int(np.ceil(v[:, 1].max() + mxy)) + 1,
            int(np.floor(v[:, 2].min() - mxy)),
            int(np.ceil(v[:, 2].max() + mxy)) + 1,
        )
        return box.clip(self.shape_zyx)
