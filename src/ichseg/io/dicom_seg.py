"""DICOM Segmentation (SEG) objects for hemorrhage masks, written and read with highdicom.

A SEG references the CT series it was drawn on, so PACS viewers overlay it on the right slices.
Segments are coded with SNOMED CT: category 49755003 "Morphologically abnormal structure",
type 50960005 "Hemorrhage". highdicom is an optional dependency (``pip install ichseg[dicom]``).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.sr.coding import Code

from ichseg.data.subtypes import Subtype
from ichseg.errors import (
    ConfigError,
    DicomSeriesError,
    EmptyMaskError,
    GeometryError,
    InputFileError,
)
from ichseg.io.dicom import read_dicom_series
from ichseg.io.reader import align_mask_to
from ichseg.io.volume import Intensity, Volume

CATEGORY_ABNORMAL_STRUCTURE = Code("49755003", "SCT", "Morphologically abnormal structure")
TYPE_HEMORRHAGE = Code("50960005", "SCT", "Hemorrhage")
ALGORITHM_TYPES = ("MANUAL", "SEMIAUTOMATIC", "AUTOMATIC")
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
#: CID 7162 "Artificial Intelligence" (the networks behind SEMIAUTOMATIC/AUTOMATIC results).
ALGORITHM_FAMILY = Code("123110", "DCM", "Artificial Intelligence")


def _highdicom() -> Any:
    try:
        import highdicom
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ConfigError(
            "DICOM-SEG needs the optional package highdicom: pip install 'ichseg[dicom]'"
        ) from exc
    return highdicom


def _segment_label(value: int, n_labels: int) -> str:
    if n_labels == 1:
        return "Hemorrhage"
    if value in Subtype._value2member_map_:
        return f"Hemorrhage {Subtype(value).name}"
    return f"Hemorrhage label {value}"


def write_dicom_seg(
    mask: Volume,
    source_dicom_folder: str | Path,
    out_path: str | Path,
    *,
    algorithm_type: str = "SEMIAUTOMATIC",
    series_uid: str | None = None,
    algorithm_name: str = "ichseg",
    series_description: str = "ichseg hemorrhage",
    overwrite: bool = False,
) -> Path:
    """Write ``mask`` as a binary DICOM-SEG referencing the CT series in ``source_dicom_folder``.

    Each distinct non-zero label becomes one segment (one "Hemorrhage" segment for binary masks;
    subtype names for labels 1..5 of multi-class masks). The mask must lie on the series' voxel
    grid (permuted/flipped axes of it are accepted). ``series_uid`` picks the source series when
    the folder holds several. Existing files are only replaced with ``overwrite``.
    """
    hd = _highdicom()
    from ichseg import __version__

    kind = algorithm_type.upper()
    if kind not in ALGORITHM_TYPES:
        raise ConfigError(
            f"algorithm_type must be one of {', '.join(ALGORITHM_TYPES)}, got {algorithm_type!r}"
        )
    out = Path(out_path)
    if out.exists() and not overwrite:
        raise InputFileError(f"{out}: file exists; refusing to overwrite it (pass overwrite=True)")
    try:
        source = read_dicom_series(source_dicom_folder, series_uid)
    except GeometryError as exc:
        raise GeometryError(
            f"{exc}. A DICOM-SEG must match the original slices; gantry-tilted series are not "
            "supported for SEG export"
        ) from exc
    arr = np.asarray(mask.array)
    if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
        raise InputFileError("mask has non-integer values; threshold it before export")
    label = Volume(arr.astype(np.uint8), mask.affine, Intensity.label(), dict(mask.meta))
    label = align_mask_to(label, source)
    values = [int(v) for v in np.unique(label.array) if v != 0]
    if not values:
        raise EmptyMaskError("mask is empty; a DICOM-SEG needs at least one segmented voxel")
    relabelled = np.zeros(label.shape, dtype=np.uint8)
    for number, value in enumerate(values, start=1):
        relabelled[label.array == value] = number

    algorithm = None
    if kind != "MANUAL":
        algorithm = hd.AlgorithmIdentificationSequence(
            name=algorithm_name,
            family=ALGORITHM_FAMILY,
            version=__version__,
        )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=_segment_label(value, len(values)),
            segmented_property_category=CATEGORY_ABNORMAL_STRUCTURE,
            segmented_property_type=TYPE_HEMORRHAGE,
            algorithm_type=kind,
            algorithm_identification=algorithm,
            tracking_uid=hd.UID(),
            tracking_id=f"ichseg hemorrhage {value}",
        )
        for number, value in enumerate(values, start=1)
    ]
    try:
        sources = [pydicom.dcmread(f) for f in source.meta["files"]]
    except Exception as exc:  # the files were read a moment ago; report whatever changed
        raise DicomSeriesError(f"cannot re-read the source series: {exc}") from exc
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=relabelled.transpose(2, 1, 0),  # (frames = k, rows = j, columns = i)
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=int(sources[0].get("SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="ichseg",
        manufacturer_model_name="ichseg",
        software_versions=__version__,
        device_serial_number="0",
        series_description=series_description,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ichseg-write-", dir=out.parent))
    try:
        seg.save_as(str(tmp / out.name))
        if out.exists() and not overwrite:
            raise InputFileError(f"{out}: file exists; refusing to overwrite it")
        (tmp / out.name).replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def is_dicom_seg(path: str | Path) -> bool:
    """True if ``path`` is a DICOM file of the Segmentation Storage class."""
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception:
        return False
    return str(ds.get("SOPClassUID", "")) == SEGMENTATION_STORAGE


def read_dicom_seg(path: str | Path, reference: Volume) -> Volume:
    """Read a DICOM-SEG onto ``reference``, a volume from :func:`read_dicom_series`.

    Returns a ``uint8`` label volume whose values are the segment numbers (0 = background).
    """
    hd = _highdicom()
    p = Path(path)
    uids = reference.meta.get("sop_instance_uids")
    if reference.meta.get("format") != "dicom" or not uids:
        raise InputFileError(
            f"{p}: a DICOM-SEG can only be read onto the DICOM series it refers to"
        )
    if reference.meta.get("tilt_corrected"):
        raise GeometryError(f"{p}: the reference series was resampled (tilt correction)")
    try:
        seg = hd.seg.segread(str(p))
    except Exception as exc:  # highdicom/pydicom raise many types for broken files
        raise InputFileError(
            f"{p}: not a readable DICOM-SEG ({type(exc).__name__}: {exc})"
        ) from exc
    referenced = {str(u[2]) for u in seg.get_source_image_uids()}
    if not referenced <= set(uids):
        raise GeometryError(f"{p}: the SEG refers to images that are not in the reference series")
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=list(uids),
        combine_segments=True,
        assert_missing_frames_are_empty=True,
        dtype=np.uint8,
    )
    array = np.ascontiguousarray(np.asarray(pixels).transpose(2, 1, 0))
    if array.shape != reference.shape:
        raise GeometryError(
            f"{p}: SEG frames {array.shape} do not match the series {reference.shape}"
        )
    meta = {"source": str(p), "format": "dicom-seg", "series_uid": str(seg.SeriesInstanceUID)}
    return Volume(array, reference.affine.copy(), Intensity.label(), meta)
