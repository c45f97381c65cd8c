"""Volumes that carry their geometry and intensity meaning.

Conventions (used everywhere in ichseg):

* ``Volume.array`` is indexed ``(i, j, k)`` in voxel order as stored by NIfTI/nibabel;
  ``k`` is the slice (axial) axis after :func:`to_canonical`.
* ``Volume.affine`` maps voxel indices ``(i, j, k, 1)`` to **RAS+ world millimetres** (the NIfTI
  convention). DICOM/ITK LPS coordinates are converted on reading and back on writing.
* The **canonical orientation** for processing is axis codes ``("L", "P", "S")``: ``i`` runs to the
  patient's left, ``j`` to posterior, ``k`` to superior. This is the native layout of axial DICOM
  slices, so ``array[:, :, k].T`` (rows = ``j``, columns = ``i``) displays in the radiological
  convention (patient's right on the image's left, anterior at the top). Networks see
  ``(Z, Y, X) = array.transpose(2, 1, 0)`` (:meth:`Volume.zyx`).
* Prompts and masks are stored in voxel indices together with the affine and shape they refer to.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import nibabel as nib
import numpy as np
from nibabel import orientations as nio

from ichseg.errors import DimensionalityError, GeometryError, IntensityError

CANONICAL_AXCODES: tuple[str, str, str] = ("L", "P", "S")


class IntensityKind(StrEnum):
    """What the stored numbers mean."""

    HU = "hu"  #: raw Hounsfield units
    WINDOWED = "windowed"  #: already mapped from an HU window to ``stored_range``
    LABEL = "label"  #: integer labels (masks)
    UNKNOWN = "unknown"  #: not CT or not known; callers must decide


@dataclass(frozen=True)
class Window:
    """An HU display/processing window given by level (centre) and width."""

    level: float
    width: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.level) and np.isfinite(self.width)) or self.width <= 0:
            raise IntensityError(f"invalid window level={self.level} width={self.width}")

    @property
    def lo(self) -> float:
        return self.level - self.width / 2.0

    @property
    def hi(self) -> float:
        return self.level + self.width / 2.0

    @classmethod
    def from_bounds(cls, lo: float, hi: float) -> Window:
        return cls(level=(lo + hi) / 2.0, width=hi - lo)


@dataclass(frozen=True)
class Intensity:
    """Intensity meaning of a volume.

    For ``WINDOWED`` volumes, ``window`` is the HU window that was mapped linearly onto
    ``stored_range`` (e.g. 0..255) with clipping; ``window`` is ``None`` when unknown.
    """

    kind: IntensityKind = IntensityKind.HU
    window: Window | None = None
    stored_range: tuple[float, float] | None = None
    #: How the meaning was established, e.g. ``"skull-stripped (no air/bone)"`` or
    #: ``"window assumed brain 40/80"``; informative only (not part of equality).
    note: str = field(default="", compare=False)

    @classmethod
    def hu(cls) -> Intensity:
        return cls(IntensityKind.HU)

    @classmethod
    def label(cls) -> Intensity:
        return cls(IntensityKind.LABEL)

    @classmethod
    def windowed(
        cls, window: Window | None, stored_range: tuple[float, float] = (0.0, 255.0)
    ) -> Intensity:
        return cls(IntensityKind.WINDOWED, window, (float(stored_range[0]), float(stored_range[1])))

    def with_note(self, note: str) -> Intensity:
        """The same meaning with ``note`` recorded (see :attr:`note`)."""
        return dataclasses.replace(self, note=note)

    def describe(self) -> str:
        """One phrase for reports: ``"raw HU"``, ``"windowed 0..255 from L40/W80 (...)"``..."""
        if self.kind == IntensityKind.HU:
            text = "raw HU"
        elif self.kind == IntensityKind.WINDOWED:
            rng = ""
            if self.stored_range is not None:
                rng = f" {self.stored_range[0]:g}..{self.stored_range[1]:g}"
            win = (
                "unknown window"
                if self.window is None
                else f"L{self.window.level:g}/W{self.window.width:g}"
            )
            text = f"windowed{rng} from {win}"
        else:
            text = str(self.kind)
        return f"{text}, {self.note}" if self.note else text

    def to_hu(self, array: np.ndarray) -> np.ndarray:
        """Approximate HU values of ``array`` (float32). Clipped values stay at the window edge."""
        if self.kind == IntensityKind.HU:
            return np.asarray(array, dtype=np.float32)
        if self.kind == IntensityKind.WINDOWED:
            if self.window is None or self.stored_range is None:
                raise IntensityError(
                    "volume is already windowed but its window is unknown; "
                    "pass the window it came from (e.g. --input-window 40,80) to map it back to HU"
                )
            s0, s1 = self.stored_range
            frac = (np.asarray(array, dtype=np.float32) - s0) / (s1 - s0)
            return (self.window.lo + frac * self.window.width).astype(np.float32)
        raise IntensityError(f"cannot convert intensities of kind {self.kind!s} to HU")


@dataclass
class Volume:
    """A 3D array with its voxel-to-RAS affine, intensity meaning and source metadata."""

    array: np.ndarray
    affine: np.ndarray
    intensity: Intensity = field(default_factory=Intensity.hu)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        if self.array.ndim != 3:
            raise DimensionalityError(
                f"expected a 3D volume, got {self.array.ndim}D array of shape {self.array.shape}"
            )
        if min(self.array.shape) < 1:
            raise DimensionalityError(f"volume has an empty axis: shape {self.array.shape}")
        self.affine = validate_affine(self.affine)

    # --- geometry -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along ``(i, j, k)``."""
        return spacing_from_affine(self.affine)

    @property
    def axcodes(self) -> tuple[str, str, str]:
        return tuple(nib.aff2axcodes(self.affine))  # type: ignore[return-value]

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (|det| of the affine's 3x3 part / 1000)."""
        return float(abs(np.linalg.det(self.affine[:3, :3])) / 1000.0)

    @property
    def is_label(self) -> bool:
        return self.intensity.kind == IntensityKind.LABEL

    def same_geometry(self, other: Volume, atol: float = 1e-3) -> bool:
        return self.shape == other.shape and bool(np.allclose(self.affine, other.affine, atol=atol))

    def with_array(
        self, array: np.ndarray, intensity: Intensity | None = None, **meta: Any
    ) -> Volume:
        """A new volume on the same grid (shape must match)."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise GeometryError(
                f"array shape {array.shape} does not match volume shape {self.array.shape}"
            )
        return Volume(
            array,
            self.affine.copy(),
            intensity if intensity is not None else self.intensity,
            {**self.meta, **meta},
        )

    def as_label(self, array: np.ndarray, **meta: Any) -> Volume:
        """A label volume (uint8) on this grid."""
        return self.with_array(np.asarray(array).astype(np.uint8), Intensity.label(), **meta)

    def zyx(self) -> np.ndarray:
        """The array as ``(Z, Y, X)`` (a view), the layout networks use."""
        return self.array.transpose(2, 1, 0)

    def from_zyx(self, array_zyx: np.ndarray, intensity: Intensity | None = None) -> Volume:
        """Inverse of :meth:`zyx`: wrap a ``(Z, Y, X)`` array on this volume's grid."""
        return self.with_array(np.asarray(array_zyx).transpose(2, 1, 0), intensity)

    def hu(self) -> np.ndarray:
        """Intensities in (approximate) HU, float32."""
        return self.intensity.to_hu(self.array)

    def world_to_voxel(self, xyz_ras: np.ndarray) -> np.ndarray:
        """Map RAS mm points ``(N, 3)`` to continuous voxel indices ``(N, 3)``."""
        pts = np.atleast_2d(np.asarray(xyz_ras, dtype=np.float64))
        inv = np.linalg.inv(self.affine)
        return pts @ inv[:3, :3].T + inv[:3, 3]

    def voxel_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """Map voxel indices ``(N, 3)`` to RAS mm ``(N, 3)``."""
        pts = np.atleast_2d(np.asarray(ijk, dtype=np.float64))
        return pts @ self.affine[:3, :3].T + self.affine[:3, 3]

    def describe(self) -> str:
        sp = ", ".join(f"{s:.3g}" for s in self.spacing)
        return (
            f"shape {self.shape}, spacing ({sp}) mm, orientation {''.join(self.axcodes)}, "
            f"intensity {self.intensity.kind!s}"
        )


def validate_affine(affine: np.ndarray) -> np.ndarray:
    """Return a float64 copy of a 4x4 affine, or raise :class:`GeometryError`."""
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise GeometryError(f"affine must be 4x4, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise GeometryError("affine contains NaN or infinite values")
    if abs(np.linalg.det(a[:3, :3])) < 1e-9:
        raise GeometryError("affine is singular (zero voxel size or collinear axes)")
    return a.copy()


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    a = np.asarray(affine, dtype=np.float64)
    sp = np.sqrt((a[:3, :3] ** 2).sum(axis=0))
    return (float(sp[0]), float(sp[1]), float(sp[2]))


def make_affine(
    spacing: tuple[float, float, float],
    axcodes: tuple[str, str, str] | str = CANONICAL_AXCODES,
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """An axis-aligned affine with the given spacing, orientation codes and RAS origin."""
    codes = tuple(axcodes)
    ornt = nio.axcodes2ornt(codes)  # rows: (RAS axis index, sign) for each voxel axis
    a = np.zeros((4, 4))
    for vox_axis, (ras_axis, sign) in enumerate(ornt):
        a[int(ras_axis), vox_axis] = sign * spacing[vox_axis]
    a[:3, 3] = origin
    a[3, 3] = 1.0
    return a


@dataclass(frozen=True)
class Reorientation:
    """How a volume was reoriented, so arrays can be mapped back exactly."""

    start_ornt: np.ndarray  # nibabel orientation of the original volume
    target_ornt: np.ndarray  # nibabel orientation after reorientation
    original_shape: tuple[int, int, int]
    original_affine: np.ndarray

    def undo(self, array: np.ndarray) -> np.ndarray:
        """Map an array on the reoriented grid back to the original voxel grid (bit-exact)."""
        inverse = nio.ornt_transform(self.target_ornt, self.start_ornt)
        out = np.ascontiguousarray(nio.apply_orientation(np.asarray(array), inverse))
        if out.shape[:3] != self.original_shape:
            raise GeometryError(
                f"cannot undo reorientation: got {out.shape[:3]}, expected {self.original_shape}"
            )
        return out

    def undo_volume(self, volume: Volume) -> Volume:
        """Map a volume on the reoriented grid back to the original grid and affine."""
        return Volume(
            self.undo(volume.array),
            self.original_affine.copy(),
            volume.intensity,
            dict(volume.meta),
        )


def reorient(
    volume: Volume, axcodes: tuple[str, str, str] | str = CANONICAL_AXCODES
) -> tuple[Volume, Reorientation]:
    """Permute/flip voxel axes so the volume has the given orientation codes.

    Only axis permutations and flips are applied (no resampling), so intensities are unchanged and
    :meth:`Reorientation.undo` restores the original array bit-exactly. Oblique volumes are mapped
    to the closest orientation.
    """
    start = nio.io_orientation(volume.affine)
    target = nio.axcodes2ornt(tuple(axcodes))
    transform = nio.ornt_transform(start, target)
    array = nio.apply_orientation(volume.array, transform)
    affine = volume.affine @ nio.inv_ornt_aff(transform, volume.shape)
    out = Volume(np.ascontiguousarray(array), affine, volume.intensity, dict(volume.meta))
    return out, Reorientation(start, target, volume.shape, volume.affine.copy())


def to_canonical(volume: Volume) -> tuple[Volume, Reorientation]:
    """Reorient to ichseg's canonical ``LPS`` axis codes (see module docstring)."""
    return reorient(volume, CANONICAL_AXCODES)


def check_same_grid(image: Volume, mask: Volume, what: str = "mask") -> None:
    """Raise :class:`GeometryError` unless ``mask`` lies on exactly the image's voxel grid."""
    if image.shape != mask.shape:
        raise GeometryError(f"{what} shape {mask.shape} does not match image shape {image.shape}")
    if not np.allclose(image.affine, mask.affine, atol=1e-3):
        diff = float(np.abs(image.affine - mask.affine).max())
        raise GeometryError(
            f"{what} affine differs from the image affine (max difference {diff:.4g} mm); "
            "image and mask must share geometry"
        )


def replace(volume: Volume, **changes: Any) -> Volume:
    """``dataclasses.replace`` for volumes (re-validates)."""
    return dataclasses.replace(volume, **changes)
