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
import math
import os
import re
import shutil
import struct
import tempfile
import warnings
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
    InputWarning,
    IntensityError,
)
from ichseg.io.dicom import is_image_dataset, read_dicom_file_header, read_dicom_series
from ichseg.io.intensity import (
    ASSUMED_WINDOW,
    check_finite,
    detect_intensity,
    infer_stored_range,
    intensity_stats,
    plausibility_problems,
    resolve_window,
    validate_ct,
)
from ichseg.io.nifti import is_nifti, read_nifti, write_nifti
from ichseg.io.sitk_io import SITK_SUFFIXES, is_sitk_path, read_image_header, read_sitk, write_sitk
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
#: Default memory budget for reading one volume: the voxels as stored plus a float32 working copy
#: (a 512 x 512 x 1000 int16 scan needs 1.5 GiB). Override per call (``max_bytes``) or with the
#: environment variable ``ICHSEG_MAX_BYTES`` (bytes, or a number with K/M/G/T, e.g. ``16G``).
DEFAULT_MAX_BYTES = 8 * 1024**3
MAX_BYTES_ENV = "ICHSEG_MAX_BYTES"
#: Bytes per voxel of the float32 working copy that processing makes of an image.
WORKING_ITEMSIZE = 4
#: A deflate (gzip/zlib) stream never expands by more than about 1032:1; a compressed file that
#: would have to expand more than this (plus a little slack for tiny files) to hold the voxels its
#: header declares is truncated or has a corrupt header.
DEFLATE_MAX_RATIO = 1100
DEFLATE_SLACK_BYTES = 64 * 1024
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
    except MemoryError as exc:
        raise DimensionalityError(
            f"{path}: not enough memory to read the image ({exc or 'MemoryError'}); crop or "
            "downsample it, or lower max_bytes / ICHSEG_MAX_BYTES so it is refused up front"
        ) from exc
    except _PARSE_ERRORS as exc:
        raise InputFileError(f"{path}: unreadable file ({type(exc).__name__}: {exc})") from exc


_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_byte_size(text: str | int) -> int:
    """``"16G"``, ``"512MiB"``, ``"1e9"`` or an int -> bytes (binary units). :class:`ConfigError`
    for anything else or a value < 1."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", str(text))
        try:
            value = float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()] if m else float("nan")
        except ValueError:
            value = float("nan")
    if not math.isfinite(value) or value < 1:
        raise ConfigError(f"invalid memory budget {text!r}: use bytes or e.g. 8G, 512M")
    return int(value)


def default_max_bytes() -> int:
    """The memory budget of one volume: ``ICHSEG_MAX_BYTES`` if set, else ``DEFAULT_MAX_BYTES``."""
    env = os.environ.get(MAX_BYTES_ENV)
    if env is None or not env.strip():
        return DEFAULT_MAX_BYTES
    try:
        return parse_byte_size(env)
    except ConfigError as exc:
        raise ConfigError(f"environment variable {MAX_BYTES_ENV}: {exc}") from exc


def _resolve_max_bytes(max_bytes: int | None) -> int:
    return default_max_bytes() if max_bytes is None else parse_byte_size(max_bytes)


def _human(n: float) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} bytes"


def check_declared_size(
    path: Path,
    shape: tuple[int, ...],
    dtype: str,
    bytes_per_voxel: int,
    *,
    max_bytes: int,
    data_file: Path | None = None,
    data_offset: int = 0,
    encoding: str = "raw",
    work_itemsize: int = WORKING_ITEMSIZE,
) -> None:
    """Refuse, before anything is allocated, a header that declares more voxel data than its file
    can hold or than the memory budget allows.

    * ``encoding="raw"``: ``data_offset + voxels * bytes_per_voxel`` must fit in ``data_file``;
    * ``encoding="gzip"`` (deflate): the compressed bytes after ``data_offset`` must be able to
      expand to the declared size (at most ``DEFLATE_MAX_RATIO`` : 1);
    * always: the voxels as stored plus a ``work_itemsize`` working copy must fit ``max_bytes``.

    Raises :class:`InputFileError` (file too small) or :class:`DimensionalityError` (budget), both
    naming the declared shape and the file size or budget.
    """
    n = math.prod(int(s) for s in shape)
    declared = n * int(bytes_per_voxel)
    dims = "x".join(str(int(s)) for s in shape)
    what = f"a {dims} image of {dtype} ({_human(declared)} of voxel data)"
    if data_file is not None and encoding in ("raw", "gzip"):
        try:
            size = data_file.stat().st_size
        except OSError:
            size = None
        except ValueError:  # e.g. a NUL byte in a corrupted header's data-file name
            raise InputFileError(
                f"{path}: the header names a data file that cannot exist ({data_file.name!r}); "
                "the header is corrupted"
            ) from None
        if size is not None:
            # raw: the bytes after the offset; deflate: the whole compressed file (the offset is
            # a position in the uncompressed stream)
            available = max(0, size - int(data_offset)) if encoding == "raw" else size
            where = "" if data_file == path else f" (data file {data_file.name})"
            if encoding == "raw" and declared > available:
                raise InputFileError(
                    f"{path}: the header declares {what} starting at byte {int(data_offset)}, but "
                    f"the file{where} has only {size} bytes; it is truncated or its header is "
                    "corrupt"
                )
            if encoding == "gzip" and declared > available * DEFLATE_MAX_RATIO + (
                DEFLATE_SLACK_BYTES
            ):
                raise InputFileError(
                    f"{path}: the header declares {what}, but the compressed file{where} has only "
                    f"{size} bytes, which cannot expand to that much (deflate expands at most "
                    f"~{DEFLATE_MAX_RATIO}:1); it is truncated or its header is corrupt"
                )
    needed = declared + n * int(work_itemsize)
    if needed > max_bytes:
        raise DimensionalityError(
            f"{path}: the header declares {what}; loading it needs about {_human(needed)} of "
            f"memory with a working copy, more than the budget of {_human(max_bytes)}; crop or "
            f"downsample it, or raise the budget (max_bytes=..., environment {MAX_BYTES_ENV})"
        )


def _check_nifti_header(path: Path, max_voxels: int, max_bytes: int, work_itemsize: int) -> None:
    try:
        img = nib.load(str(path))
        shape = tuple(int(s) for s in img.shape)
        dtype = img.header.get_data_dtype()
        # nibabel keeps the file's vox_offset on the array proxy (the header copy is reset)
        offset = int(getattr(img.dataobj, "offset", 0) or img.header.get_data_offset())
    except Exception:  # a broken header is reported by read_nifti
        return
    _check_voxels(path, shape, max_voxels)
    check_declared_size(
        path,
        shape,
        str(dtype),
        int(dtype.itemsize),
        max_bytes=max_bytes,
        data_file=path,
        data_offset=offset,
        encoding="gzip" if str(path).lower().endswith(".gz") else "raw",
        work_itemsize=work_itemsize,
    )


def _check_sitk_header(path: Path, max_voxels: int, max_bytes: int, work_itemsize: int) -> None:
    header = read_image_header(path)
    _check_voxels(path, header.size, max_voxels)
    check_declared_size(
        path,
        header.size,
        f"{header.bytes_per_voxel}-byte voxels",
        header.bytes_per_voxel,
        max_bytes=max_bytes,
        data_file=header.data_file,
        data_offset=header.data_offset,
        encoding=header.encoding,
        work_itemsize=work_itemsize,
    )


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
    max_bytes: int,
    series_uid: str | None,
    correct_tilt: bool,
    allow_non_ct: bool,
    progress: bool | None,
    work_itemsize: int = WORKING_ITEMSIZE,
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
            max_bytes=max_bytes,
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
        _check_nifti_header(p, max_voxels, max_bytes, work_itemsize)
        with _as_input_error(p):
            vol = read_nifti(p)
    else:
        _check_sitk_header(p, max_voxels, max_bytes, work_itemsize)
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
    max_bytes: int | None = None,
    series_uid: str | None = None,
    correct_tilt: bool = False,
    input_range: tuple[float, float] | None = None,
    assume_window: Window | None = ASSUMED_WINDOW,
    progress: bool | None = None,
) -> Volume:
    """Load a CT volume from a NIfTI/NRRD/MetaImage file or a DICOM series folder.

    Intensity: with ``input_window`` the data is declared windowed from that HU window (stored
    range ``input_range``, else inferred: ``0..1``, ``0..255`` or the window itself); otherwise it
    is detected: raw HU (also skull-stripped HU, noted in ``intensity.note``), or windowed
    ``0..255``, whose HU window is read from the header where recorded (DICOM WindowCenter/Width,
    NIfTI descrip/intent_name/cal_min/cal_max) and otherwise ``assume_window`` (the brain window
    40/80; announced in one :class:`~ichseg.errors.InputWarning`; ``None`` keeps it unknown).
    Non-CT-looking data raises :class:`IntensityError` unless ``allow_non_ct`` (intensity
    ``UNKNOWN``). CT that does not look like an image of a head (random values, no brain-tissue
    peak) gives one :class:`~ichseg.errors.InputWarning` naming the failed checks.

    Size: headers are checked before any voxel is read. More than ``max_voxels`` voxels, or more
    memory than ``max_bytes`` (default :func:`default_max_bytes`: 8 GiB or ``ICHSEG_MAX_BYTES``)
    for the voxels plus a float32 working copy, raises :class:`DimensionalityError`; a header
    declaring more data than its file can hold raises :class:`InputFileError`.

    ``series_uid`` and ``correct_tilt`` apply to DICOM folders (see
    :func:`ichseg.io.dicom.read_dicom_series`).
    """
    p = Path(path)
    if input_range is not None and input_window is None:
        raise ConfigError("input_range is only meaningful together with input_window")
    vol = _read_any(
        p,
        max_voxels=max_voxels,
        max_bytes=_resolve_max_bytes(max_bytes),
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
            intensity = Intensity.windowed(input_window, stored).with_note("window declared")
            source = "declared"
        else:
            intensity, source = detect_intensity(vol.array, stats), "detected"
            if (
                intensity.kind == IntensityKind.UNKNOWN
                and vol.meta.get("format") == "dicom"
                and vol.meta.get("modality") == "CT"
            ):
                intensity = Intensity.hu().with_note("DICOM CT after rescale")
                source = "dicom rescale"
            elif intensity.kind == IntensityKind.WINDOWED and intensity.window is None:
                intensity, source = resolve_window(
                    intensity, vol.meta, where=str(p), assume=assume_window
                )
        vol.intensity = intensity
        vol.meta["intensity_source"] = source
        vol.meta["intensity_description"] = intensity.describe()
        if intensity.kind == IntensityKind.UNKNOWN and allow_non_ct:
            return vol
        validate_ct(vol, stats)
    except IntensityError as exc:
        raise IntensityError(f"{p}: {exc}") from exc
    problems = plausibility_problems(vol.array, vol.intensity)
    if problems:
        vol.meta["plausibility_problems"] = problems
        warnings.warn(
            f"{p}: does not look like a head CT: {'; '.join(problems)}; check the file "
            "(masks computed from it would be meaningless)",
            InputWarning,
            stacklevel=2,
        )
    return vol


def load_mask(
    path: str | Path,
    reference: Volume | None = None,
    *,
    allow_empty: bool = True,
    binarize: bool = True,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    max_bytes: int | None = None,
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
            max_bytes=_resolve_max_bytes(max_bytes),
            series_uid=None,
            correct_tilt=False,
            allow_non_ct=True,
            progress=False,
            work_itemsize=1,
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
