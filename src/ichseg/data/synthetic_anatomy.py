"""Randomised head anatomy for the synthetic CT generator, as implicit fields in head coordinates.

Head coordinates are millimetres of an average adult head: ``x`` towards the patient's left,
``y`` posterior, ``z`` superior, origin near the top of the thalami. Every structure is an implicit
field ``d(x, y, z)`` (negative inside, roughly a signed distance in mm) or a value field in HU,
evaluated on arbitrary point arrays, so the same anatomy can be sampled on the coarse in-plane grid
of the whole scan and at full resolution inside a lesion's box.

The model (all sizes and positions jittered per case; atrophy grows with age):

* intracranial cavity: an asymmetric ellipsoid with a wavy surface, cut below by a skull-base
  height map (anterior, middle and posterior fossae, sella, clivus, petrous ridges, foramen
  magnum); tentorium height map separating cerebrum and cerebellum;
* skull of varying thickness (thick at the base, thin temporal squama) with inner/outer tables and
  diploe; frontal, sphenoid, ethmoid and maxillary sinuses, mastoid air cells, orbits with globes
  and fat; scalp with a fat layer, temporalis muscle, face and neck soft tissue;
* brain: extra-axial CSF gap, sulci (zero sets of a radially stretched random field near the
  surface), cortical grey ribbon, white matter, deep grey nuclei, brainstem, cerebellum with folia,
  lateral/third/fourth ventricles, basal cisterns, Sylvian fissures, interhemispheric fissure and
  falx, dural venous sinuses; beam-hardening brightening under the skull and posterior-fossa
  streaks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ichseg.data.synthetic_fields import F32, GridMap2D, RandomField3D, smoothstep

_BIG = F32(1e3)
_FAR = F32(15.0)  #: grid-sampled distances are clamped here (continuous at the grid's edge)

Arr = np.ndarray


def _ell(x: Arr, y: Arr, z: Arr, c: tuple[float, float, float], r: tuple[float, ...]) -> Arr:
    """Approximate signed distance (mm) to an axis-aligned ellipsoid (exact scale at the surface)."""
    qx = (x - F32(c[0])) * F32(1.0 / r[0])
    qy = (y - F32(c[1])) * F32(1.0 / r[1])
    qz = (z - F32(c[2])) * F32(1.0 / r[2])
    q = np.sqrt(qx * qx + qy * qy + qz * qz)
    gx = qx * F32(1.0 / r[0])
    gy = qy * F32(1.0 / r[1])
    gz = qz * F32(1.0 / r[2])
    g = np.sqrt(gx * gx + gy * gy + gz * gz) / np.maximum(q, F32(1e-3))
    return (q - F32(1.0)) / np.maximum(g, F32(1.0 / max(r)))


def _capsule(x: Arr, y: Arr, z: Arr, a: Arr, b: Arr, ra: float, rb: float) -> Arr:
    """Signed distance to a tapered capsule from point ``a`` (radius ``ra``) to ``b`` (``rb``)."""
    ab = b - a
    L2 = float(ab @ ab)
    px, py, pz = x - F32(a[0]), y - F32(a[1]), z - F32(a[2])
    t = (px * F32(ab[0]) + py * F32(ab[1]) + pz * F32(ab[2])) * F32(1.0 / max(L2, 1e-6))
    np.clip(t, 0.0, 1.0, out=t)
    dx = px - t * F32(ab[0])
    dy = py - t * F32(ab[1])
    dz = pz - t * F32(ab[2])
    return np.sqrt(dx * dx + dy * dy + dz * dz) - (F32(ra) + t * F32(rb - ra))


def _smin(a: Arr, b: Arr, k: float) -> Arr:
    """Smooth minimum (union) of two fields with blending width ``k`` mm."""
    h = np.clip(0.5 + 0.5 * (b - a) / F32(k), 0.0, 1.0)
    return b + (a - b) * h - F32(k) * h * (F32(1.0) - h)


@dataclass(frozen=True)
class TissueHU:
    """Hounsfield units of the tissues of one synthetic head."""

    white: float
    grey: float
    deep_grey: float
    cerebellum: float
    brainstem: float
    csf: float
    soft: float
    muscle: float
    fat: float
    vitreous: float
    table: float
    diploe: float
    petrous: float
    dura: float


class HeadAnatomy:
    """One randomly drawn head (see the module docstring). All fields take head coordinates."""

    def __init__(self, rng: np.random.Generator, age: float) -> None:
        u = rng.uniform
        self.age = float(age)
        self.atrophy = float(np.clip((age - 35.0) / 55.0 * u(0.6, 1.3), 0.0, 1.0))
        a = self.atrophy
        # Intracranial cavity semi-axes (mm).
        self.r_lat = u(63.0, 70.0)
        self.r_ant = u(78.0, 86.0)
        self.r_post = u(82.0, 90.0)
        self.r_sup = u(66.0, 74.0)
        self.r_inf = u(90.0, 98.0)
        self.gap = 0.7 + 2.4 * a + u(0.0, 0.6)
        self.sulcus_width = 0.45 + 1.2 * a + u(0.0, 0.3)
        self.sulcus_depth = u(11.0, 17.0)
        self.vent_scale = (0.75 + 0.9 * a) * u(0.85, 1.2)
        self.ihf_width = 0.3 + 1.3 * a + u(0.0, 0.3)
        self.grey_thickness = u(2.3, 3.2)
        self.skull_t = u(4.5, 7.0)
        self.scalp_t = u(3.5, 6.5)
        self.temporalis = u(2.5, 7.0)
        self.frontal_sinus = u(0.0, 1.2)  # size factor; 0 = absent
        self.mid_shift = u(-1.5, 1.5)
        self.mid_wave = (u(-2.0, 2.0), u(0.0, 2 * np.pi))
        self.beam_hardening = u(3.0, 10.0)
        self.inhomogeneity = u(1.0, 2.5)
        self.streak_strength = u(0.3, 1.0)
        white = rng.normal(27.0, 1.5)
        grey = white + rng.normal(7.5, 1.0)
        self.tissue = TissueHU(
            white=white,
            grey=grey,
            deep_grey=white + 0.75 * (grey - white),
            cerebellum=grey - u(0.0, 2.5),
            brainstem=white + u(1.0, 4.0),
            csf=u(3.0, 10.0),
            soft=u(28.0, 45.0),
            muscle=u(40.0, 55.0),
            fat=u(-105.0, -75.0),
            vitreous=u(5.0, 15.0),
            table=u(1500.0, 1850.0),
            diploe=u(600.0, 950.0),
            petrous=u(1700.0, 2100.0),
            dura=u(46.0, 58.0),
        )
        self.streak_angles = rng.uniform(0, np.pi, size=int(rng.integers(2, 6)))
        self.streak_offsets = rng.uniform(-25, 25, size=self.streak_angles.size)
        self.streak_signs = rng.choice([-1.0, 1.0], size=self.streak_angles.size)
        # Random fields (head coordinates; sulci live in radially compressed coordinates).
        box_lo, box_hi = (-100.0, -125.0, -140.0), (100.0, 125.0, 100.0)
        self.f_shape = RandomField3D(rng, box_lo, box_hi, 8.0, 20.0)
        self.f_inhom = RandomField3D(rng, box_lo, box_hi, 8.0, 18.0)
        self.f_sulci = RandomField3D(rng, (-92.0,) * 3, (92.0,) * 3, 2.0, 2.9)
        self.f_folia = RandomField3D(rng, (-30.0, -5.0, -95.0), (30.0, 40.0, 0.0), 1.2, 1.3)
        self.f_cells = RandomField3D(rng, (-75.0, -110.0, -100.0), (75.0, 60.0, -20.0), 2.0, 1.8)
        self.f_soft = RandomField3D(rng, box_lo, box_hi, 4.0, 6.0)
        self.f_bone = RandomField3D(rng, box_lo, box_hi, 3.0, 3.0)
        self._cistern_grid: tuple[np.ndarray, np.ndarray, float] | None = None
        self._build_skull_base(rng)
        self._build_ventricles(rng)

    # ------------------------------------------------------------------ construction helpers
    def _build_skull_base(self, rng: np.random.Generator) -> None:
        sp = 2.0
        xs = np.arange(-100.0, 100.0 + sp, sp, dtype=np.float64)
        ys = np.arange(-130.0, 130.0 + sp, sp, dtype=np.float64)
        X, Y = np.meshgrid(xs, ys, indexing="ij")
        ax = np.abs(X)
        j = rng.uniform(-1.0, 1.0, size=8)
        y_sph = -24.0 + 0.12 * ax + 3 * j[0]
        y_pet = 4.0 + 0.42 * (ax - 12.0) + 3 * j[1]
        floor = np.full_like(X, -72.0 + 3 * j[2]) + 10.0 * (ax / 60.0) ** 2
        anterior = y_sph > Y
        roof = -34.0 + 8.0 * np.exp(-(((ax - 30.0) / 13.0) ** 2))  # domed orbital roofs
        floor = np.where(anterior, roof, floor)
        middle = (~anterior) & (y_pet > Y)
        floor = np.where(middle, -52.0 + 3 * j[3] + 6.0 * np.clip((Y + 10) / 30, 0, 1), floor)
        central = ax < 14.0
        sella = central & (y_sph <= Y) & (Y < -6.0)
        floor = np.where(sella, -37.0, floor)
        clivus = central & (Y >= -6.0) & (Y < 24.0)
        floor = np.where(clivus, -32.0 - (Y + 6.0) * 1.5, floor)
        foramen = (ax < 15.0 + 2 * j[4]) & (Y >= 24.0) & (Y < 52.0)
        floor = np.where(foramen, -150.0, floor)
        ridge = (ax > 12.0) & (ax < 62.0) & (np.abs(Y - y_pet) < 6.0)
        floor = np.where(ridge, -31.0 + 3 * j[5] - 0.1 * ax, floor)
        floor = ndi.gaussian_filter(floor, 1.8)
        floor += 1.5 * ndi.gaussian_filter(rng.standard_normal(floor.shape), 3.0) * 6.0
        gx, gy = np.gradient(floor, sp)
        cos = 1.0 / np.sqrt(1.0 + gx * gx + gy * gy)
        lo = (float(xs[0]), float(ys[0]))
        self.floor = GridMap2D(floor, lo, sp)
        self.floor_cos = GridMap2D(cos, lo, sp)
        # Tentorium: peaks at the incisura, slopes down laterally and posteriorly.
        tent = -10.0 - 0.38 * ax - 0.32 * np.clip(Y - 22.0, 0.0, None) + 2 * j[6]
        tent = np.where(y_pet + 1.0 > Y, -200.0, tent)
        tent = ndi.gaussian_filter(tent, 1.5)
        self.tent = GridMap2D(tent, lo, sp)
        self.y_pet = GridMap2D(y_pet, lo, sp)

    def _build_ventricles(self, rng: np.random.Generator) -> None:
        s = self.vent_scale
        ls = 1.0 + 0.25 * (s - 1.0)  # lengths grow less than widths with atrophy
        nodes = {  # name: (x, y, z, radius)
            "F": (8.0, -31.0, 11.0, 3.0),
            "F2": (10.5, -20.0, 15.0, 5.0),
            "B1": (13.0, -5.0, 18.0, 5.0),
            "B2": (16.0, 10.0, 19.0, 5.0),
            "A": (21.0, 24.0, 12.0, 6.5),
            "O": (19.0, 44.0, 8.0, 2.8),
            "T1": (28.0, 20.0, 0.0, 4.0),
            "T2": (32.0, 5.0, -15.0, 3.2),
            "T3": (30.0, -9.0, -24.0, 2.2),
        }
        chain = [("F", "F2"), ("F2", "B1"), ("B1", "B2"), ("B2", "A"), ("A", "O"), ("A", "T1")]
        chain += [("T1", "T2"), ("T2", "T3")]
        self.capsules: list[tuple[np.ndarray, np.ndarray, float, float]] = []
        self.atria: list[np.ndarray] = []
        for side in (1.0, -1.0):
            jit = {k: rng.normal(0.0, 1.2, size=3) for k in nodes}
            rs = s * rng.uniform(0.85, 1.15)  # mild asymmetry
            pos = {
                k: np.array([side * p[0] * (0.7 + 0.3 * rs), p[1] * ls, p[2]]) + jit[k]
                for k, p in nodes.items()
            }
            for a, b in chain:
                self.capsules.append((pos[a], pos[b], nodes[a][3] * rs, nodes[b][3] * rs))
            self.atria.append(pos["A"])
        self.third_w = 1.0 + 1.6 * s
        self.fourth_scale = float(np.sqrt(s))
        self.vent_lo = np.array([-48.0, -48.0, -36.0])
        self.vent_hi = np.array([48.0, 60.0, 34.0])
        # Sampled once on a 1.5 mm grid (used by anatomy and by IVH lesions alike).
        sp = 1.5
        axes = [
            np.arange(lo, hi + sp, sp) for lo, hi in zip(self.vent_lo, self.vent_hi, strict=True)
        ]
        X, Y, Z = np.meshgrid(*[a.astype(F32) for a in axes], indexing="ij")
        d = np.full(X.shape, _BIG, dtype=F32)
        for va, vb, ra, rb in self.capsules:
            d = np.minimum(d, _capsule(X, Y, Z, va, vb, ra, rb))
        third = np.maximum(
            np.abs(X) - F32(self.third_w / 2),
            _ell(X * 0, Y, Z, (0.0, 1.0, -5.0), (1.0, 12.0 * ls, 11.0)),
        )
        d = np.minimum(d, third)
        fs = self.fourth_scale
        d = np.minimum(d, _ell(X, Y, Z, (0.0, 30.0, -45.0), (7.0 * fs, 4.0 * fs, 8.0 * fs)))
        self.vent_grid = np.ascontiguousarray(np.minimum(d, _FAR))
        self.vent_sp = sp

    def ventricle_bounds(self, margin: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
        """Head-frame bounding box of the ventricular system (plus ``margin`` mm)."""
        idx = np.argwhere(self.vent_grid < 0.0)
        if idx.size == 0:
            return self.vent_lo.copy(), self.vent_hi.copy()
        lo = self.vent_lo + idx.min(axis=0) * self.vent_sp - margin
        hi = self.vent_lo + idx.max(axis=0) * self.vent_sp + margin
        return lo, hi

    # ------------------------------------------------------------------ geometry fields
    def ventricles(self, x: Arr, y: Arr, z: Arr) -> Arr:
        """Signed distance to the lateral, third and fourth ventricles."""
        shape = np.shape(x)
        inv = F32(1.0 / self.vent_sp)
        lo = self.vent_lo.astype(F32)
        coords = np.stack(
            [
                (np.ravel(x) - lo[0]) * inv,
                (np.ravel(y) - lo[1]) * inv,
                (np.ravel(z) - lo[2]) * inv,
            ]
        )
        out = ndi.map_coordinates(
            self.vent_grid, coords, order=1, mode="constant", cval=float(_FAR), output=F32
        )
        return out.reshape(shape)

    def icc(self, x: Arr, y: Arr, z: Arr) -> Arr:
        """Signed distance to the intracranial cavity (inner table of the skull)."""
        ry = np.where(y < 0, F32(self.r_ant), F32(self.r_post))
        rz = np.where(z > 0, F32(self.r_sup), F32(self.r_inf))
        rx = F32(self.r_lat)
        qx, qy, qz = x / rx, y / ry, z / rz
        q = np.sqrt(qx * qx + qy * qy + qz * qz)
        g = np.sqrt((qx / rx) ** 2 + (qy / ry) ** 2 + (qz / rz) ** 2) / np.maximum(q, F32(1e-3))
        d = (q - F32(1.0)) / np.maximum(g, F32(1e-3))
        inv = F32(70.0) / np.maximum(q * F32(70.0), F32(1.0))
        d -= F32(2.0) * self.f_shape(x * inv, y * inv, z * inv)
        dz = self.floor(x, y) - z
        cos = self.floor_cos(x, y)
        # Slope-corrected distance near the floor, plain height difference far from it.
        cos = cos + (F32(1.0) - cos) * np.clip(np.abs(dz) * F32(1.0 / 25.0), 0.0, 1.0)
        d_floor = dz * cos
        return np.maximum(d, d_floor)

    def midline(self, x: Arr, y: Arr, z: Arr) -> Arr:
        """Signed distance to the (slightly wavy) mid-sagittal surface."""
        amp, ph = self.mid_wave
        return x - F32(self.mid_shift) - F32(amp) * np.sin(y * F32(1 / 45.0) + F32(ph))

    def callosal_floor(self, y: Arr) -> Arr:
        """Lowest ``z`` of the interhemispheric fissure (corpus callosum, then down to the floor)."""
        return F32(19.0) - F32(75.0) * smoothstep((np.abs(y + F32(3.0)) - F32(30.0)) / F32(22.0))

    def cerebellar(self, x: Arr, y: Arr, z: Arr) -> Arr:
        """Signed height above the tentorium (negative in the posterior fossa)."""
        return z - self.tent(x, y)

    def skull_thickness(self, x: Arr, y: Arr, z: Arr) -> Arr:
        """Skull thickness (mm): thin temporal squama, thick frontal/occipital bone and base."""
        t = F32(self.skull_t) * (F32(1.0) + F32(0.15) * self.f_bone(x * 0.3, y * 0.3, z * 0.3))
        temporal = smoothstep((np.abs(x) - F32(45.0)) / F32(15.0)) * smoothstep(
            (F32(20.0) - np.abs(z + F32(15.0))) / F32(12.0)
        )
        t = t * (F32(1.0) - F32(0.45) * temporal)
        t = t + F32(2.5) * smoothstep((np.abs(y) - F32(60.0)) / F32(20.0))
        base = np.clip(-(z + F32(30.0)), F32(0.0), F32(22.0))
        central = smoothstep((y + F32(35.0)) / F32(15.0)) * smoothstep(
            (F32(62.0) - np.abs(x)) / F32(15.0)
        )
        central = central * smoothstep((F32(40.0) - y) / F32(15.0))
        t = t + F32(0.6) * base * central
        fs = F32(self.frontal_sinus)
        if fs > 0:
            t = t + F32(6.0) * fs * np.exp(
                -((x / F32(20.0)) ** 2) - ((z + F32(12.0)) / F32(14.0)) ** 2
            ) * smoothstep((-y - F32(55.0)) / F32(10.0))
        # The anterior fossa floor (orbital roofs, cribriform plate) is a thin plate.
        under = smoothstep((self.floor(x, y) + F32(8.0) - z) / F32(6.0))
        anterior = smoothstep((F32(-18.0) - y) / F32(8.0)) * smoothstep((F32(75.0) + y) / F32(10.0))
        t = t + (F32(2.5) - t) * under * anterior
        return t

    def air_cavities(self, x: Arr, y: Arr, z: Arr) -> Arr:
        """Signed distance to air spaces: paranasal sinuses, nasal cavity, mastoid cells."""
        fs = self.frontal_sinus
        d = _ell(x, y, z, (0.0, -self.r_ant - 4.5, -12.0), (14.0 * fs + 0.1, 3.5 * fs + 0.1, 12.0))
        d = np.minimum(d, _ell(x, y, z, (0.0, -24.0, -52.0), (13.0, 11.0, 9.0)))  # sphenoid
        d = np.minimum(d, _ell(x, y, z, (0.0, -70.0, -72.0), (13.0, 26.0, 16.0)))  # nasal
        for s in (1.0, -1.0):
            d = np.minimum(d, _ell(x, y, z, (s * 30.0, -62.0, -82.0), (15.0, 17.0, 15.0)))
        cells = self.f_cells(x, y, z)
        eth = np.maximum(_ell(x, y, z, (0.0, -62.0, -48.0), (11.0, 18.0, 12.0)), -cells * 3)
        d = np.minimum(d, eth)
        for s in (1.0, -1.0):
            mast = _ell(x, y, z, (s * 60.0, 24.0, -60.0), (10.0, 13.0, 13.0))
            d = np.minimum(d, np.maximum(mast, (F32(0.2) - cells) * F32(3.0)))
        return d

    def orbits(self, x: Arr, y: Arr, z: Arr) -> tuple[Arr, Arr]:
        """Signed distances to the orbital cavities and to the globes."""
        orb = np.minimum(
            _ell(x, y, z, (31.0, -68.0, -44.0), (17.0, 24.0, 17.0)),
            _ell(x, y, z, (-31.0, -68.0, -44.0), (17.0, 24.0, 17.0)),
        )
        globe = np.minimum(
            _ell(x, y, z, (33.0, -80.0, -45.0), (12.0, 12.0, 12.0)),
            _ell(x, y, z, (-33.0, -80.0, -45.0), (12.0, 12.0, 12.0)),
        )
        return orb, globe

    def head_outer(self, x: Arr, y: Arr, z: Arr, d_icc: Arr, t_skull: Arr) -> Arr:
        """Signed distance to the skin (scalp, temporalis, face, nose and neck)."""
        scalp = F32(self.scalp_t) + F32(self.temporalis) * smoothstep(
            (np.abs(x) - F32(35.0)) / F32(25.0)
        ) * smoothstep((F32(30.0) - np.abs(z + F32(12.0))) / F32(20.0)) * smoothstep(
            (F32(45.0) - np.abs(y + F32(5.0))) / F32(30.0)
        )
        scalp = scalp + F32(0.8) * np.clip(-(z + F32(45.0)), 0, 50) * smoothstep(y / F32(20.0))
        d = d_icc - t_skull - scalp
        face = _ell(x, y, z, (0.0, -62.0, -72.0), (56.0, 44.0, 40.0))
        nose = _ell(x, y, z, (0.0, -100.0, -72.0), (11.0, 16.0, 18.0))
        neck = _ell(x, y, z, (0.0, 8.0, -118.0), (60.0, 62.0, 60.0))
        d = _smin(d, face, 10.0)
        d = _smin(d, nose, 6.0)
        return _smin(d, neck, 10.0)

    def cisterns(self, x: Arr, y: Arr, z: Arr) -> Arr:
        """Signed distance to the basal cisterns and Sylvian fissures (CSF)."""
        a = self.atrophy
        d = _ell(x, y, z, (0.0, -14.0, -25.0), (12.0 + 3 * a, 8.0, 4.5 + 2 * a))  # suprasellar
        d = np.minimum(d, _ell(x, y, z, (0.0, 1.0, -45.0), (9.0, 3.0 + a, 14.0)))  # prepontine
        d = np.minimum(d, _ell(x, y, z, (0.0, 24.0, -13.0), (9.0, 4.5 + a, 5.0)))  # quadrigeminal
        d = np.minimum(d, _ell(x, y, z, (0.0, 64.0, -64.0), (13.0, 8.0 + 3 * a, 8.0)))  # magna
        r = np.sqrt(x * x + (y - F32(9.0)) ** 2)
        ring = np.maximum(np.abs(r - F32(12.5)) - F32(1.3 + a), np.abs(z + F32(19.0)) - F32(7.0))
        d = np.minimum(d, np.maximum(ring, F32(-2.0) - y))  # ambient cisterns
        for s in (1.0, -1.0):
            zt = z - F32(0.25) * (np.abs(x) - F32(46.0)) - F32(0.15) * (y + F32(8.0))
            syl = _ell(x * F32(s), y, zt, (46.0, -8.0, -10.0), (22.0, 15.0, 1.4 + 2.2 * a))
            d = np.minimum(d, syl)
        return d

    def cisterns_cached(self, x: Arr, y: Arr, z: Arr) -> Arr:
        """:meth:`cisterns` read from a 1.5 mm grid computed on first use (fast for many points)."""
        if self._cistern_grid is None:
            sp = 1.5
            lo = np.array([-75.0, -40.0, -80.0])
            hi = np.array([75.0, 80.0, 15.0])
            axes = [np.arange(a, b + sp, sp).astype(F32) for a, b in zip(lo, hi, strict=True)]
            X, Y, Z = np.meshgrid(*axes, indexing="ij")
            grid = np.minimum(self.cisterns(X, Y, Z), _FAR)
            self._cistern_grid = (np.ascontiguousarray(grid), lo, sp)
        grid, lo, sp = self._cistern_grid
        shape = np.shape(x)
        inv = F32(1.0 / sp)
        coords = np.stack(
            [
                (np.ravel(x) - F32(lo[0])) * inv,
                (np.ravel(y) - F32(lo[1])) * inv,
                (np.ravel(z) - F32(lo[2])) * inv,
            ]
        )
        out = ndi.map_coordinates(
            grid, coords, order=1, mode="constant", cval=float(_FAR), output=F32
        )
        return out.reshape(shape)

    def sulcal(self, x: Arr, y: Arr, z: Arr, depth: Arr, cb: Arr) -> tuple[Arr, Arr]:
        """Sulcal field ``s`` (mm, zero on sulcal mid-surfaces) and sulcal half-width ``w`` (mm).

        CSF of sulci is where ``|s| < w``. ``depth`` is the depth below the brain surface,
        ``cb`` the signed height above the tentorium (negative = cerebellum).
        """
        r = np.sqrt(x * x + y * y + z * z)
        k = (F32(70.0) + F32(0.4) * (r - F32(70.0))) / np.maximum(r, F32(1.0))
        s = self.f_sulci(x * k, y * k, z * k) * F32(2.8)
        w = F32(self.sulcus_width) * smoothstep((F32(self.sulcus_depth) - depth) / F32(5.0))
        w = w * (F32(1.0) + F32(0.8) * np.exp(-np.maximum(depth, 0) / F32(2.0)))
        w = w * smoothstep(cb / F32(3.0))
        # Cerebellar folia: horizontal sheets, visible mainly with atrophy.
        in_cb = smoothstep(-cb / F32(3.0))
        sel = np.flatnonzero(np.ravel(in_cb) > 0)
        if sel.size:
            xs, ys, zs = np.ravel(x)[sel], np.ravel(y)[sel], np.ravel(z)[sel]
            fol = self.f_folia(xs * F32(0.35), (ys - F32(30.0)) * F32(0.35), zs) * F32(0.9)
            d = np.ravel(depth)[sel]
            wf = F32(0.15 + 0.6 * self.atrophy) * np.clip(F32(1.0) - d / F32(25.0), 0, 1)
            c = np.ravel(in_cb)[sel]
            s = np.array(s, dtype=F32).reshape(-1)
            w = np.array(w, dtype=F32).reshape(-1)
            s[sel] += (fol - s[sel]) * c
            w[sel] += wf * c
            s, w = s.reshape(np.shape(x)), w.reshape(np.shape(x))
        return s, w

    def sinuses(self, x: Arr, y: Arr, z: Arr, d_icc: Arr, d_mid: Arr) -> Arr:
        """Signed distance to the dural venous sinuses (superior sagittal, transverse)."""
        depth = -d_icc
        sss = np.maximum(np.abs(d_mid) - F32(4.5) + F32(0.6) * depth, d_icc)
        sss = np.maximum(sss, F32(-8.0) - z + F32(0.4) * np.clip(-y, 0, None))
        zts = F32(-34.0) - F32(0.1) * np.abs(x)
        ts = np.maximum(np.maximum(depth - F32(5.5), np.abs(z - zts) - F32(3.5)), F32(35.0) - y)
        return np.minimum(sss, np.maximum(ts, d_icc))

    # ------------------------------------------------------------------ value fields
    def brain_value(
        self, x: Arr, y: Arr, z: Arr, depth: Arr, sulc_dist: Arr, cb: Arr, ihf_dist: Arr
    ) -> Arr:
        """Brain parenchyma HU (grey/white, deep grey, cerebellum, brainstem, artefacts)."""
        t = self.tissue
        dc = np.minimum(np.minimum(depth, sulc_dist), ihf_dist)
        gm = smoothstep((F32(self.grey_thickness + 1.0) - dc) / F32(2.0))
        deep = np.zeros_like(x)
        for s in (1.0, -1.0):
            for c, r in (
                ((13.5, -15.0, 8.0), (5.5, 9.0, 8.0)),  # caudate head
                ((24.0, -4.0, -2.0), (5.5, 14.0, 9.0)),  # lentiform
                ((10.0, 11.0, 2.0), (8.0, 11.0, 8.0)),  # thalamus
            ):
                e = _ell(x, y, z, (s * c[0], c[1], c[2]), r)
                deep = np.maximum(deep, smoothstep(F32(0.5) - e / F32(3.0)))
        v = F32(t.white) + F32(t.grey - t.white) * gm
        v = v + (F32(t.deep_grey) - v) * deep
        stem = np.minimum(
            _ell(x, y, z, (0.0, 13.0, -42.0), (15.0, 12.0, 14.0)),
            _ell(x, y, z, (0.0, 9.0, -19.0), (11.0, 10.0, 10.0)),
        )
        v = v + (F32(t.brainstem) - v) * smoothstep(F32(0.5) - stem / F32(3.0))
        in_cb = smoothstep(F32(0.5) - cb / F32(3.0))
        v = v + (F32(t.cerebellum) - v) * in_cb * smoothstep(F32(0.5) + stem / F32(3.0))
        v = v + F32(self.inhomogeneity) * self.f_inhom(x, y, z)
        v = v + F32(self.beam_hardening) * np.exp(-np.maximum(depth, 0) / F32(5.0))
        # Tentorium (a faint dural sheet) inside the brain volume.
        tent = np.exp(-((cb / F32(1.2)) ** 2)) * smoothstep((y - self.y_pet(x, y)) / F32(4.0))
        v = v + (F32(t.dura) - v) * tent * F32(0.25)
        return v + self.streaks(x, y, z)

    def streaks(self, x: Arr, y: Arr, z: Arr) -> Arr:
        """Beam-hardening streaks in the posterior fossa (HU offsets)."""
        level = smoothstep((F32(-22.0) - z) / F32(12.0)) * smoothstep((z + F32(85.0)) / F32(10.0))
        if not np.any(level > 0):
            return np.zeros_like(x)
        s = F32(self.streak_strength)
        # Dark band between the petrous apices (Hounsfield bar).
        out = (
            F32(-14.0)
            * s
            * np.exp(-(((y - F32(8.0)) / F32(4.0)) ** 2))
            * smoothstep((F32(40.0) - np.abs(x)) / F32(10.0))
        )
        for ang, off, sign in zip(
            self.streak_angles, self.streak_offsets, self.streak_signs, strict=True
        ):
            dist = x * F32(np.cos(ang)) + (y - F32(15.0)) * F32(np.sin(ang)) - F32(off)
            out = out + F32(5.0 * sign) * s * np.exp(-((dist / F32(1.8)) ** 2))
        return out * level

    def soft_value(
        self, x: Arr, y: Arr, z: Arr, d_icc: Arr, t_skull: Arr, globe: Arr, orb: Arr
    ) -> Arr:
        """Soft-tissue HU outside the skull: scalp with a fat layer, muscle, fat, orbits."""
        t = self.tissue
        s = (d_icc - t_skull) / F32(self.scalp_t)
        fat_layer = np.exp(-(((s - F32(0.62)) / F32(0.2)) ** 2)) * F32(0.55)
        field = self.f_soft(x, y, z)
        skin = -self.head_outer(x, y, z, d_icc, t_skull)
        sub_fat = smoothstep((F32(2.0) - np.abs(skin - F32(5.0) - F32(2.0) * field)) / F32(2.0))
        face = smoothstep(-(z + F32(30.0)) / F32(10.0))
        blobs = smoothstep(field * F32(2.0) - F32(1.6)) * smoothstep(-(y + F32(20.0)) / F32(15.0))
        fat_face = np.maximum(sub_fat, blobs) * face
        fat = np.maximum(fat_layer, fat_face * F32(0.85))
        v = F32(t.soft) + (F32(t.fat) - F32(t.soft)) * fat
        muscle = (
            smoothstep((np.abs(x) - F32(45.0)) / F32(10.0))
            * smoothstep((F32(22.0) - np.abs(z + F32(10.0))) / F32(10.0))
            * smoothstep(s - F32(1.0))
        )
        v = v + (F32(t.muscle) - v) * muscle
        in_orb = smoothstep(F32(0.5) - orb / F32(2.0))
        v = v + (F32(t.fat) - v) * in_orb
        in_globe = smoothstep(F32(0.5) - globe / F32(1.5))
        return v + (F32(t.vitreous) - v) * in_globe

    def csf_space(self, x: Arr, y: Arr, z: Arr) -> Arr:
        """Signed distance to subarachnoid CSF (convexity, sulci, fissures, cisterns).

        Used to place subarachnoid hemorrhage; sulci are widened by 1 mm (blood distends them).
        """
        d_icc = self.icc(x, y, z)
        depth = -(d_icc + F32(self.gap))
        cb = self.cerebellar(x, y, z)
        s, w = self.sulcal(x, y, z, depth, cb)
        d = np.maximum(d_icc, depth)  # extra-axial band between inner table and brain surface
        d = np.minimum(d, np.abs(s) - w - F32(0.8))
        d = np.minimum(d, self.cisterns_cached(x, y, z))
        mid = self.midline(x, y, z)
        ihf = np.maximum(np.abs(mid) - F32(self.ihf_width + 0.6), self.callosal_floor(y) - z)
        d = np.minimum(d, ihf)
        return np.maximum(d, d_icc)
