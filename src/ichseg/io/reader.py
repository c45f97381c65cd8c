"""The one entry point for images and masks: load by path, check, and save without losing data.

* :func:`load_volume` reads NIfTI, NRRD, MetaImage or a DICOM series folder, refuses oversized,
  non-finite or non-CT data, and sets :attr:`Volume.intensity` (declared or detected).
* :func:`load_mask` reads a mask as a ``uint8`` label volume and checks it lies on the image grid.
* :func:`save_volume` / :func:`save_mask` write NIfTI, NRRD or MetaImage by suffix, atomically,
  and never replace an existing file unless asked to.

Volumes keep the orientation they were stored in; call :func:`ichseg.io.to_canonical` to process
them in ichseg's canonical LPS layout and :meth:`Reorientation.undo_volume` to go back.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError, ImageDataError
from nibabel.wrapstruct import WrapStructError

from ichseg.errors import (
    ConfigError,
    DicomSeriesError,
    DimensionalityError,
    EmptyMaskError,
    GeometryError,
    IchsegError,
    InputFileError,
    IntensityError,
)
from ichseg.io.dicom import is_image_dataset, read_dicom_file_header, read_dicom_series
from ichseg.io.intensity import (
    check_finite,
    detect_intensity,
    infer_stored_range,
    intensity_stats,
    validate_ct,
)
from ichseg.io.nifti import is_nifti, read_nifti, write_nifti
from ichseg.io.sitk_io import SITK_SUFFIXES, is_sitk_path, read_image_size, read_sitk, write_sitk
from ichseg.io.volume import (
    Intensity,
    IntensityKind,
    Volume,
    Window,
    check_same_grid,
    reorient,
)

#: Default ceiling on the number of voxels a volume may have (2048 x 2048 x 1024).
DEFAULT_MAX_VOXELS = 2048 * 2048 * 1024
SUPPORTED_INPUTS = (
    "NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) or a folder holding a "
    "DICOM series"
)
SUPPORTED_OUTPUTS = ".nii, .nii.gz, " + ", ".join(SITK_SUFFIXES)

# Low-level errors the file parsers may raise for broken files (turned into InputFileError).
_PARSE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    ValueError,
    OverflowError,
    RuntimeError,
    struct.error,
    zlib.error,
    gzip.BadGzipFile,
    ImageFileError,
    HeaderDataError,
    ImageDataError,
    WrapStructError,
)


@contextlib.contextmanager
def _as_input_error(path: Path) -> Iterator[None]:
    try:
        yield
    except IchsegError:
        raise
    except _PARSE_ERRORS as exc:
        raise InputFileError(f"{path}: unreadable file ({type(exc).__name__}: {exc})") from exc


def _owned(array: np.ndarray) -> np.ndarray:
    """A copy if ``array`` is backed by a memory-mapped file (which may later be overwritten)."""
    base = array
    while isinstance(base, np.ndarray):
        if isinstance(base, np.memmap):
            return np.array(array, copy=True)
        base = base.base
    return array


def _check_voxels(path: Path, shape: tuple[int, ...], max_voxels: int) -> None:
    if any(int(s) < 1 for s in shape):
        raise InputFileError(f"{path}: invalid image size {tuple(shape)} in the header")
    n = int(np.prod(np.asarray(shape[:3], dtype=np.int64)))
    if n > max_voxels:
        dims = "x".join(str(s) for s in shape)
        raise DimensionalityError(
            f"{path}: image of {dims} = {n} voxels exceeds the limit of {max_voxels} voxels "
            "(crop or downsample it, or raise max_voxels)"
        )


def image_format(path: str | Path) -> str:
    """``"nifti"``, ``"sitk"`` (NRRD/MetaImage), ``"dicom-folder"`` or ``"dicom-file"``.

    Raises :class:`InputFileError` for a missing path or an unsupported file type.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{p}: no such file or folder")
    if p.is_dir():
        return "dicom-folder"
    if is_nifti(p):
        return "nifti"
    if is_sitk_path(p):
        return "sitk"
    if read_dicom_file_header(p) is not None:
        return "dicom-file"
    raise InputFileError(f"{p}: unsupported file type; expected {SUPPORTED_INPUTS}")


def _read_any(
    path: str | Path,
    *,
    max_voxels: int,
    series_uid: str | None,
    correct_tilt: bool,
    allow_non_ct: bool,
    progress: bool | None,
) -> Volume:
    p = Path(path)
    fmt = image_format(p)
    if series_uid is not None and fmt != "dicom-folder":
        raise ConfigError(f"{p}: series_uid only applies to DICOM folders")
    if fmt == "dicom-folder":
        vol = read_dicom_series(
            p,
            series_uid,
            correct_tilt=correct_tilt,
            allow_non_ct=allow_non_ct,
            max_voxels=max_voxels,
            progress=progress,
        )
    elif fmt == "dicom-file":
        ds = read_dicom_file_header(p)
        if ds is not None and not is_image_dataset(ds):
            raise InputFileError(f"{p}: a DICOM file that holds no image (SEG, report, ...)")
        frames = int(ds.get("NumberOfFrames", 1) or 1) if ds is not None else 1
        if frames > 1:
            raise DicomSeriesError(
                f"{p}: multi-frame (enhanced) DICOM is not supported; convert it to NIfTI "
                "(e.g. with dcm2niix) and load that"
            )
        raise DimensionalityError(
            f"{p}: a single 2D DICOM image; pass the folder that holds the whole series"
        )
    elif fmt == "nifti":
        shape: tuple[int, ...] | None = None
        with contextlib.suppress(Exception):  # a broken header is reported by read_nifti below
            shape = tuple(nib.load(str(p)).shape)
        if shape is not None:
            _check_voxels(p, shape, max_voxels)
        with _as_input_error(p):
            vol = read_nifti(p)
    else:
        _check_voxels(p, read_image_size(p), max_voxels)
        with _as_input_error(p):
            vol = read_sitk(p)
    _check_voxels(p, vol.shape, max_voxels)
    vol.array = _owned(vol.array)
    return vol


def load_volume(
    path: str | Path,
    *,
    input_window: Window | None = None,
    allow_non_ct: bool = False,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    series_uid: str | None = None,
    correct_tilt: bool = False,
    input_range: tuple[float, float] | None = None,
    progress: bool | None = None,
) -> Volume:
    """Load a CT volume from a NIfTI/NRRD/MetaImage file or a DICOM series folder.

    Intensity: with ``input_window`` the data is declared windowed from that HU window (stored
    range ``input_range``, else inferred: ``0..1``, ``0..255`` or the window itself); otherwise it
    is detected (raw HU, or windowed ``0..255`` with an unknown window). Non-CT-looking data raises
    :class:`IntensityError` unless ``allow_non_ct`` (intensity ``UNKNOWN``). Volumes with more than
    ``max_voxels`` voxels raise :class:`DimensionalityError`. ``series_uid`` and
    ``correct_tilt`` apply to DICOM folders (see :func:`ichseg.io.dicom.read_dicom_series`).
    """
    p = Path(path)
    if input_range is not None and input_window is None:
        raise ConfigError("input_range is only meaningful together with input_window")
    vol = _read_any(
        p,
        max_voxels=max_voxels,
        series_uid=series_uid,
        correct_tilt=correct_tilt,
        allow_non_ct=allow_non_ct,
        progress=progress,
    )
    try:
        check_finite(vol.array)
        stats = intensity_stats(vol.array)
        if input_window is not None:
            if input_range is not None:
                lo, hi = float(input_range[0]), float(input_range[1])
                if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
                    raise ConfigError(f"invalid input_range {input_range}: need lo < hi")
                stored = (lo, hi)
            else:
                stored = infer_stored_range(vol.array, input_window, stats)
            intensity, source = Intensity.windowed(input_window, stored), "declared"
        else:
            intensity, source = detect_intensity(vol.array, stats), "detected"
            if (
                intensity.kind == IntensityKind.UNKNOWN
                and vol.meta.get("format") == "dicom"
                and vol.meta.get("modality") == "CT"
            ):
                intensity, source = Intensity.hu(), "dicom rescale"
        vol.intensity = intensity
        vol.meta["intensity_source"] = source
        if intensity.kind == IntensityKind.UNKNOWN and allow_non_ct:
            return vol
        validate_ct(vol, stats)
    except IntensityError as exc:
        raise IntensityError(f"{p}: {exc}") from exc
    return vol


def load_mask(
    path: str | Path,
    reference: Volume | None = None,
    *,
    allow_empty: bool = True,
    binarize: bool = True,
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> Volume:
    """Load a mask (NIfTI, NRRD, MetaImage, or a DICOM-SEG onto its DICOM ``reference``) as a
    ``uint8`` label volume.

    ``binarize`` maps every value ``> 0`` to 1; otherwise integer labels ``0..255`` are kept.
    Non-integer values (probability maps) and NaNs raise :class:`IntensityError`. With a
    ``reference`` image the mask must lie on its voxel grid (a mask stored with permuted/flipped
    axes of the same grid is reoriented exactly); otherwise :class:`GeometryError`. An empty mask
    raises :class:`EmptyMaskError` when ``allow_empty`` is false.
    """
    p = Path(path)
    fmt = image_format(p)
    if fmt == "dicom-file":
        from ichseg.io.dicom_seg import is_dicom_seg, read_dicom_seg

        if not is_dicom_seg(p):
            raise InputFileError(
                f"{p}: a DICOM image is not a mask; masks are NIfTI, NRRD, MetaImage or DICOM-SEG"
            )
        if reference is None:
            raise InputFileError(
                f"{p}: reading a DICOM-SEG needs the DICOM series it refers to as reference"
            )
        vol = read_dicom_seg(p, reference)
    elif fmt == "dicom-folder":
        raise InputFileError(
            f"{p}: a DICOM folder is not a mask; masks are NIfTI, NRRD, MetaImage or DICOM-SEG"
        )
    else:
        vol = _read_any(
            p,
            max_voxels=max_voxels,
            series_uid=None,
            correct_tilt=False,
            allow_non_ct=True,
            progress=False,
        )
    a = vol.array
    if a.dtype.kind not in "biuf":
        raise IntensityError(f"{p}: mask has unsupported voxel type {a.dtype}")
    try:
        check_finite(a, what="mask")
    except IntensityError as exc:
        raise IntensityError(f"{p}: {exc}") from exc
    if a.dtype.kind == "f" and not np.all(a == np.round(a)):
        example = float(a[a != np.round(a)].flat[0])
        raise IntensityError(
            f"{p}: mask has non-integer values (e.g. {example:.4g}); it looks like a probability "
            "map - threshold it into a label mask first"
        )
    if binarize:
        labels = (a > 0).astype(np.uint8)
    else:
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo < 0 or hi > 255:
            raise IntensityError(
                f"{p}: mask labels must be integers in 0..255, got {lo:g}..{hi:g} "
                "(or load with binarize=True)"
            )
        labels = a.astype(np.uint8)
    mask = Volume(labels, vol.affine, Intensity.label(), {**vol.meta, "binarized": binarize})
    if reference is not None:
        mask = align_mask_to(mask, reference, p)
    if not allow_empty and not mask.array.any():
        raise EmptyMaskError(f"{p}: mask is empty (no foreground voxels)")
    return mask


def align_mask_to(mask: Volume, reference: Volume, path: str | Path | None = None) -> Volume:
    """``mask`` on ``reference``'s voxel grid: as is, or exactly reoriented when it is the same
    grid stored with permuted/flipped axes. Anything else raises :class:`GeometryError`."""
    if mask.same_geometry(reference):
        return mask
    reoriented, _ = reorient(mask, reference.axcodes)
    if reoriented.same_geometry(reference):
        reoriented.meta["reoriented_to_reference"] = True
        return reoriented
    name = Path(path).name if path is not None else "mask"
    prefix = f"{path}: " if path is not None else ""
    try:
        check_same_grid(reference, mask, what=f"mask {name}")
    except GeometryError as exc:
        raise GeometryError(f"{prefix}{exc}") from exc
    raise GeometryError(f"{prefix}mask geometry does not match the image")  # pragma: no cover


def _write_atomic(volume: Volume, path: str | Path, overwrite: bool) -> Path:
    p = Path(path)
    if is_nifti(p):
        writer = write_nifti
    elif is_sitk_path(p):
        writer = write_sitk
    else:
        raise InputFileError(f"{p}: unsupported output type; use one of {SUPPORTED_OUTPUTS}")
    if p.is_dir():
        raise InputFileError(f"{p}: is a folder, expected a file name")
    if p.exists() and not overwrite:
        raise InputFileError(f"{p}: file exists; refusing to overwrite it (pass overwrite=True)")
    p.parent.mkdir(parents=True, exist_ok=True)
    # Write into a private folder next to the target (same file system), then move the file(s) in:
    # a crash never leaves a half-written file under the final name. Detached headers
    # (.mhd/.nhdr) produce a second data file, which moves along.
    tmp = Path(tempfile.mkdtemp(prefix=".ichseg-write-", dir=p.parent))
    try:
        writer(volume, tmp / p.name)
        produced = sorted(tmp.iterdir())
        if not overwrite:
            clash = [p.parent / f.name for f in produced if (p.parent / f.name).exists()]
            if clash:
                raise InputFileError(
                    f"{clash[0]}: file exists; refusing to overwrite it (pass overwrite=True)"
                )
        for f in produced:
            os.replace(f, p.parent / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return p


def save_volume(volume: Volume, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``volume`` (dtype and geometry kept) as NIfTI, NRRD or MetaImage by suffix.

    Raises :class:`InputFileError` if ``path`` exists and ``overwrite`` is false.
    """
    return _write_atomic(volume, path, overwrite)


def save_mask(mask: Volume, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a label mask as ``uint8`` with its geometry (NIfTI, NRRD or MetaImage by suffix).

    Values must be integers in ``0..255``. A user's existing mask is never replaced unless
    ``overwrite`` is true (:class:`InputFileError`).
    """
    a = np.asarray(mask.array)
    if a.dtype.kind not in "biuf":
        raise IntensityError(f"cannot save a mask of voxel type {a.dtype}")
    if a.size and a.dtype.kind == "f":
        check_finite(a, what="mask")
        if not np.all(a == np.round(a)):
            raise IntensityError("mask has non-integer values; threshold it before saving")
    if a.size and (float(a.min()) < 0 or float(a.max()) > 255):
        raise IntensityError(f"mask labels must lie in 0..255, got {a.min()}..{a.max()}")
    label = Volume(a.astype(np.uint8), mask.affine, Intensity.label(), dict(mask.meta))
    return _write_atomic(label, path, overwrite)
