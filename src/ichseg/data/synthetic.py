"""Synthetic head-CT phantoms with labelled intracranial hemorrhages.

Real training data cannot be fetched in the project's environment, so models are trained and
tested on phantoms: raw-HU ``int16`` head CTs (0.43-0.50 mm pixels, 4.8-6 mm slices by default,
random head size and pose) with skull (tables and diploe), scalp, face and skull base, brain with
grey/white matter, sulci, ventricles, cisterns, falx and venous sinuses, physiological
calcifications as hard negatives, and hemorrhages of the five subtypes (IPH with optional edema,
IVH, SAH, SDH, EDH), partial-volume edges, correlated scanner noise and posterior-fossa streaks.
Lesion volumes, multiplicity, shape and densities are calibrated against statistics of real scans
(``benchmarks/results/synth_calibration.md``; the model is described in
``docs/synthetic-phantoms.md``).

* :func:`generate_case` — one case; case ``index`` of ``seed`` is identical whatever else is
  generated (its random streams come from ``numpy.random.SeedSequence(seed, spawn_key=(index,))``).
* :func:`write_dataset` — a folder in the PhysioNet CT-ICH layout (``ct_scans/NNN.nii``,
  ``masks/NNN.nii``, ``masks_subtype/NNN.nii``, the per-slice diagnosis CSV, demographics and
  ``synthetic_dataset.json``) that :func:`ichseg.data.open_physionet` reads.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ichseg.data.subtypes import PHYSIONET_CSV_COLUMNS, PHYSIONET_SUBTYPE_COLUMNS, Subtype
from ichseg.data.synthetic_anatomy import HeadAnatomy
from ichseg.data.synthetic_fields import F32, ScanGeometry, correlated_noise, smoothstep
from ichseg.data.synthetic_lesions import (
    IPH_KIND_P,
    IPH_KINDS,
    LesionSpec,
    RasterLesion,
    calcification_specs,
    extra_axial_spec,
    iph_spec,
    ivh_spec,
    rasterize,
    sah_spec,
)
from ichseg.data.synthetic_render import RenderedHead, Tissue, render_head
from ichseg.errors import ConfigError, DatasetLayoutError
from ichseg.io.nifti import write_nifti
from ichseg.io.volume import Intensity, Volume, make_affine

__all__ = [
    "GENERATOR_VERSION",
    "PhantomConfig",
    "SyntheticCase",
    "Tissue",
    "case_seed_sequence",
    "generate_case",
    "write_dataset",
]

#: Bumped whenever the same (config, seed, index) would produce different arrays.
GENERATOR_VERSION = "1.0.0"

_DEFAULT_SUBTYPE_P: dict[Subtype, float] = {
    Subtype.IPH: 0.75,
    Subtype.IVH: 0.22,
    Subtype.SAH: 0.12,
    Subtype.SDH: 0.12,
    Subtype.EDH: 0.05,
}


def _pair(
    name: str, v: Any, lo: float = -math.inf, hi: float = math.inf, ordered: bool = True
) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in v)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a pair of numbers (low, high), got {v!r}") from exc
    bad = not (math.isfinite(a) and math.isfinite(b)) or min(a, b) < lo or max(a, b) > hi
    if bad or (ordered and a > b):
        order = "low <= high, " if ordered else ""
        raise ConfigError(f"{name} must be two numbers in [{lo}, {hi}] ({order}got ({a}, {b}))")
    return (a, b)


def _prob(name: str, v: Any) -> float:
    try:
        p = float(v)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a probability, got {v!r}") from exc
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"{name} must be in [0, 1], got {p}")
    return p


@dataclass(frozen=True)
class PhantomConfig:
    """Parameters of the phantom generator (ranges are sampled uniformly per case).

    ``shape`` is ``(i, j, k)``: in-plane columns, rows and slices. For small test volumes use
    :meth:`for_shape`, which scales the spacing so the phantom keeps a real head's size.
    """

    shape: tuple[int, int, int] = (512, 512, 32)
    inplane_spacing_mm: tuple[float, float] = (0.43, 0.5)
    slice_spacing_mm: tuple[float, float] = (4.8, 6.0)
    #: Probability that a case has no hemorrhage at all.
    hemorrhage_free_fraction: float = 0.15
    #: Probability of each subtype in a case with hemorrhage (at least one is always drawn).
    subtype_probabilities: Mapping[Subtype, float] = field(
        default_factory=lambda: dict(_DEFAULT_SUBTYPE_P)
    )
    #: Total hemorrhage volume per case: split log-normal (median, sigma below, sigma above).
    volume_ml_median: float = 6.3
    volume_log_sigma: tuple[float, float] = (1.9, 1.3)
    volume_ml_range: tuple[float, float] = (0.05, 150.0)
    #: Probability that another IPH focus accompanies the first (applied twice).
    extra_iph_probability: float = 0.2
    edema_probability: float = 0.6
    calcification_probability: float = 0.6
    head_holder_probability: float = 0.5
    #: Probability of -1024 HU padding outside the circular reconstruction field of view.
    fov_padding_probability: float = 0.3
    #: Scanner noise as a median local std over 5x5 pixels (HU), and its per-case factor range.
    #: Brain texture adds a little: the measured median local std in brain is then ~2.5 HU.
    noise_hu: float = 2.35
    noise_jitter: tuple[float, float] = (0.8, 1.25)
    head_scale: tuple[float, float] = (0.9, 1.07)
    yaw_deg: float = 12.0
    pitch_deg: tuple[float, float] = (-6.0, 18.0)
    roll_deg: float = 5.0
    age_years: tuple[float, float] = (20.0, 92.0)
    #: In-plane resolution (mm) at which the anatomy's implicit fields are evaluated.
    lowres_mm: float = 2.0

    def __post_init__(self) -> None:
        try:
            shape = tuple(int(s) for s in self.shape)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"shape must be three integers, got {self.shape!r}") from exc
        if len(shape) != 3 or min(shape) < 1 or min(shape[:2]) < 8:
            raise ConfigError(f"shape must be (i, j, k) with i, j >= 8 and k >= 1, got {shape}")
        if max(shape) > 2048:
            raise ConfigError(f"shape {shape} is too large (at most 2048 per axis)")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(
            self,
            "inplane_spacing_mm",
            _pair("inplane_spacing_mm", self.inplane_spacing_mm, 0.05, 20),
        )
        object.__setattr__(
            self, "slice_spacing_mm", _pair("slice_spacing_mm", self.slice_spacing_mm, 0.2, 50)
        )
        for name in (
            "hemorrhage_free_fraction",
            "extra_iph_probability",
            "edema_probability",
            "calcification_probability",
            "head_holder_probability",
            "fov_padding_probability",
        ):
            object.__setattr__(self, name, _prob(name, getattr(self, name)))
        probs: dict[Subtype, float] = {}
        try:
            items = dict(self.subtype_probabilities).items()
        except (TypeError, ValueError) as exc:
            raise ConfigError("subtype_probabilities must map subtypes to probabilities") from exc
        for k, v in items:
            try:
                st = Subtype[k.upper()] if isinstance(k, str) else Subtype(int(k))
            except (KeyError, ValueError) as exc:
                raise ConfigError(f"unknown subtype {k!r} in subtype_probabilities") from exc
            probs[st] = _prob(f"subtype_probabilities[{st.name}]", v)
        if not any(p > 0 for p in probs.values()) and self.hemorrhage_free_fraction < 1.0:
            raise ConfigError("subtype_probabilities: at least one subtype needs p > 0")
        object.__setattr__(self, "subtype_probabilities", probs)
        if not (0.001 <= float(self.volume_ml_median) <= 500):
            raise ConfigError(
                f"volume_ml_median must be in [0.001, 500], got {self.volume_ml_median}"
            )
        object.__setattr__(
            self,
            "volume_log_sigma",
            _pair("volume_log_sigma", self.volume_log_sigma, 0, 5, ordered=False),
        )
        object.__setattr__(
            self, "volume_ml_range", _pair("volume_ml_range", self.volume_ml_range, 0.001, 2000)
        )
        if not (0.0 <= float(self.noise_hu) <= 100.0):
            raise ConfigError(f"noise_hu must be in [0, 100], got {self.noise_hu}")
        object.__setattr__(self, "noise_jitter", _pair("noise_jitter", self.noise_jitter, 0, 10))
        object.__setattr__(self, "head_scale", _pair("head_scale", self.head_scale, 0.5, 1.5))
        object.__setattr__(self, "pitch_deg", _pair("pitch_deg", self.pitch_deg, -45, 45))
        object.__setattr__(self, "age_years", _pair("age_years", self.age_years, 0, 120))
        for name in ("yaw_deg", "roll_deg"):
            v = float(getattr(self, name))
            if not 0.0 <= v <= 45.0:
                raise ConfigError(f"{name} must be in [0, 45], got {v}")
        if not 0.2 <= float(self.lowres_mm) <= 40.0:
            raise ConfigError(f"lowres_mm must be in [0.2, 40], got {self.lowres_mm}")

    @classmethod
    def for_shape(cls, shape: tuple[int, int, int], **overrides: Any) -> PhantomConfig:
        """A config for another grid size with the spacing scaled to keep a real head's size.

        E.g. ``for_shape((64, 64, 12))`` gives 3.4-4.0 mm pixels and 12.8-16 mm slices.
        """
        base = cls()
        fx = base.shape[0] / float(shape[0])
        fz = base.shape[2] / float(shape[2])
        kw: dict[str, Any] = {
            "shape": tuple(shape),
            "inplane_spacing_mm": tuple(s * fx for s in base.inplane_spacing_mm),
            "slice_spacing_mm": tuple(s * fz for s in base.slice_spacing_mm),
            "lowres_mm": max(base.lowres_mm, base.inplane_spacing_mm[1] * fx),
        }
        kw.update(overrides)
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dictionary (subtypes by name); inverse of :meth:`from_dict`."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "subtype_probabilities":
                v = {k.name: float(p) for k, p in v.items()}
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PhantomConfig:
        """Build a config from :meth:`to_dict` output (unknown keys raise :class:`ConfigError`)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown PhantomConfig field(s): {', '.join(unknown)}")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
        return cls(**kw)


@dataclass
class SyntheticCase:
    """One phantom: image (int16 HU), binary and subtype masks, per-slice subtypes and metadata."""

    image: Volume
    mask: Volume
    subtype_mask: Volume
    slice_subtypes: list[set[Subtype]]
    info: dict[str, Any]
    tissue: Volume | None = None  #: :class:`Tissue` labels when requested


def case_seed_sequence(seed: int, index: int) -> np.random.SeedSequence:
    """The seed sequence of case ``index`` of dataset ``seed`` (independent of other cases)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ConfigError(f"case index must be a non-negative integer, got {index!r}")
    return np.random.SeedSequence(int(seed), spawn_key=(int(index),))


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    ry = np.array([[cr, 0.0, sr], [0.0, 1.0, 0.0], [-sr, 0.0, cr]])
    return rz @ rx @ ry


def _sample_geometry(cfg: PhantomConfig, rng: np.random.Generator) -> tuple[ScanGeometry, dict]:
    ni, nj, nk = cfg.shape
    sp = float(rng.uniform(*cfg.inplane_spacing_mm))
    thick = float(rng.uniform(*cfg.slice_spacing_mm))
    s = float(rng.uniform(*cfg.head_scale))
    scale = s * np.exp(rng.normal(0.0, 0.025, 3))
    yaw = math.radians(rng.uniform(-cfg.yaw_deg, cfg.yaw_deg))
    pitch = math.radians(rng.uniform(*cfg.pitch_deg))
    roll = math.radians(rng.uniform(-cfg.roll_deg, cfg.roll_deg))
    rot = _rotation(yaw, pitch, roll)
    # Vertical placement: the lowest slice near the skull base, the vertex covered if possible.
    coverage = nk * thick
    bottom = rng.uniform(-90.0, -70.0) * s
    top = bottom + coverage
    want_top = rng.uniform(70.0, 82.0) * s
    if top < want_top:
        bottom += (want_top - top) * rng.uniform(0.6, 1.0)
    cz = (nk - 1) * thick / 2.0 - (bottom + coverage / 2.0 - thick / 2.0)
    cx = (ni - 1) * sp / 2.0 + rng.uniform(-8.0, 8.0)
    cy = (nj - 1) * sp / 2.0 + rng.uniform(-10.0, 6.0)
    geom = ScanGeometry(
        (nk, nj, ni), sp, thick, np.array([cx, cy, cz]), rot, np.asarray(scale, dtype=np.float64)
    )
    info = {
        "spacing_mm": [sp, sp, thick],
        "head_scale": [float(v) for v in scale],
        "yaw_deg": math.degrees(yaw),
        "pitch_deg": math.degrees(pitch),
        "roll_deg": math.degrees(roll),
        "head_centre_scanner_mm": [float(cx), float(cy), float(cz)],
    }
    return geom, info


def _split_lognormal(rng: np.random.Generator, median: float, sig: tuple[float, float]) -> float:
    z = rng.standard_normal()
    return float(median * math.exp(z * (sig[0] if z < 0 else sig[1])))


def _iph_kind(rng: np.random.Generator, volume_ml: float) -> str:
    """IPH site; infratentorial bleeds are small (cerebellum < 30 mL, pons < 8 mL)."""
    p = np.array(IPH_KIND_P, dtype=np.float64)
    kinds = list(IPH_KINDS)
    if volume_ml > 30.0:
        p[kinds.index("cerebellar")] = 0.0
    if volume_ml > 8.0:
        p[kinds.index("brainstem")] = 0.0
    return str(rng.choice(kinds, p=p / p.sum()))


def _sample_lesions(
    cfg: PhantomConfig, rng: np.random.Generator, anat: HeadAnatomy, geom: ScanGeometry
) -> tuple[list[LesionSpec], float]:
    """Draw the subtypes, the total volume and one spec per lesion."""
    if rng.random() < cfg.hemorrhage_free_fraction:
        return [], 0.0
    probs = cfg.subtype_probabilities
    chosen = [st for st in Subtype if rng.random() < probs.get(st, 0.0)]
    if not chosen:
        pool = [st for st in Subtype if probs.get(st, 0.0) > 0]
        p = np.array([probs[st] for st in pool], dtype=np.float64)
        chosen = [pool[int(rng.choice(len(pool), p=p / p.sum()))]]
    total = float(
        np.clip(
            _split_lognormal(rng, cfg.volume_ml_median, cfg.volume_log_sigma), *cfg.volume_ml_range
        )
    )
    plan: list[tuple[Subtype, str]] = []
    for st in chosen:
        if st == Subtype.IPH:
            kind = _iph_kind(rng, total)
            plan.append((st, kind))
            n_extra = int(rng.random() < cfg.extra_iph_probability)
            n_extra += int(n_extra and rng.random() < cfg.extra_iph_probability)
            if kind == "contusion":
                n_extra += int(rng.integers(0, 3))
            for _ in range(n_extra):
                plan.append(
                    (
                        st,
                        "contusion"
                        if kind == "contusion"
                        else str(rng.choice(IPH_KINDS, p=IPH_KIND_P)),
                    )
                )
        elif st == Subtype.SDH and rng.random() < 0.1:
            plan += [(st, ""), (st, "")]
        else:
            plan.append((st, ""))
    weights = rng.gamma(1.0, 1.0, len(plan))
    weights[0] += rng.gamma(3.0, 1.0)
    shares = weights / weights.sum()
    specs: list[LesionSpec] = []
    for (st, kind), share in zip(plan, shares, strict=True):
        vol = max(total * float(share), cfg.volume_ml_range[0] * 0.5)
        spec: LesionSpec | None
        if st == Subtype.IPH:
            spec = iph_spec(rng, anat, vol, kind, cfg.edema_probability)
        elif st == Subtype.IVH:
            spec = ivh_spec(rng, anat, geom, vol)
        elif st == Subtype.SAH:
            spec = sah_spec(rng, anat, vol)
        else:
            spec = extra_axial_spec(rng, anat, vol, st)
        if spec is not None:
            specs.append(spec)
    return specs, total


def _paint(image: np.ndarray, lesion: RasterLesion, head: RenderedHead) -> None:
    """Composite edema (over brain only) and then the lesion material into the image."""
    sub = image[lesion.box.slices]
    if lesion.edema_fraction is not None:
        fb = head.layers.brain_fraction(lesion.box)
        w = lesion.edema_fraction * fb
        sub += w * (F32(lesion.spec.edema_hu) - sub)
    sub += lesion.fraction * (lesion.value - sub)


def generate_case(
    config: PhantomConfig | None = None, seed: int = 0, index: int = 0, *, tissue_map: bool = False
) -> SyntheticCase:
    """Generate case ``index`` of dataset ``seed`` (deterministic; see the module docstring)."""
    cfg = config if config is not None else PhantomConfig()
    if not isinstance(cfg, PhantomConfig):
        raise ConfigError(f"config must be a PhantomConfig, got {type(cfg).__name__}")
    ss = case_seed_sequence(seed, index)
    r_geom, r_anat, r_les, r_noise, r_demo = (np.random.default_rng(s) for s in ss.spawn(5))
    age = float(r_demo.uniform(*cfg.age_years))
    sex = "Male" if r_demo.random() < 0.55 else "Female"
    geom, geom_info = _sample_geometry(cfg, r_geom)
    anat = HeadAnatomy(r_anat, age)
    head = render_head(
        anat,
        geom,
        cfg.lowres_mm,
        r_anat,
        holder_probability=cfg.head_holder_probability,
        tissue_map=tissue_map,
    )
    image = head.image
    Z, Y, X = geom.shape_zyx
    voxel_ml = geom.spacing * geom.spacing * geom.thickness / 1000.0

    # Calcifications first: blood painted later covers them.
    calcs = []
    for spec in calcification_specs(r_les, anat, cfg.calcification_probability):
        ras = rasterize(spec, geom, voxel_ml)
        if ras is None:
            continue
        image[ras.box.slices] += ras.fraction * (ras.value - image[ras.box.slices])
        if head.tissue is not None:
            head.tissue[ras.box.slices][ras.mask] = Tissue.CALCIFICATION
        calcs.append({"kind": spec.kind, "hu": spec.hu, "centre_head_mm": spec.centre.tolist()})

    specs, total_target = _sample_lesions(cfg, r_les, anat, geom)
    subtype = np.zeros((Z, Y, X), dtype=np.uint8)
    instance = np.zeros((Z, Y, X), dtype=np.uint8)
    rasters: list[RasterLesion] = []
    for spec in specs:
        ras = rasterize(spec, geom, voxel_ml)
        if ras is None:
            continue
        _paint(image, ras, head)
        rasters.append(ras)
        lid = len(rasters)
        assert spec.subtype is not None
        subtype[ras.box.slices][ras.mask] = int(spec.subtype)
        instance[ras.box.slices][ras.mask] = lid
        if head.tissue is not None and ras.edema_fraction is not None:
            t = head.tissue[ras.box.slices]
            t[(ras.edema_fraction > 0.5) & (t == Tissue.BRAIN)] = Tissue.EDEMA

    # Scanner noise (stronger in the posterior fossa), then quantisation.
    noise_level = cfg.noise_hu * float(r_noise.uniform(*cfg.noise_jitter))
    if noise_level > 0:
        smooth = geom.spacing < 0.8
        zs = np.arange(Z) * geom.thickness - geom.centre[2]
        z_head = (geom.to_head[2, 2] * zs).astype(F32)
        per_slice = F32(noise_level) * (F32(1.0) + F32(0.35) * smoothstep((-z_head - 20.0) / 25.0))
        noise = correlated_noise(r_noise, (Z, Y, X), smooth)
        noise *= per_slice[:, None, None]
        image += noise
    fov_pad = bool(r_noise.random() < cfg.fov_padding_probability)
    if fov_pad:
        yy = (np.arange(Y) - (Y - 1) / 2.0)[:, None]
        xx = (np.arange(X) - (X - 1) / 2.0)[None, :]
        outside = (yy * yy + xx * xx) > (min(X, Y) / 2.0) ** 2
        image[:, outside] = -1024.0
    np.clip(image, -1024.0, 3071.0, out=image)
    img16 = np.rint(image).astype(np.int16)

    if head.tissue is not None:
        head.tissue[subtype > 0] = Tissue.HEMORRHAGE

    # Per-lesion statistics on the final label maps.
    lesions_info = []
    slice_sets: list[set[Subtype]] = [set() for _ in range(Z)]
    affine = make_affine(
        (geom.spacing, geom.spacing, geom.thickness),
        "LPS",
        (
            (X - 1) * geom.spacing / 2.0,
            (Y - 1) * geom.spacing / 2.0,
            -(Z - 1) * geom.thickness / 2.0,
        ),
    )
    for lid, ras in enumerate(rasters, start=1):
        sub_inst = instance[ras.box.slices] == lid
        n = int(sub_inst.sum())
        spec = ras.spec
        assert spec.subtype is not None
        per_slice = sub_inst.any(axis=(1, 2))
        ks = np.flatnonzero(per_slice) + ras.box.z0
        for k in ks:
            slice_sets[int(k)].add(spec.subtype)
        entry: dict[str, Any] = {
            "subtype": spec.subtype.name,
            "kind": spec.kind,
            "volume_ml": n * voxel_ml,
            "voxels": n,
            "target_ml": spec.target_ml,
            "hu": spec.hu,
            "centre_head_mm": [float(v) for v in spec.centre],
        }
        if n:
            kk, jj, ii = np.nonzero(sub_inst)
            cen = np.array([ii.mean() + ras.box.x0, jj.mean() + ras.box.y0, kk.mean() + ras.box.z0])
            entry["centre_voxel_ijk"] = [float(v) for v in cen]
            entry["centre_ras_mm"] = [float(v) for v in (affine[:3, :3] @ cen + affine[:3, 3])]
            entry["slices_k"] = [int(ks.min()), int(ks.max())]
        if ras.edema_fraction is not None:
            entry["edema_mm"] = spec.edema_mm
            entry["edema_hu"] = spec.edema_hu
            entry["edema_ml"] = float(
                ((ras.edema_fraction > 0.5) & ~(subtype[ras.box.slices] > 0)).sum() * voxel_ml
            )
        entry.update({k: v for k, v in spec.params.items()})
        lesions_info.append(entry)
    lesions_info = [e for e in lesions_info if e["voxels"] > 0]

    total_vox = int(np.count_nonzero(subtype))
    info: dict[str, Any] = {
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "index": int(index),
        "age_years": round(age, 1),
        "sex": sex,
        "shape_ijk": list(cfg.shape),
        **geom_info,
        "atrophy": anat.atrophy,
        "tissue_hu": {k: float(v) for k, v in vars(anat.tissue).items()},
        "noise_hu": noise_level,
        "fov_padding": fov_pad,
        "head_holder": head.holder or None,
        "calcifications": calcs,
        "hemorrhage": total_vox > 0,
        "target_volume_ml": total_target,
        "volume_ml": total_vox * voxel_ml,
        "lesions": lesions_info,
    }
    # (Z, Y, X) -> (i, j, k) views: F-ordered arrays, the native NIfTI layout.
    meta = {"synthetic": True, "seed": int(seed), "index": int(index)}
    image_vol = Volume(img16.transpose(2, 1, 0), affine, Intensity.hu(), dict(meta))
    mask_vol = Volume(
        (subtype > 0).astype(np.uint8).transpose(2, 1, 0), affine, Intensity.label(), dict(meta)
    )
    sub_vol = Volume(subtype.transpose(2, 1, 0), affine, Intensity.label(), dict(meta))
    tissue_vol = None
    if head.tissue is not None:
        tissue_vol = Volume(head.tissue.transpose(2, 1, 0), affine, Intensity.label(), dict(meta))
    return SyntheticCase(image_vol, mask_vol, sub_vol, slice_sets, info, tissue_vol)


# ---------------------------------------------------------------------------------- dataset
def patient_id(number: int) -> str:
    """Zero-padded patient number used in file names (``1 -> "001"``)."""
    return f"{number:03d}"


def write_dataset(
    out_dir: str | Path,
    n_cases: int,
    seed: int = 0,
    config: PhantomConfig | None = None,
    progress: bool = True,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``n_cases`` phantoms in the PhysioNet CT-ICH layout under ``out_dir``.

    Patient ``n`` (1-based, files ``NNN.nii``) is case ``index = n - 1`` of ``seed``. Refuses to
    write into a folder that already holds a dataset unless ``overwrite``.
    """
    cfg = config if config is not None else PhantomConfig()
    if isinstance(n_cases, bool) or not isinstance(n_cases, (int, np.integer)) or n_cases < 1:
        raise ConfigError(f"n_cases must be a positive integer, got {n_cases!r}")
    case_seed_sequence(seed, 0)  # validates the seed
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DatasetLayoutError(f"{out}: exists and is not a folder")
    marker = out / "synthetic_dataset.json"
    if not overwrite and (marker.exists() or (out / "ct_scans").exists()):
        raise DatasetLayoutError(
            f"{out}: already holds a dataset (ct_scans/ or synthetic_dataset.json); "
            "choose an empty folder or pass overwrite=True (--overwrite)"
        )
    for sub in ("ct_scans", "masks", "masks_subtype"):
        (out / sub).mkdir(parents=True, exist_ok=True)

    rows: list[list[int]] = []
    demo: list[list[Any]] = []
    cases: list[dict[str, Any]] = []
    sub_cols = [c for c in PHYSIONET_CSV_COLUMNS if c in PHYSIONET_SUBTYPE_COLUMNS.values()]
    col_of = {v: k for k, v in PHYSIONET_SUBTYPE_COLUMNS.items()}
    for index in _progress(range(int(n_cases)), progress, "synthesising"):
        case = generate_case(cfg, seed, index)
        number = index + 1
        pid = patient_id(number)
        write_nifti(case.image, out / "ct_scans" / f"{pid}.nii")
        write_nifti(case.mask, out / "masks" / f"{pid}.nii")
        write_nifti(case.subtype_mask, out / "masks_subtype" / f"{pid}.nii")
        for k, present in enumerate(case.slice_subtypes):
            flags = [int(col_of[c] in present) for c in sub_cols]
            row = {c: f for c, f in zip(sub_cols, flags, strict=True)}
            row.update(
                PatientNumber=number,
                SliceNumber=k + 1,
                No_Hemorrhage=int(not present),
                Fracture_Yes_No=0,
            )
            rows.append([row[c] for c in PHYSIONET_CSV_COLUMNS])
        demo.append([number, round(case.info["age_years"]), case.info["sex"]])
        cases.append({"patient_number": number, "file": f"{pid}.nii", **case.info})

    with (out / "hemorrhage_diagnosis_raw_ct.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(PHYSIONET_CSV_COLUMNS)
        w.writerows(rows)
    with (out / "patient_demographics.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Patient Number", "Age (years)", "Gender"])
        w.writerows(demo)
    meta = {
        "generator": "ichseg.data.synthetic",
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "n_cases": int(n_cases),
        "config": cfg.to_dict(),
        "cases": cases,
    }
    marker.write_text(json.dumps(meta, indent=1, default=_json_default))
    return out


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _progress(it: range, enabled: bool, what: str):  # type: ignore[no-untyped-def]
    if not enabled:
        yield from it
        return
    from ichseg.progress import progress_bar

    with progress_bar(transient=False) as bar:
        task = bar.add_task(what, total=len(it))
        for i in it:
            yield i
            bar.advance(task)
