"""DICOM-SEG export of hemorrhage masks, read back with pydicom and highdicom (geometry included)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from io_synth import head_phantom

from ichseg.errors import EmptyMaskError, GeometryError, InputFileError
from ichseg.io import load_mask, load_volume, read_dicom_series, reorient, write_dicom_series
from ichseg.io.dicom_seg import read_dicom_seg, require_dicom_source, write_dicom_seg
from ichseg.io.nifti import write_nifti

hd = pytest.importorskip("highdicom")

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


def _series(tmp_path: Path, codes: str = "LPS"):
    """A CT series written from a volume stored as ``codes`` and a box mask on it."""
    vol = head_phantom(shape=(16, 18, 5))
    if codes != "LPS":
        vol = reorient(vol, codes)[0]
    write_dicom_series(vol, tmp_path / "ct")
    source = read_dicom_series(tmp_path / "ct")
    mask = np.zeros(source.shape, np.uint8)
    mask[4:9, 6:10, 1:4] = 1
    return source, source.as_label(mask)


def _world_lps(mask_vol) -> np.ndarray:
    ijk = np.argwhere(mask_vol.array > 0)
    return np.sort(np.round(mask_vol.voxel_to_world(ijk) @ LPS_FROM_RAS.T, 3), axis=0)


@pytest.mark.parametrize("codes", ["LPS", "RAS"])
def test_seg_round_trip_codes_and_geometry(tmp_path: Path, codes: str) -> None:
    source, mask = _series(tmp_path, codes)
    out = write_dicom_seg(mask, tmp_path / "ct", tmp_path / "x.seg.dcm")
    # --- pydicom: references, codes, geometry of every frame
    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and ds.Modality == "SEG"
    assert ds.SegmentationType == "BINARY"
    assert ds.StudyInstanceUID == source.meta["study_uid"]
    assert ds.FrameOfReferenceUID == source.meta["frame_of_reference_uid"]
    (ref_series,) = ds.ReferencedSeriesSequence
    assert ref_series.SeriesInstanceUID == source.meta["series_uid"]
    referenced = {r.ReferencedSOPInstanceUID for r in ref_series.ReferencedInstanceSequence}
    assert referenced == set(source.meta["sop_instance_uids"])
    (desc,) = ds.SegmentSequence
    assert desc.SegmentAlgorithmType == "SEMIAUTOMATIC" and desc.SegmentLabel == "Hemorrhage"
    cat = desc.SegmentedPropertyCategoryCodeSequence[0]
    typ = desc.SegmentedPropertyTypeCodeSequence[0]
    region = desc.AnatomicRegionSequence[0]
    assert (cat.CodeValue, cat.CodingSchemeDesignator) == ("49755003", "SCT")
    assert (typ.CodeValue, typ.CodingSchemeDesignator, typ.CodeMeaning) == (
        "50960005",
        "SCT",
        "Hemorrhage",
    )
    assert (region.CodeValue, region.CodeMeaning) == ("1101003", "Intracranial")
    family = desc.SegmentationAlgorithmIdentificationSequence[0].AlgorithmFamilyCodeSequence[0]
    assert (family.CodeValue, family.CodingSchemeDesignator) == ("123110", "DCM")
    assert desc.TrackingID == "ichseg hemorrhage 1"
    shared = ds.SharedFunctionalGroupsSequence[0]
    first = pydicom.dcmread(source.meta["files"][0])
    np.testing.assert_allclose(
        [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient],
        [float(v) for v in first.ImageOrientationPatient],
        atol=1e-6,
    )
    np.testing.assert_allclose(
        [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing],
        [float(v) for v in first.PixelSpacing],
    )
    positions = {
        str(pydicom.dcmread(f).SOPInstanceUID): [
            float(v) for v in pydicom.dcmread(f).ImagePositionPatient
        ]
        for f in source.meta["files"]
    }
    assert ds.NumberOfFrames == 3  # only the slices holding the mask (k = 1..3)
    for frame in ds.PerFrameFunctionalGroupsSequence:
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        pos = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(pos, positions[uid], atol=1e-4)
    # --- highdicom: its own volume geometry puts the voxels at the same LPS positions
    seg = hd.seg.segread(str(out))
    hvol = seg.get_volume(combine_segments=True)
    idx = np.argwhere(np.asarray(hvol.array) > 0)
    pts = idx @ np.asarray(hvol.affine)[:3, :3].T + np.asarray(hvol.affine)[:3, 3]
    np.testing.assert_allclose(np.sort(np.round(pts, 3), axis=0), _world_lps(mask), atol=1e-3)
    # --- our reader: the same array on the source grid
    back = read_dicom_seg(out, source)
    np.testing.assert_array_equal(back.array, mask.array)
    np.testing.assert_allclose(back.affine, source.affine)
    assert "label_names" not in back.meta  # a plain "Hemorrhage" segment has no subtype
    via_loader = load_mask(out, source, allow_empty=False)
    np.testing.assert_array_equal(via_loader.array, mask.array)


def test_multilabel_keeps_label_values_names_and_regions(tmp_path: Path) -> None:
    source, mask = _series(tmp_path)
    labels = mask.array * 2  # IPH
    labels[12:14, 12:14, 2] = 3  # IVH
    ras, _ = reorient(source.as_label(labels), "RAS")  # same grid, other axis order
    out = write_dicom_seg(ras, source, tmp_path / "seg.dcm", algorithm_type="manual")
    seg = hd.seg.segread(str(out))
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Hemorrhage IPH", "Hemorrhage IVH"]
    assert all(s.SegmentAlgorithmType == "MANUAL" for s in seg.SegmentSequence)
    regions = [s.AnatomicRegionSequence[0].CodeValue for s in seg.SegmentSequence]
    assert regions == ["12738006", "35764002"]  # Brain, Brain ventricle
    back = read_dicom_seg(out, source)
    np.testing.assert_array_equal(back.array, labels)
    assert back.meta["label_names"] == {2: "IPH", 3: "IVH"}
    numbers = read_dicom_seg(out, source, original_labels=False)
    np.testing.assert_array_equal(numbers.array, np.select([labels == 2, labels == 3], [1, 2], 0))
    assert numbers.meta["label_names"] == {1: "IPH", 2: "IVH"}
    kept = load_mask(out, source, binarize=False)
    np.testing.assert_array_equal(kept.array, labels)
    custom = write_dicom_seg(
        source.as_label(mask.array), source, tmp_path / "c.dcm", label_names={1: "SAH"}
    )
    (s,) = hd.seg.segread(str(custom)).SegmentSequence
    assert (
        s.SegmentLabel == "Hemorrhage SAH" and s.AnatomicRegionSequence[0].CodeValue == "35951006"
    )


def test_seg_refuses_bad_masks_sources_and_overwrite(tmp_path: Path) -> None:
    source, mask = _series(tmp_path)
    with pytest.raises(EmptyMaskError):
        write_dicom_seg(
            mask.with_array(np.zeros(mask.shape, np.uint8)), tmp_path / "ct", tmp_path / "a.dcm"
        )
    cropped = head_phantom(shape=(16, 18, 4)).as_label(np.ones((16, 18, 4)))
    with pytest.raises(GeometryError):
        write_dicom_seg(cropped, tmp_path / "ct", tmp_path / "b.dcm")
    with pytest.raises(InputFileError, match="non-integer"):
        write_dicom_seg(
            mask.with_array(np.full(mask.shape, 0.5, np.float32)), source, tmp_path / "f.dcm"
        )
    write_dicom_seg(mask, tmp_path / "ct", tmp_path / "c.dcm")
    with pytest.raises(InputFileError, match="refusing to overwrite"):
        write_dicom_seg(mask, tmp_path / "ct", tmp_path / "c.dcm")
    with pytest.raises(InputFileError, match="refers to"):
        load_mask(tmp_path / "c.dcm")
    with pytest.raises(InputFileError, match="holds no image"):
        load_volume(tmp_path / "c.dcm")
    # a NIfTI scan has no slices a SEG could refer to: refused with the alternatives named
    nifti = load_volume(write_nifti(source, tmp_path / "scan.nii.gz"))
    with pytest.raises(InputFileError, match=r"nifti file: write the mask as \.nii\.gz"):
        require_dicom_source(nifti, "SCAN")
    with pytest.raises(InputFileError, match="DICOM series"):
        write_dicom_seg(mask, nifti, tmp_path / "d.dcm")
    tilted = source.with_array(source.array, tilt_corrected=True)
    with pytest.raises(GeometryError, match="--correct-tilt"):
        require_dicom_source(tilted)
    require_dicom_source(source)  # a plain DICOM series is fine
