"""NIfTI (``.nii``, ``.nii.gz``) reading and writing with geometry kept bit-exact."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ichseg.errors import DimensionalityError, InputFileError
from ichseg.io.volume import Intensity, IntensityKind, Volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: str | Path) -> bool:
    name = str(path).lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def read_nifti(path: str | Path, intensity: Intensity | None = None) -> Volume:
    """Read a 3D NIfTI file (a trailing singleton 4th axis is dropped).

    ``intensity`` defaults to HU; callers that know better (masks, windowed data) pass it.
    Raises :class:`InputFileError` for missing/corrupt/truncated files and
    :class:`DimensionalityError` for 2D or 4D images.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{p}: file not found")
    if p.is_dir():
        raise InputFileError(f"{p}: is a folder, expected a NIfTI file")
    try:
        img = nib.load(str(p))
        # A copy, never a memory map: overwriting the file later must not change this array.
        data = np.array(img.dataobj, copy=True)
    except (
        nib.filebasedimages.ImageFileError,
        nib.spatialimages.HeaderDataError,
        nib.wrapstruct.WrapStructError,
        OverflowError,
        EOFError,
        OSError,
        ValueError,
        zlib.error,
        gzip.BadGzipFile,
    ) as exc:
        raise InputFileError(
            f"{p}: not a readable NIfTI file ({type(exc).__name__}: {exc})"
        ) from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DimensionalityError(
            f"{p}: expected a 3D image, got {data.ndim}D with shape {tuple(data.shape)}"
        )
    affine = img.affine if img.affine is not None else np.eye(4)
    meta: dict[str, Any] = {
        "source": str(p),
        "format": "nifti",
        "dtype": str(data.dtype),
        "qform_code": int(img.header["qform_code"]),
        "sform_code": int(img.header["sform_code"]),
        # free text and display range: where a window of already-windowed data may be recorded
        "descrip": _header_text(img.header, "descrip"),
        "intent_name": _header_text(img.header, "intent_name"),
        "cal_min": _header_float(img.header, "cal_min"),
        "cal_max": _header_float(img.header, "cal_max"),
    }
    return Volume(data, affine, intensity or Intensity.hu(), meta)


def _header_text(header: Any, key: str) -> str:
    try:
        raw = header[key]
        value = raw.item() if hasattr(raw, "item") else raw
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    except (KeyError, ValueError, TypeError):
        return ""
    return text.split("\x00", 1)[0].strip()


def _header_float(header: Any, key: str) -> float | None:
    try:
        value = float(header[key])
    except (KeyError, ValueError, TypeError):
        return None
    return value if np.isfinite(value) else None


def write_nifti(volume: Volume, path: str | Path, dtype: np.dtype | type | None = None) -> Path:
    """Write ``volume`` as NIfTI with its affine in both qform and sform (code 1, scanner)."""
    p = Path(path)
    if not is_nifti(p):
        raise InputFileError(f"{p}: output name must end with .nii or .nii.gz")
    p.parent.mkdir(parents=True, exist_ok=True)
    array = volume.array if dtype is None else volume.array.astype(dtype)
    if volume.intensity.kind == IntensityKind.LABEL and dtype is None:
        array = array.astype(np.uint8)
    img = nib.Nifti1Image(np.asarray(array), volume.affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(volume.affine, code=1)
    img.set_sform(volume.affine, code=1)
    nib.save(img, str(p))
    return p
