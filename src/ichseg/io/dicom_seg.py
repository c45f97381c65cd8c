"""DICOM Segmentation (SEG) objects for hemorrhage masks, written and read with highdicom.

A SEG references the CT series it was drawn on (Referenced Series, source image UIDs, frame of
reference, the source slices' plane positions), so PACS viewers overlay it on the right slices.
It therefore needs a DICOM source series: a mask drawn on a NIfTI/NRRD scan has no slices to
refer to and :func:`require_dicom_source` refuses it with a message naming the alternatives
(writing a SEG against a freshly invented CT series would give a file no PACS could match to the
patient's study).

Codes (all from the DICOM standard's code tables, PS3.16, as shipped in ``pydicom.sr.codedict``):

===========================  ====================================================================
segmented property category  SCT 49755003 "Morphologically Abnormal Structure" (CID 7150)
segmented property type      SCT 50960005 "Hemorrhage" (CID 7151 / CID 7159), every segment
anatomic region (by label)   IPH: SCT 12738006 "Brain"; IVH: SCT 35764002 "Brain ventricle";
                             SAH: SCT 35951006 "Subarachnoid space"; EDH, SDH, a binary mask and
                             other labels: SCT 1101003 "Intracranial" (CID 7151 / CID 4)
algorithm family             DCM 123110 "Artificial Intelligence" (CID 7162), for SEMIAUTOMATIC
                             (interactive ichseg results, the default) and AUTOMATIC segments
===========================  ====================================================================

Each distinct non-zero label becomes one segment (segment numbers 1..n in label order); the
label value is kept in the segment's Tracking ID (``"ichseg hemorrhage <value>"``) and its name
in the Segment Label (``"Hemorrhage"``, ``"Hemorrhage IPH"``, ...), so :func:`read_dicom_seg`
gives back the original label values and names. highdicom is an optional dependency
(``pip install ichseg[dicom]``).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Mapping
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

CATEGORY_ABNORMAL_STRUCTURE = Code("49755003", "SCT", "Morphologically Abnormal Structure")
TYPE_HEMORRHAGE = Code("50960005", "SCT", "Hemorrhage")
REGION_BRAIN = Code("12738006", "SCT", "Brain")
REGION_BRAIN_VENTRICLE = Code("35764002", "SCT", "Brain ventricle")
REGION_SUBARACHNOID_SPACE = Code("35951006", "SCT", "Subarachnoid space")
REGION_INTRACRANIAL = Code("1101003", "SCT", "Intracranial")
#: Anatomic region of each subtype's segment (others: :data:`REGION_INTRACRANIAL`).
SUBTYPE_REGIONS: dict[str, Code] = {
    "IPH": REGION_BRAIN,
    "IVH": REGION_BRAIN_VENTRICLE,
    "SAH": REGION_SUBARACHNOID_SPACE,
    "EDH": REGION_INTRACRANIAL,
    "SDH": REGION_INTRACRANIAL,
}
ALGORITHM_TYPES = ("MANUAL", "SEMIAUTOMATIC", "AUTOMATIC")
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
#: CID 7162 "Artificial Intelligence" (the networks behind SEMIAUTOMATIC/AUTOMATIC results).
ALGORITHM_FAMILY = Code("123110", "DCM", "Artificial Intelligence")
TRACKING_PREFIX = "ichseg hemorrhage"
_TRACKING_RE = re.compile(rf"^{TRACKING_PREFIX} (\d+)$")


def _highdicom() -> Any:
    try:
        import highdicom
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ConfigError(
            "DICOM-SEG needs the optional package highdicom: pip install 'ichseg[dicom]'"
        ) from exc
    return highdicom


def require_dicom_source(scan: Volume, what: str = "the scan") -> None:
    """Raise unless ``scan`` was read from a DICOM series a SEG can refer to (see module
    docstring): :class:`InputFileError` for NIfTI/NRRD/MHA scans, :class:`GeometryError` for a
    tilt-corrected (resampled) series, :class:`ConfigError` without highdicom. Cheap: run it
    before any heavy work."""
    fmt = scan.meta.get("format")
    if fmt != "dicom" or not scan.meta.get("files"):
        kind = f"a {fmt} file" if fmt else "not a DICOM series"
        raise InputFileError(
            f"a DICOM-SEG refers to the slices of a DICOM series, but {what} is {kind}: write "
            "the mask as .nii.gz/.nrrd/.mha instead, or segment the DICOM folder the scan was "
            "converted from"
        )
    if scan.meta.get("tilt_corrected"):
        raise GeometryError(
            f"{what} is a gantry-tilted series resampled by --correct-tilt; a DICOM-SEG must lie "
            "on the original slices, so it cannot be written for it (write .nii.gz instead)"
        )
    _highdicom()


def _segment_label(value: int, n_labels: int, names: Mapping[int, str]) -> tuple[str, Code]:
    """Segment label and anatomic region of label ``value``."""
    name = names.get(value)
    if name is None and n_labels > 1:
        name = Subtype(value).name if value in Subtype._value2member_map_ else f"label {value}"
    if name is None:
        return "Hemorrhage", REGION_INTRACRANIAL
    return f"Hemorrhage {name}", SUBTYPE_REGIONS.get(name.strip().upper(), REGION_INTRACRANIAL)


def _source_volume(source: str | Path | Volume, series_uid: str | None) -> Volume:
    if isinstance(source, Volume):
        require_dicom_source(source, "the source volume")
        return source
    try:
        return read_dicom_series(source, series_uid)
    except GeometryError as exc:
        raise GeometryError(
            f"{exc}. A DICOM-SEG must match the original slices; gantry-tilted series are not "
            "supported for SEG export"
        ) from exc


def write_dicom_seg(
    mask: Volume,
    source: str | Path | Volume,
    out_path: str | Path,
    *,
    algorithm_type: str = "SEMIAUTOMATIC",
    series_uid: str | None = None,
    algorithm_name: str = "ichseg",
    series_description: str = "ichseg hemorrhage",
    label_names: Mapping[int, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``mask`` as a binary DICOM-SEG referencing the CT series it was drawn on.

    ``source`` is the DICOM folder (``series_uid`` picks the series when it holds several) or a
    volume already read from it (:func:`~ichseg.io.dicom.read_dicom_series`, untilted). Each
    distinct non-zero label becomes one segment (see the module docstring for labels and codes;
    ``label_names`` overrides the subtype names, e.g. ``{1: "IPH"}``). The mask must lie on the
    series' voxel grid (permuted/flipped axes of it are accepted). Existing files are only
    replaced with ``overwrite``.
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
    src = _source_volume(source, series_uid)
    arr = np.asarray(mask.array)
    if arr.dtype.kind == "f" and not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
        raise InputFileError("mask has non-integer values; threshold it before export")
    if arr.size and (float(arr.min()) < 0 or float(arr.max()) > 255):
        raise InputFileError(f"mask labels must lie in 0..255, got {arr.min()}..{arr.max()}")
    label = Volume(arr.astype(np.uint8), mask.affine, Intensity.label(), dict(mask.meta))
    label = align_mask_to(label, src)
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
    names = dict(label_names or {})
    descriptions = []
    for number, value in enumerate(values, start=1):
        seg_label, region = _segment_label(value, len(values), names)
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=seg_label,
                segmented_property_category=CATEGORY_ABNORMAL_STRUCTURE,
                segmented_property_type=TYPE_HEMORRHAGE,
                algorithm_type=kind,
                algorithm_identification=algorithm,
                tracking_uid=hd.UID(),
                tracking_id=f"{TRACKING_PREFIX} {value}",
                anatomic_regions=[region],
            )
        )
    try:
        sources = [pydicom.dcmread(f) for f in src.meta["files"]]
    except Exception as exc:  # the files were read a moment ago; report whatever changed
        raise DicomSeriesError(f"cannot re-read the source series: {exc}") from exc
    uids = [str(ds.get("SOPInstanceUID", "")) for ds in sources]
    if src.meta.get("sop_instance_uids") and uids != list(src.meta["sop_instance_uids"]):
        raise DicomSeriesError("the source series changed on disk since it was read")
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
        content_label="ICHSEG",
        content_description=f"hemorrhage segmentation ({kind.lower()})",
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


def _segment_values(seg: Any) -> tuple[dict[int, int], dict[int, str]]:
    """Segment number -> label value (from ichseg's tracking IDs, else the number itself) and
    label value -> name (only for segments with a specific name)."""
    values: dict[int, int] = {}
    names: dict[int, str] = {}
    for item in seg.SegmentSequence:
        number = int(item.SegmentNumber)
        match = _TRACKING_RE.match(str(item.get("TrackingID", "") or ""))
        values[number] = int(match.group(1)) if match else number
    if len(set(values.values())) != len(values) or not all(0 < v <= 255 for v in values.values()):
        values = {n: n for n in values}  # not ichseg's numbering: keep the segment numbers
    for item in seg.SegmentSequence:
        text = str(item.get("SegmentLabel", "") or "").strip()
        name = text[len("Hemorrhage ") :].strip() if text.startswith("Hemorrhage ") else text
        if name and name.lower() != "hemorrhage":
            names[values[int(item.SegmentNumber)]] = name
    return values, names


def read_dicom_seg(path: str | Path, reference: Volume, *, original_labels: bool = True) -> Volume:
    """Read a DICOM-SEG onto ``reference``, a volume from :func:`read_dicom_series`.

    Returns a ``uint8`` label volume (0 = background) on the reference grid. With
    ``original_labels`` the values are the label values ichseg wrote (its tracking IDs), else
    (and for SEGs from other software) the segment numbers. ``meta["label_names"]`` maps values
    to the segments' specific names (e.g. ``{2: "IPH", 3: "IVH"}``; absent for a plain
    "Hemorrhage" segment).
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
    try:
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=list(uids),
            combine_segments=True,
            assert_missing_frames_are_empty=True,
            dtype=np.uint8,
        )
    except Exception as exc:  # overlapping segments, missing frames...
        raise InputFileError(f"{p}: cannot read the SEG's frames ({exc})") from exc
    array = np.ascontiguousarray(np.asarray(pixels).transpose(2, 1, 0))
    if array.shape != reference.shape:
        raise GeometryError(
            f"{p}: SEG frames {array.shape} do not match the series {reference.shape}"
        )
    values, names = _segment_values(seg)
    if original_labels and any(n != v for n, v in values.items()):
        lut = np.zeros(256, dtype=np.uint8)
        for number, value in values.items():
            lut[number] = value
        array = lut[array]
    elif not original_labels:
        names = {n: names[v] for n, v in values.items() if v in names}
    meta: dict[str, Any] = {
        "source": str(p),
        "format": "dicom-seg",
        "series_uid": str(seg.SeriesInstanceUID),
    }
    if names:
        meta["label_names"] = names
    return Volume(array, reference.affine.copy(), Intensity.label(), meta)
