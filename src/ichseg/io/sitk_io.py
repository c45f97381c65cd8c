"""NRRD (``.nrrd``, ``.nhdr``) and MetaImage (``.mha``, ``.mhd``) through SimpleITK.

ITK stores geometry in **LPS** world coordinates as ``origin``, ``spacing`` and a ``direction``
matrix whose columns are the unit directions of the voxel axes. ichseg affines map voxels to
**RAS**, so both the direction rows and the origin of the first two world axes change sign.
A SimpleITK array is ``(k, j, i)``; ichseg arrays are ``(i, j, k)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ichseg.errors import DimensionalityError, GeometryError, InputFileError
from ichseg.io.volume import Intensity, IntensityKind, Volume

SITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
#: Flips the first two world axes: LPS <-> RAS (its own inverse).
LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Bytes of a NRRD/MetaImage file searched for the end of its text header.
_HEADER_MAX_BYTES = 65536


def is_sitk_path(path: str | Path) -> bool:
    """True for the NRRD/MetaImage suffixes handled here."""
    return str(path).lower().endswith(SITK_SUFFIXES)


def _format_name(path: Path) -> str:
    return "nrrd" if path.suffix.lower() in (".nrrd", ".nhdr") else "metaimage"


@dataclass(frozen=True)
class ImageHeader:
    """What a NRRD/MetaImage header declares, read without touching the voxel data."""

    size: tuple[int, ...]  #: ``(i, j, k, ...)``
    bytes_per_voxel: int  #: component size x number of components
    data_file: Path | None  #: the file holding the voxels (``None`` when not known)
    data_offset: int  #: where the voxels start in ``data_file``
    encoding: str  #: ``"raw"``, ``"gzip"`` (zlib/deflate) or ``"other"`` (ascii, bzip2, lists...)

    @property
    def declared_bytes(self) -> int:
        return math.prod(self.size) * self.bytes_per_voxel


def read_image_size(path: str | Path) -> tuple[int, ...]:
    """Image size ``(i, j, k, ...)`` from the header only (no voxel data is read)."""
    return read_image_header(path).size


def read_image_header(path: str | Path) -> ImageHeader:
    """Size, voxel type and data location from the header only (no voxel data is read).

    Raises :class:`InputFileError` when SimpleITK cannot read the header.
    """
    p = Path(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputFileError(
            f"{p}: not a readable {_format_name(p)} file ({_first_line(exc)})"
        ) from exc
    size = tuple(int(s) for s in reader.GetSize())
    n_comp = max(1, int(reader.GetNumberOfComponents()))
    try:
        component = int(sitk.Image([1, 1], reader.GetPixelID(), n_comp).GetSizeOfPixelComponent())
    except RuntimeError:  # pragma: no cover - an exotic pixel type: assume the widest
        component = 8
    data_file, offset, encoding = _data_location(p)
    return ImageHeader(size, component * n_comp, data_file, offset, encoding)


def _data_location(path: Path) -> tuple[Path | None, int, str]:
    """``(data file, offset, encoding)`` from a NRRD/MetaImage text header; unknown -> None."""
    try:
        with path.open("rb") as fh:
            head = fh.read(_HEADER_MAX_BYTES)
    except OSError:
        return None, 0, "other"
    lines = head.split(b"\n")
    pos = 0
    fields: dict[str, str] = {}
    nrrd = head.startswith(b"NRRD")
    whole = len(head) < _HEADER_MAX_BYTES  # else the last piece may be cut off
    for raw in lines if whole else lines[:-1]:
        pos += len(raw) + 1
        line = raw.rstrip(b"\r").decode("latin-1")
        if nrrd:
            if not line.strip():  # a blank line ends a NRRD header
                break
            if line.startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower().replace(" ", "")] = value.strip().lstrip("=").strip()
        else:
            key, sep, value = line.partition("=")
            if not sep:
                return None, 0, "other"
            key = key.strip().lower()
            fields[key] = value.strip()
            if key == "elementdatafile":  # the last MetaImage header line
                break
    else:  # no end of header found: only a detached NRRD header may end with the file
        if not (nrrd and whole and fields.get("datafile")):
            return None, 0, "other"
    if nrrd:
        encoding = fields.get("encoding", "raw").lower()
        encoding = {"raw": "raw", "gzip": "gzip", "gz": "gzip"}.get(encoding, "other")
        name = fields.get("datafile", "")
        if " " in name or name.upper().startswith("LIST"):
            return None, 0, "other"  # file lists and patterns
        skip = _int_field(fields, "byteskip")
        if skip is None or skip < 0 or "lineskip" in fields:  # -1: data at the end of the file
            return None, 0, "other"
        data_file = path if not name else path.parent / name
        return data_file, (0 if name else pos) + skip, encoding
    compressed = fields.get("compresseddata", "false").lower() == "true"
    name = fields.get("elementdatafile", "")
    if not name or " " in name or "%" in name or name.upper() == "LIST":
        return None, 0, "other"
    local = name.upper() == "LOCAL"
    header_size = 0 if local else _int_field(fields, "headersize")
    if header_size is None or header_size < 0:  # -1: the data sits at the end of the file
        return None, 0, "other"
    data_file = path if local else path.parent / name
    return data_file, pos if local else header_size, "gzip" if compressed else "raw"


def _int_field(fields: dict[str, str], key: str) -> int | None:
    try:
        return int(fields.get(key, "0") or 0)
    except ValueError:
        return None


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
