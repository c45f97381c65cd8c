"""NRRD (``.nrrd``, ``.nhdr``) and MetaImage (``.mha``, ``.mhd``) through SimpleITK.

ITK stores geometry in **LPS** world coordinates as ``origin``, ``spacing`` and a ``direction``
matrix whose columns are the unit directions of the voxel axes. ichseg affines map voxels to
**RAS**, so both the direction rows and the origin of the first two world axes change sign.
A SimpleITK array is ``(k, j, i)``; ichseg arrays are ``(i, j, k)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ichseg.errors import DimensionalityError, GeometryError, InputFileError
from ichseg.io.volume import Intensity, IntensityKind, Volume

SITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
#: Flips the first two world axes: LPS <-> RAS (its own inverse).
LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def is_sitk_path(path: str | Path) -> bool:
    """True for the NRRD/MetaImage suffixes handled here."""
    return str(path).lower().endswith(SITK_SUFFIXES)


def _format_name(path: Path) -> str:
    return "nrrd" if path.suffix.lower() in (".nrrd", ".nhdr") else "metaimage"


def read_image_size(path: str | Path) -> tuple[int, ...]:
    """Image size ``(i, j, k, ...)`` from the header only (no voxel data is read)."""
    p = Path(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputFileError(
            f"{p}: not a readable {_format_name(p)} file ({_first_line(exc)})"
        ) from exc
    return tuple(int(s) for s in reader.GetSize())


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # ITK messages start with a file/line banner; the useful part is the last "Description" line.
    for ln in reversed(lines):
        if ln.lower().startswith("description:"):
            return ln.split(":", 1)[1].strip()
    return lines[-1] if lines else type(exc).__name__


def sitk_to_affine(image: sitk.Image) -> np.ndarray:
    """Voxel ``(i, j, k)`` -> RAS affine of a 3D SimpleITK image."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing[None, :]
    lps[:3, 3] = image.GetOrigin()
    return LPS_RAS @ lps


def affine_to_sitk(
    affine: np.ndarray,
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """``(spacing, direction, origin)`` in ITK's LPS convention for a voxel->RAS affine.

    Axes need not be orthogonal: each column's length becomes the spacing and its unit vector the
    direction, so the affine is reproduced exactly on reading.
    """
    lps = LPS_RAS @ np.asarray(affine, dtype=np.float64)
    cols = lps[:3, :3]
    spacing = np.sqrt((cols**2).sum(axis=0))
    if np.any(spacing <= 0):
        raise GeometryError("affine has a zero-length voxel axis")
    direction = cols / spacing[None, :]
    return (
        tuple(float(s) for s in spacing),
        tuple(float(d) for d in direction.ravel()),
        tuple(float(o) for o in lps[:3, 3]),
    )


def read_sitk(path: str | Path, intensity: Intensity | None = None) -> Volume:
    """Read a 3D NRRD or MetaImage file (a trailing singleton 4th axis is dropped).

    Raises :class:`InputFileError` for missing, corrupt or truncated files and
    :class:`DimensionalityError` for 2D, 4D or multi-component (e.g. RGB) images.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{p}: file not found")
    if p.is_dir():
        raise InputFileError(f"{p}: is a folder, expected a {_format_name(p)} file")
    try:
        image = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        raise InputFileError(
            f"{p}: not a readable {_format_name(p)} file ({_first_line(exc)})"
        ) from exc
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise DimensionalityError(
            f"{p}: expected a scalar image, got {image.GetNumberOfComponentsPerPixel()} "
            "components per voxel (colour or vector image)"
        )
    size = tuple(int(s) for s in image.GetSize())
    if image.GetDimension() == 4 and size[3] == 1:
        image = image[:, :, :, 0]
        size = size[:3]
    if image.GetDimension() != 3:
        raise DimensionalityError(
            f"{p}: expected a 3D image, got {image.GetDimension()}D with size {size}"
        )
    array = np.ascontiguousarray(sitk.GetArrayFromImage(image).transpose(2, 1, 0))
    meta: dict[str, Any] = {
        "source": str(p),
        "format": _format_name(p),
        "dtype": str(array.dtype),
    }
    return Volume(array, sitk_to_affine(image), intensity or Intensity.hu(), meta)


def write_sitk(volume: Volume, path: str | Path, *, compress: bool = True) -> Path:
    """Write ``volume`` as NRRD/MetaImage by suffix, with its geometry converted RAS -> LPS.

    Label volumes are written as ``uint8``. Parent folders are created.
    """
    p = Path(path)
    if not is_sitk_path(p):
        raise InputFileError(f"{p}: output name must end with one of {', '.join(SITK_SUFFIXES)}")
    p.parent.mkdir(parents=True, exist_ok=True)
    array = volume.array
    if volume.intensity.kind == IntensityKind.LABEL:
        array = array.astype(np.uint8)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.dtype == np.float16:  # ITK has no half-precision pixel type
        array = array.astype(np.float32)
    if array.dtype.kind not in "iuf":
        raise InputFileError(f"{p}: cannot store voxels of type {array.dtype}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    spacing, direction, origin = affine_to_sitk(volume.affine)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    image.SetOrigin(origin)
    try:
        sitk.WriteImage(image, str(p), useCompression=compress)
    except RuntimeError as exc:
        raise InputFileError(f"{p}: cannot write ({_first_line(exc)})") from exc
    return p
