"""DICOM-SEG export of hemorrhage masks, checked by reading back with highdicom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from io_synth import head_phantom

from ichseg.errors import EmptyMaskError, GeometryError, InputFileError
from ichseg.io import load_mask, load_volume, read_dicom_series, reorient, write_dicom_series
from ichseg.io.dicom_seg import read_dicom_seg, write_dicom_seg

hd = pytest.importorskip("highdicom")


def _series(tmp_path: Path):
    vol = head_phantom(shape=(16, 18, 5))
    write_dicom_series(vol, tmp_path / "ct")
    source = read_dicom_series(tmp_path / "ct")
    mask = np.zeros(source.shape, np.uint8)
    mask[4:9, 6:10, 1:4] = 1
    return source, source.as_label(mask)


def test_seg_written_and_read_back_with_highdicom(tmp_path: Path) -> None:
    source, mask = _series(tmp_path)
    out = write_dicom_seg(mask, tmp_path / "ct", tmp_path / "seg.dcm")
    seg = hd.seg.segread(str(out))
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert seg.SegmentationType == "BINARY"
    assert seg.StudyInstanceUID == source.meta["study_uid"]
    (desc,) = seg.SegmentSequence
    assert desc.SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert desc.SegmentLabel == "Hemorrhage"
    cat = desc.SegmentedPropertyCategoryCodeSequence[0]
    typ = desc.SegmentedPropertyTypeCodeSequence[0]
    assert (cat.CodeValue, cat.CodingSchemeDesignator) == ("49755003", "SCT")
    assert (typ.CodeValue, typ.CodeMeaning) == ("50960005", "Hemorrhage")
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=source.meta["sop_instance_uids"],
        combine_segments=True,
        assert_missing_frames_are_empty=True,
    )
    np.testing.assert_array_equal(np.asarray(pixels).transpose(2, 1, 0), mask.array)
    back = read_dicom_seg(out, source)
    np.testing.assert_array_equal(back.array, mask.array)
    np.testing.assert_allclose(back.affine, source.affine)
    via_loader = load_mask(out, source, allow_empty=False)
    np.testing.assert_array_equal(via_loader.array, mask.array)


def test_multilabel_reoriented_mask_and_manual_type(tmp_path: Path) -> None:
    source, mask = _series(tmp_path)
    labels = mask.array * 2  # IPH
    labels[12:14, 12:14, 2] = 3  # IVH
    ras, _ = reorient(source.as_label(labels), "RAS")  # same grid, other axis order
    out = write_dicom_seg(ras, tmp_path / "ct", tmp_path / "seg.dcm", algorithm_type="manual")
    seg = hd.seg.segread(str(out))
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Hemorrhage IPH", "Hemorrhage IVH"]
    assert all(s.SegmentAlgorithmType == "MANUAL" for s in seg.SegmentSequence)
    back = read_dicom_seg(out, source)
    np.testing.assert_array_equal(back.array, np.select([labels == 2, labels == 3], [1, 2], 0))


def test_seg_refuses_bad_masks_and_overwrite(tmp_path: Path) -> None:
    _, mask = _series(tmp_path)
    with pytest.raises(EmptyMaskError):
        write_dicom_seg(
            mask.with_array(np.zeros(mask.shape, np.uint8)), tmp_path / "ct", tmp_path / "a.dcm"
        )
    cropped = head_phantom(shape=(16, 18, 4)).as_label(np.ones((16, 18, 4)))
    with pytest.raises(GeometryError):
        write_dicom_seg(cropped, tmp_path / "ct", tmp_path / "b.dcm")
    write_dicom_seg(mask, tmp_path / "ct", tmp_path / "c.dcm")
    with pytest.raises(InputFileError, match="refusing to overwrite"):
        write_dicom_seg(mask, tmp_path / "ct", tmp_path / "c.dcm")
    with pytest.raises(InputFileError, match="refers to"):
        load_mask(tmp_path / "c.dcm")
    with pytest.raises(InputFileError, match="holds no image"):
        load_volume(tmp_path / "c.dcm")
