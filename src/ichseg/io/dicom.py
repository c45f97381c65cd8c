"""DICOM CT series: a folder of single-frame slices <-> one 3D :class:`Volume`.

Reading follows what the DICOM geometry says, never the convenience fields:

* slices are sorted by their position along the slice normal (``ImagePositionPatient`` projected
  on ``row x column`` of ``ImageOrientationPatient``), not by file name or ``InstanceNumber``;
* the slice spacing comes from those positions, not from ``SliceThickness``; missing or duplicate
  slices and irregular spacing are reported;
* a gantry-tilted (sheared) stack is detected and refused unless ``correct_tilt=True``, which
  resamples it onto an orthogonal grid;
* ``RescaleSlope``/``RescaleIntercept`` are applied per slice (HU), and the DICOM LPS world
  coordinates are turned into ichseg's voxel->RAS affine.
"""

from __future__ import annotations

import contextlib
import math
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from scipy import ndimage
from tqdm import tqdm

from ichseg.errors import (
    DicomSeriesError,
    DimensionalityError,
    GeometryError,
    InputFileError,
    InputWarning,
    IntensityError,
)
from ichseg.io.volume import Intensity, IntensityKind, Volume

#: Flips the first two world axes: LPS <-> RAS (its own inverse).
LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Two slices closer than this along the normal (mm) are duplicates.
DUPLICATE_TOL_MM = 1e-3
#: Slice steps may deviate from the median step by max(abs, rel * step).
SPACING_ABS_TOL_MM = 0.01
SPACING_REL_TOL = 0.01
#: Direction cosines of different slices must agree to this.
ORIENTATION_TOL = 1e-4
#: A stack whose in-plane drift over all slices stays below this fraction of a pixel is treated as
#: orthogonal (rounding in the stored positions); more than that is a gantry tilt.
TILT_DRIFT_TOL_PIXELS = 0.1
#: Show progress by default for series with more files than this (when stderr is a terminal).
PROGRESS_MIN_FILES = 64

#: Files with these suffixes are not expected to be DICOM: skipped silently when they are not.
#: Any other file (no suffix, UID-like names such as ``1.2.840.1234``, ``.IMA``...) that cannot be
#: read as DICOM is skipped with a warning naming it; a broken ``.dcm`` file is an error.
_NON_DICOM = (
    "txt json xml csv tsv md rst html htm pdf doc docx rtf jpg jpeg png gif bmp tif tiff zip gz "
    "tgz bz2 xz 7z tar nii nrrd nhdr mha mhd raw img hdr db ini cfg inf log exe dll bat sh py js "
    "css lnk url yaml yml"
)
NON_DICOM_SUFFIXES = frozenset(f".{ext}" for ext in _NON_DICOM.split())
_DICM_OFFSET = 128
_IMAGE_REQUIRED = ("SOPInstanceUID", "SeriesInstanceUID", "Rows", "Columns", "PixelData")


@dataclass(frozen=True)
class SeriesInfo:
    """One image series found in a folder."""

    uid: str
    description: str
    modality: str
    n_files: int

    def describe(self) -> str:
        desc = self.description or "no description"
        return f"{self.uid} ({desc}, {self.modality or '?'}, {self.n_files} files)"


@dataclass
class _Header:
    path: Path
    ds: Dataset


# --------------------------------------------------------------------------------------------
# scanning
# --------------------------------------------------------------------------------------------


def _has_dicm_magic(head: bytes) -> bool:
    return len(head) >= _DICM_OFFSET + 4 and head[_DICM_OFFSET : _DICM_OFFSET + 4] == b"DICM"


def _might_be_raw_dicom(head: bytes) -> bool:
    """A file without preamble that starts with a group 0x0002/0x0008 tag (little endian)."""
    return len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00") and head[3] in (0, 1)


def _sop_class_uids(ds: Dataset) -> list[str]:
    """SOP class UIDs from the dataset and from the file meta header (either may be absent)."""
    fm = ds.get("file_meta")
    uids = [ds.get("SOPClassUID"), fm.get("MediaStorageSOPClassUID") if fm is not None else None]
    return [str(u) for u in uids if u]


def _is_image(ds: Dataset) -> bool:
    """Image objects (CT, MR, secondary capture...) as opposed to SR, SEG, RTSTRUCT, DICOMDIR."""
    names = []
    for uid in _sop_class_uids(ds):
        with contextlib.suppress(Exception):
            names.append(str(pydicom.uid.UID(uid).name))
    if any(name.endswith("Image Storage") for name in names):
        return True
    if any(name and name != uid for name, uid in zip(names, _sop_class_uids(ds), strict=False)):
        return False  # a known non-image class
    return "Rows" in ds


def _check_complete(path: Path, ds: Dataset) -> None:
    """pydicom stops silently at the end of a truncated file: check what a DICOM object needs."""
    if len(ds) == 0:
        raise DicomSeriesError(
            f"{path}: incomplete or truncated DICOM file (nothing after the file meta header)"
        )
    uids = _sop_class_uids(ds)
    if not uids:
        raise DicomSeriesError(f"{path}: incomplete or truncated DICOM file (no SOP Class UID)")
    bad = [u for u in uids if not pydicom.uid.UID(u).is_valid]
    if bad:
        raise DicomSeriesError(
            f"{path}: incomplete or truncated DICOM file (invalid SOP Class UID {bad[0]!r})"
        )
    if _is_image(ds):
        missing = [k for k in _IMAGE_REQUIRED if k not in ds]
        if missing:
            raise DicomSeriesError(
                f"{path}: incomplete or truncated DICOM image (missing {', '.join(missing)})"
            )


def _read_header(path: Path) -> Dataset | None:
    """The header of a DICOM file, ``None`` if the file is not DICOM at all.

    Raises :class:`DicomSeriesError` for a file that claims to be DICOM but cannot be parsed.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(_DICM_OFFSET + 4)
    except OSError as exc:
        raise DicomSeriesError(f"{path}: cannot read file ({exc})") from exc
    if _has_dicm_magic(head):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # our own checks below name the problem
            try:
                # large values (pixel data) are only located, not read
                ds = pydicom.dcmread(str(path), defer_size=4096)
            except Exception as exc:  # pydicom raises many types for broken files
                raise DicomSeriesError(
                    f"{path}: corrupt or truncated DICOM file ({type(exc).__name__}: {exc})"
                ) from exc
            _check_complete(path, ds)
        return ds
    if not _might_be_raw_dicom(head):
        if path.suffix.lower() == ".dcm":
            raise DicomSeriesError(f"{path}: named .dcm but not a DICOM file (empty or truncated?)")
        return None
    try:  # DICOM without preamble (older exports): accept only if it is clearly an image slice
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=True)
    except Exception:
        return None
    if "SOPInstanceUID" in ds and "Rows" in ds and "ImagePositionPatient" in ds:
        return ds
    return None


def _pixel_data_truncated(path: Path, ds: Dataset) -> str | None:
    """Why the (deferred, unread) pixel data of ``ds`` cannot be complete, else ``None``."""
    if "PixelData" not in ds:
        return None
    elem = ds.get_item("PixelData")
    length, tell = getattr(elem, "length", None), getattr(elem, "value_tell", None)
    if not isinstance(length, int) or not isinstance(tell, int) or length == 0xFFFFFFFF:
        return None  # already read, or encapsulated (compressed) data of undefined length
    try:
        size = path.stat().st_size
    except OSError:
        return None
    if tell + length > size:
        return f"pixel data truncated: {max(0, size - tell)} of {length} bytes present"
    return None


def _warn_skipped(folder: Path, skipped: list[tuple[Path, str]]) -> None:
    if not skipped:
        return
    shown = "; ".join(f"{_rel(folder, f)} ({why})" for f, why in skipped[:5])
    more = f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    warnings.warn(
        f"{folder}: skipped {len(skipped)} file(s) that are not readable DICOM: {shown}{more}",
        InputWarning,
        stacklevel=4,
    )


def _rel(folder: Path, path: Path) -> str:
    try:
        return str(path.relative_to(folder))
    except ValueError:
        return str(path)


def _iter_files(folder: Path) -> Iterator[Path]:
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts):
            yield p


def _show_progress(progress: bool | None, n: int) -> bool:
    if progress is None:
        return n > PROGRESS_MIN_FILES and bool(getattr(sys.stderr, "isatty", lambda: False)())
    return progress


def _scan(folder: Path, progress: bool | None) -> tuple[dict[str, list[_Header]], int]:
    if not folder.exists():
        raise InputFileError(f"{folder}: folder not found")
    if not folder.is_dir():
        raise InputFileError(f"{folder}: expected a folder holding a DICOM series")
    files = list(_iter_files(folder))
    groups: dict[str, list[_Header]] = {}
    skipped: list[tuple[Path, str]] = []
    for path in tqdm(
        files, desc="scanning DICOM", unit="file", disable=not _show_progress(progress, len(files))
    ):
        suffix = path.suffix.lower()
        try:
            ds = _read_header(path)
            if ds is not None and _is_image(ds):
                why = _pixel_data_truncated(path, ds)
                if why is not None:
                    raise DicomSeriesError(f"{path}: {why}")
        except DicomSeriesError as exc:
            if suffix == ".dcm":  # named as DICOM: a broken one is an error
                raise
            reason = str(exc).removeprefix(f"{path}: ")
            skipped.append((path, reason))
            continue
        if ds is None:
            if suffix not in NON_DICOM_SUFFIXES:
                skipped.append((path, "not a DICOM file"))
            continue
        if not _is_image(ds):
            continue
        groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(_Header(path, ds))
    _warn_skipped(folder, skipped)
    return groups, len(files)


def _info(uid: str, headers: list[_Header]) -> SeriesInfo:
    ds = headers[0].ds
    return SeriesInfo(
        uid=uid or "(no SeriesInstanceUID)",
        description=str(ds.get("SeriesDescription", "") or ""),
        modality=str(ds.get("Modality", "") or ""),
        n_files=len(headers),
    )


def list_dicom_series(folder: str | Path, *, progress: bool | None = None) -> list[SeriesInfo]:
    """The image series in ``folder`` (searched recursively; non-DICOM files are ignored)."""
    groups, _ = _scan(Path(folder), progress)
    return [_info(uid, hs) for uid, hs in groups.items()]


# --------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------


def _floats(ds: Dataset, keyword: str, n: int, path: Path) -> np.ndarray:
    value = ds.get(keyword)
    if value is None:
        raise DicomSeriesError(f"{path}: missing {keyword}; cannot place the slice in space")
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DicomSeriesError(f"{path}: invalid {keyword} {value!r}") from exc
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise DicomSeriesError(f"{path}: {keyword} must hold {n} finite numbers, got {value!r}")
    return arr


def _instance_number(ds: Dataset) -> int | None:
    with contextlib.suppress(TypeError, ValueError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = ds.get("InstanceNumber")
        if value not in (None, ""):
            return int(value)
    return None


def _check_one_frame_of_reference(headers: list[_Header]) -> None:
    """Slices of one stack share a FrameOfReferenceUID (positions in different frames of
    reference cannot be stacked)."""
    frames: dict[str, list[_Header]] = {}
    for h in headers:
        uid = str(h.ds.get("FrameOfReferenceUID", "") or "")
        if uid:
            frames.setdefault(uid, []).append(h)
    if len(frames) > 1:
        shown = "; ".join(
            f"{uid}: {len(hs)} file(s), e.g. {hs[0].path.name}"
            for uid, hs in list(frames.items())[:4]
        )
        raise DicomSeriesError(
            f"one SeriesInstanceUID but {len(frames)} frames of reference ({shown}); the folder "
            "holds separate stacks under one series UID; split them into separate folders"
        )


def _check_instance_numbers(numbers: list[int | None], label: Any) -> None:
    """Distinct slices of one stack have distinct InstanceNumbers: slices at different positions
    sharing numbers are interleaved stacks (two acquisitions/reconstructions in one series)."""
    if any(n is None for n in numbers) or len(set(numbers)) <= 1:
        return  # absent or blanked by an anonymiser: nothing to learn
    where: dict[int, list[int]] = {}
    for idx, n in enumerate(numbers):
        where.setdefault(int(n), []).append(idx)  # type: ignore[arg-type]
    repeated = {n: idxs for n, idxs in where.items() if len(idxs) > 1}
    if not repeated:
        return
    shown = "; ".join(
        f"InstanceNumber {n} on " + " and ".join(label(i) for i in idxs[:3])
        for n, idxs in sorted(repeated.items())[:4]
    )
    raise DicomSeriesError(
        f"{len(repeated)} InstanceNumber(s) occur on more than one slice position ({shown}); the "
        "series holds interleaved stacks (two acquisitions or reconstructions under one "
        "SeriesInstanceUID); split them (e.g. by AcquisitionNumber) and load one"
    )


@dataclass(frozen=True)
class _Stack:
    order: np.ndarray  # sorting of the headers along the normal
    origin: np.ndarray  # LPS position of the first sorted slice
    row_cos: np.ndarray  # LPS direction of increasing column index (i)
    col_cos: np.ndarray  # LPS direction of increasing row index (j)
    normal: np.ndarray
    spacing_ij: tuple[float, float]  # (along i, along j) in mm
    step: np.ndarray  # LPS vector from one slice to the next
    slice_spacing: float  # step along the normal
    tilt_deg: float  # angle between ``step`` and the normal
    tilted: bool


def _stack_geometry(headers: list[_Header]) -> _Stack:
    first = headers[0]
    iop = _floats(first.ds, "ImageOrientationPatient", 6, first.path)
    row_cos, col_cos = iop[:3], iop[3:]
    if abs(np.linalg.norm(row_cos) - 1) > 1e-3 or abs(np.linalg.norm(col_cos) - 1) > 1e-3:
        raise DicomSeriesError(f"{first.path}: ImageOrientationPatient is not made of unit vectors")
    if abs(float(row_cos @ col_cos)) > 1e-3:
        raise DicomSeriesError(f"{first.path}: ImageOrientationPatient axes are not orthogonal")
    row_cos = row_cos / np.linalg.norm(row_cos)
    col_cos = col_cos / np.linalg.norm(col_cos)
    normal = np.cross(row_cos, col_cos)
    ps = _floats(first.ds, "PixelSpacing", 2, first.path)
    if np.any(ps <= 0):
        raise DicomSeriesError(f"{first.path}: PixelSpacing must be positive, got {ps.tolist()}")
    rows, cols = int(first.ds.get("Rows", 0)), int(first.ds.get("Columns", 0))
    ipp = np.empty((len(headers), 3))
    for n, h in enumerate(headers):
        if int(h.ds.get("NumberOfFrames", 1) or 1) > 1:
            raise DicomSeriesError(
                f"{h.path}: multi-frame (enhanced) DICOM is not supported; convert the series to "
                "NIfTI (e.g. with dcm2niix) and load that"
            )
        if (int(h.ds.get("Rows", 0)), int(h.ds.get("Columns", 0))) != (rows, cols):
            raise DicomSeriesError(
                f"{h.path}: image size {h.ds.get('Rows')}x{h.ds.get('Columns')} differs from "
                f"{rows}x{cols} of {first.path.name}; the series mixes image sizes"
            )
        other = _floats(h.ds, "ImageOrientationPatient", 6, h.path)
        if np.abs(other - iop).max() > ORIENTATION_TOL:
            raise DicomSeriesError(
                f"{h.path}: ImageOrientationPatient {other.tolist()} differs from "
                f"{iop.tolist()} of {first.path.name}; the series mixes orientations "
                "(a localizer in the series?)"
            )
        other_ps = _floats(h.ds, "PixelSpacing", 2, h.path)
        if np.abs(other_ps - ps).max() > 1e-4 * max(1.0, float(ps.max())):
            raise DicomSeriesError(
                f"{h.path}: PixelSpacing {other_ps.tolist()} differs from {ps.tolist()} "
                f"of {first.path.name}"
            )
        ipp[n] = _floats(h.ds, "ImagePositionPatient", 3, h.path)
    if rows < 1 or cols < 1:
        raise DicomSeriesError(f"{first.path}: missing or invalid Rows/Columns")
    if len(headers) < 2:
        raise DimensionalityError(
            f"{first.path}: the series has a single 2D image; a 3D series needs at least 2 slices"
        )

    _check_one_frame_of_reference(headers)
    dist = ipp @ normal
    order = np.argsort(dist, kind="stable")
    dist, pos = dist[order], ipp[order]
    names = [headers[i].path.name for i in order]
    numbers = [_instance_number(headers[i].ds) for i in order]

    def label(n: int) -> str:  # "IM0005 (#5, 12.500 mm)"
        num = f"#{numbers[n]}, " if numbers[n] is not None else ""
        return f"{names[n]} ({num}{dist[n]:.3f} mm)"

    gaps = np.diff(dist)
    dup = np.nonzero(gaps < DUPLICATE_TOL_MM)[0]
    if dup.size:
        shown = "; ".join(f"{label(d)} and {label(d + 1)}" for d in dup[:5])
        raise DicomSeriesError(
            f"{len(dup)} duplicate slice position(s) along the slice normal: {shown}; the series "
            "mixes acquisitions, echoes or time points (pick one, or split the folder)"
        )
    _check_instance_numbers(numbers, label)
    step_len = float(np.median(gaps))
    tol = max(SPACING_ABS_TOL_MM, SPACING_REL_TOL * step_len)
    bad = np.nonzero(np.abs(gaps - step_len) > tol)[0]
    if bad.size:
        ratios = gaps[bad] / step_len
        missing = np.round(ratios)
        if np.all(missing >= 2) and np.all(np.abs(ratios - missing) < 0.1):
            shown = "; ".join(
                f"{int(m) - 1} between {label(b)} and {label(b + 1)}"
                for b, m in zip(bad[:5], missing[:5], strict=False)
            )
            raise DicomSeriesError(
                f"{int((missing - 1).sum())} slice(s) missing from the series (slice spacing "
                f"{step_len:.4g} mm): {shown}; the folder is incomplete"
            )
        found = ", ".join(f"{g:.4g}" for g in np.unique(np.round(gaps, 3))[:8])
        shown = "; ".join(
            f"{gaps[b]:.4g} mm between {label(b)} and {label(b + 1)}" for b in bad[:5]
        )
        more = f" and {bad.size - 5} more" if bad.size > 5 else ""
        raise DicomSeriesError(
            f"slice spacing is not uniform: spacings {found} mm (median {step_len:.4g} mm); "
            f"{bad.size} irregular step(s): {shown}{more}; the folder may hold interleaved "
            "stacks, or resample the series to a regular spacing first"
        )
    n = len(pos)
    step = (pos[-1] - pos[0]) / (n - 1)
    deviation = float(np.linalg.norm(np.diff(pos, axis=0) - step, axis=1).max())
    if deviation > tol:
        raise DicomSeriesError(
            f"slice positions do not lie on a straight line (a slice is off by {deviation:.3g} mm); "
            "the series mixes stacks"
        )
    in_plane = step - float(step @ normal) * normal
    drift = float(np.linalg.norm(in_plane)) * (n - 1)
    tilt_deg = math.degrees(math.atan2(float(np.linalg.norm(in_plane)), float(step @ normal)))
    tilted = drift > TILT_DRIFT_TOL_PIXELS * float(ps.min())
    return _Stack(
        order=order,
        origin=pos[0],
        row_cos=row_cos,
        col_cos=col_cos,
        normal=normal,
        spacing_ij=(float(ps[1]), float(ps[0])),
        step=step if tilted else float(step @ normal) * normal,
        slice_spacing=float(step @ normal),
        tilt_deg=tilt_deg,
        tilted=tilted,
    )


def _lps_affine(
    stack: _Stack, origin: np.ndarray | None = None, k_axis: np.ndarray | None = None
) -> np.ndarray:
    a = np.eye(4)
    a[:3, 0] = stack.row_cos * stack.spacing_ij[0]
    a[:3, 1] = stack.col_cos * stack.spacing_ij[1]
    a[:3, 2] = stack.step if k_axis is None else k_axis
    a[:3, 3] = stack.origin if origin is None else origin
    return a


# --------------------------------------------------------------------------------------------
# pixels
# --------------------------------------------------------------------------------------------


def _optional_float(ds: Dataset, keyword: str) -> float | None:
    """A numeric header value, ``None`` when absent, empty or malformed."""
    with contextlib.suppress(TypeError, ValueError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = ds.get(keyword)
        if value not in (None, ""):
            return float(value)
    return None


def _optional_first_float(ds: Dataset, keyword: str) -> float | None:
    """The first value of a possibly multi-valued numeric tag (WindowCenter...), else ``None``."""
    with contextlib.suppress(TypeError, ValueError, IndexError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = ds.get(keyword)
        if isinstance(value, pydicom.multival.MultiValue):
            value = value[0] if len(value) else None
        if value not in (None, ""):
            out = float(value)
            return out if math.isfinite(out) else None
    return None


def _rescale(h: _Header) -> tuple[float, float]:
    try:
        slope = float(h.ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(h.ds.get("RescaleIntercept", 0.0) or 0.0)
    except (TypeError, ValueError) as exc:
        raise DicomSeriesError(f"{h.path}: invalid RescaleSlope/RescaleIntercept: {exc}") from exc
    if not (math.isfinite(slope) and math.isfinite(intercept)) or slope == 0:
        raise DicomSeriesError(f"{h.path}: invalid rescale slope {slope} / intercept {intercept}")
    return slope, intercept


def _read_pixels(path: Path, shape: tuple[int, int]) -> np.ndarray:
    ds: Dataset | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(str(path), force=True)
            if "PixelData" not in ds:
                raise DicomSeriesError(f"{path}: no pixel data (truncated file?)")
            fm = ds.get("file_meta")
            if fm is None or "TransferSyntaxUID" not in fm:
                implicit = bool(ds.original_encoding[0])
                ds.file_meta = fm if fm is not None else FileMetaDataset()
                ds.file_meta.TransferSyntaxUID = (
                    ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
                )
            pixels = np.asarray(ds.pixel_array)
    except DicomSeriesError:
        raise
    except Exception as exc:  # pydicom and its decoders raise many types for broken data
        ts = ds.get("file_meta", Dataset()).get("TransferSyntaxUID") if ds is not None else None
        hint = f" (transfer syntax {pydicom.uid.UID(str(ts)).name})" if ts else ""
        raise DicomSeriesError(
            f"{path}: cannot decode pixel data{hint}: {type(exc).__name__}: {exc}"
        ) from exc
    if pixels.shape != shape:
        raise DicomSeriesError(f"{path}: pixel array shape {pixels.shape}, expected {shape}")
    return pixels


def _resample_tilted(
    array: np.ndarray, stack: _Stack, fill: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shift each slice in-plane so the stack becomes orthogonal (linear interpolation).

    The output grid keeps the in-plane axes and spacing, uses the slice normal as third axis and
    grows in-plane so that no slice content is cut off. Returns ``(array, lps_origin, k_axis)``.
    """
    ni, nj, nk = array.shape
    dx, dy = stack.spacing_ij
    a = float(stack.step @ stack.row_cos) / dx  # voxels per slice along i
    b = float(stack.step @ stack.col_cos) / dy
    i0 = math.floor(min(0.0, a * (nk - 1)))
    j0 = math.floor(min(0.0, b * (nk - 1)))
    out_i = ni + math.ceil(max(0.0, a * (nk - 1))) - i0
    out_j = nj + math.ceil(max(0.0, b * (nk - 1))) - j0
    out = np.empty((out_i, out_j, nk), dtype=np.float32)
    for k in range(nk):
        ndimage.affine_transform(
            array[:, :, k].astype(np.float32),
            np.eye(2),
            offset=(i0 - k * a, j0 - k * b),
            output_shape=(out_i, out_j),
            output=out[:, :, k],
            order=1,
            mode="constant",
            cval=fill,
        )
    origin = stack.origin + i0 * dx * stack.row_cos + j0 * dy * stack.col_cos
    return out, origin, stack.slice_spacing * stack.normal


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def read_dicom_series(
    folder: str | Path,
    series_uid: str | None = None,
    *,
    correct_tilt: bool = False,
    allow_non_ct: bool = False,
    max_voxels: int | None = None,
    max_bytes: int | None = None,
    progress: bool | None = None,
) -> Volume:
    """Read one CT series from ``folder`` (searched recursively) as an HU :class:`Volume`.

    ``series_uid`` picks a series when the folder holds several. A gantry-tilted stack raises
    :class:`GeometryError` unless ``correct_tilt`` (resample onto an orthogonal grid). Modalities
    other than CT raise :class:`IntensityError` unless ``allow_non_ct``. ``progress=None`` shows a
    progress bar for long series on a terminal.
    """
    root = Path(folder)
    groups, n_files = _scan(root, progress)
    if not groups:
        raise DicomSeriesError(f"{root}: no DICOM image files found ({n_files} files examined)")
    if series_uid is not None:
        if series_uid not in groups:
            listing = "; ".join(_info(u, h).describe() for u, h in groups.items())
            raise DicomSeriesError(f"{root}: no series with UID {series_uid}; found: {listing}")
        uid = series_uid
    elif len(groups) > 1:
        listing = "; ".join(_info(u, h).describe() for u, h in groups.items())
        raise DicomSeriesError(
            f"{root}: the folder holds {len(groups)} series; choose one with series_uid "
            f"(CLI --series-uid): {listing}"
        )
    else:
        uid = next(iter(groups))
    headers = groups[uid]
    first = headers[0].ds
    modality = str(first.get("Modality", "") or "")
    if modality and modality != "CT" and not allow_non_ct:
        raise IntensityError(
            f"{root}: series {uid} has modality {modality}, not CT; ichseg expects head CT "
            "(pass allow_non_ct=True, CLI --allow-non-ct, to load it anyway)"
        )
    stack = _stack_geometry(headers)
    rows, cols = int(first.Rows), int(first.Columns)
    n = len(headers)
    if max_voxels is not None and rows * cols * n > max_voxels:
        raise DimensionalityError(
            f"{root}: series of {cols}x{rows}x{n} = {rows * cols * n} voxels exceeds the limit "
            f"of {max_voxels} voxels"
        )
    if max_bytes is not None and rows * cols * n * 8 > max_bytes:  # int16/float32 + float32 copy
        raise DimensionalityError(
            f"{root}: series of {cols}x{rows}x{n} voxels needs about "
            f"{rows * cols * n * 8 / 1024**3:.3g} GiB of memory to load with a working copy, more "
            f"than the budget of {max_bytes / 1024**3:.3g} GiB (raise max_bytes or "
            "ICHSEG_MAX_BYTES)"
        )
    gantry = _optional_float(first, "GantryDetectorTilt")
    tilt_note = f" (header GantryDetectorTilt {gantry:g} degrees)" if gantry is not None else ""
    if stack.tilted and not correct_tilt:
        raise GeometryError(
            f"{root}: gantry-tilted series: slices are sheared by {stack.tilt_deg:.2f} degrees "
            f"from the slice normal{tilt_note}; pass correct_tilt=True (CLI --correct-tilt) to "
            "resample it onto an orthogonal grid"
        )

    ordered = [headers[i] for i in stack.order]
    rescales = [_rescale(h) for h in ordered]
    integral = all(float(s).is_integer() and float(i).is_integer() for s, i in rescales)
    dtype = np.int16 if integral else np.float32
    array = np.empty((cols, rows, n), dtype=dtype)
    show = _show_progress(progress, n)
    for k, h in enumerate(tqdm(ordered, desc="reading DICOM", unit="slice", disable=not show)):
        raw = _read_pixels(h.path, (rows, cols))
        slope, intercept = rescales[k]
        if array.dtype == np.int16:
            values = raw.astype(np.int64) * int(slope) + int(intercept)
            if values.min() < -32768 or values.max() > 32767:
                array = array.astype(np.float32)
            array[:, :, k] = values.T
        else:
            array[:, :, k] = (raw.astype(np.float64) * slope + intercept).T.astype(np.float32)

    lps = _lps_affine(stack)
    if stack.tilted:
        fill = float(array.min())
        array, origin, k_axis = _resample_tilted(array, stack, fill)
        lps = _lps_affine(stack, origin, k_axis)

    meta: dict[str, Any] = {
        "source": str(root),
        "format": "dicom",
        "series_uid": uid,
        "series_description": str(first.get("SeriesDescription", "") or ""),
        "series_number": str(first.get("SeriesNumber", "") or ""),
        "study_uid": str(first.get("StudyInstanceUID", "") or ""),
        "frame_of_reference_uid": str(first.get("FrameOfReferenceUID", "") or ""),
        "modality": modality,
        "patient_id": str(first.get("PatientID", "") or ""),
        "n_slices": n,
        "slice_spacing": stack.slice_spacing,
        "slice_thickness": _optional_float(first, "SliceThickness"),
        "window_center": _optional_first_float(first, "WindowCenter"),
        "window_width": _optional_first_float(first, "WindowWidth"),
        "gantry_tilt_deg": stack.tilt_deg if stack.tilted else 0.0,
        "tilt_corrected": stack.tilted,
        "files": [str(h.path) for h in ordered],
        "sop_instance_uids": [str(h.ds.get("SOPInstanceUID", "")) for h in ordered],
        "dtype": str(array.dtype),
    }
    return Volume(array, LPS_RAS @ lps, Intensity.hu(), meta)


def is_image_dataset(ds: Dataset) -> bool:
    """True for image objects (CT, MR, secondary capture...), false for SEG, SR, RTSTRUCT..."""
    return _is_image(ds)


def read_dicom_file_header(path: str | Path) -> Dataset | None:
    """Header of a single file if it is DICOM (``None`` otherwise); used to reject 2D slices."""
    return _read_header(Path(path))


def write_dicom_series(
    volume_hu: Volume,
    folder: str | Path,
    *,
    series_description: str = "ichseg",
    series_number: int = 1,
    patient_id: str = "ICHSEG-ANON",
    patient_name: str = "Anonymous^",
    study_uid: str | None = None,
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    modality: str = "CT",
    rescale: tuple[float, float] = (1.0, -1024.0),
    slice_thickness: float | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``volume_hu`` as a single-frame CT series (one file per ``k`` slice).

    Pixels are stored as ``round((HU - intercept) / slope)`` with ``rescale = (slope,
    intercept)``, unsigned when possible. Geometry is written in LPS from the volume's affine; the
    ``k`` axis may be oblique to the slices (that is how a gantry-tilted stack looks).
    ``slice_thickness`` defaults to the distance between slices along the normal. Files are named
    ``{series_number:03d}_{k+1:04d}.dcm`` and existing files are not replaced unless ``overwrite``.
    """
    if volume_hu.intensity.kind == IntensityKind.LABEL:
        raise IntensityError("write_dicom_series writes CT images, got a label volume")
    hu = volume_hu.hu().astype(np.float64)
    if not np.all(np.isfinite(hu)):
        raise IntensityError("volume contains NaN or infinite values; cannot write DICOM")
    slope, intercept = float(rescale[0]), float(rescale[1])
    if slope <= 0 or not math.isfinite(slope) or not math.isfinite(intercept):
        raise IntensityError(f"invalid rescale slope {slope} / intercept {intercept}")
    stored = np.round((hu - intercept) / slope)
    if stored.min() >= 0 and stored.max() <= 65535:
        pixel_dtype, signed = np.uint16, 0
    elif stored.min() >= -32768 and stored.max() <= 32767:
        pixel_dtype, signed = np.int16, 1
    else:
        raise IntensityError(
            f"HU range {hu.min():g}..{hu.max():g} does not fit 16 bits with slope {slope:g} "
            f"and intercept {intercept:g}"
        )
    stored = stored.astype(pixel_dtype)

    lps = LPS_RAS @ volume_hu.affine
    col_i, col_j, step = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    dx, dy = float(np.linalg.norm(col_i)), float(np.linalg.norm(col_j))
    row_cos, col_cos = col_i / dx, col_j / dy
    if abs(float(row_cos @ col_cos)) > 1e-6:
        raise GeometryError(
            "the in-plane voxel axes (i, j) are not orthogonal; DICOM cannot store that"
        )
    normal = np.cross(row_cos, col_cos)
    spacing_k = float(step @ normal)
    if abs(spacing_k) < 1e-6:
        raise GeometryError("the slice axis k lies in the slice plane; cannot write slices")
    tilt = math.degrees(
        math.atan2(float(np.linalg.norm(step - spacing_k * normal)), abs(spacing_k))
    )

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    ni, nj, nk = volume_hu.shape
    paths = [out / f"{series_number:03d}_{k + 1:04d}.dcm" for k in range(nk)]
    if not overwrite:
        existing = [p for p in paths if p.exists()]
        if existing:
            raise InputFileError(
                f"{existing[0]}: file exists ({len(existing)} of the series' files); "
                "pass overwrite=True to replace them"
            )
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = frame_of_reference_uid or generate_uid()
    now = datetime.now()
    thickness = abs(spacing_k) if slice_thickness is None else float(slice_thickness)

    def ds_str(x: float) -> str:  # DS values are at most 16 characters
        s = f"{x:.10g}"
        return s if len(s) <= 16 else f"{x:.8g}"

    for k, path in enumerate(paths):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
        ds.AccessionNumber = ""
        ds.Modality = modality
        ds.Manufacturer = "ichseg"
        ds.ReferringPhysicianName = ""
        ds.SeriesDescription = series_description
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k + 1
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        position = lps[:3, 3] + k * step
        ds.ImagePositionPatient = [ds_str(v) for v in position]
        ds.ImageOrientationPatient = [ds_str(v) for v in (*row_cos, *col_cos)]
        ds.SliceLocation = ds_str(float(position @ normal))
        ds.SliceThickness = ds_str(thickness)
        if tilt > 1e-6:
            ds.GantryDetectorTilt = ds_str(tilt)
        ds.PixelSpacing = [ds_str(dy), ds_str(dx)]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = nj, ni
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = signed
        ds.RescaleIntercept = ds_str(intercept)
        ds.RescaleSlope = ds_str(slope)
        ds.RescaleType = "HU"
        ds.WindowCenter = "40"
        ds.WindowWidth = "80"
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
        ds.save_as(str(path), enforce_file_format=True)
    return paths
