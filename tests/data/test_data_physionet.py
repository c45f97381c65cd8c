"""PhysioNet CT-ICH adapter, Case loading and the hemorrhage-slice filter."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from ichseg_data_fixtures import CSV_HEADER, csv_rows, make_physionet, write

from ichseg.data import Subtype, open_dataset, open_physionet, parse_diagnosis_csv
from ichseg.data.physionet import parse_demographics_csv
from ichseg.errors import DatasetLayoutError, GeometryError
from ichseg.io.volume import to_canonical


@pytest.fixture(scope="module")
def physio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_physionet(tmp_path_factory.mktemp("physionet"))


def test_detect_and_cases(physio: Path) -> None:
    ds = open_dataset(physio)
    assert ds.layout == "physionet" and ds.name == "physionet"
    assert ds.case_ids == ["049", "050", "051", "052"]
    c = ds.get("049")
    assert c is ds["049"] is ds[0]
    assert c.patient_id == "049" and c.meta["patient_number"] == 49
    assert c.mask_path is not None and c.mask_path.name == "049.nii"
    assert c.subtype_mask_path is not None and ds["050"].subtype_mask_path is None
    assert ds["051"].image_path.name == "051.nii.gz"
    with pytest.raises(DatasetLayoutError, match="no case '999'"):
        ds.get("999")


def test_csv_labels_on_cases(physio: Path) -> None:
    ds = open_physionet(physio)
    c49 = ds["049"]
    assert c49.slice_subtypes is not None and len(c49.slice_subtypes) == 16
    assert c49.slice_subtypes[0] == frozenset()
    assert c49.slice_subtypes[4] == frozenset({Subtype.IPH})
    assert c49.csv_hemorrhage_slices == [2, 3, 4, 5, 6, 7, 8]
    assert ds["050"].subtypes == frozenset({Subtype.SDH})
    assert ds["051"].subtypes == frozenset()
    c52 = ds["052"]
    assert c52.slice_subtypes[5] == frozenset({Subtype.IVH, Subtype.IPH})
    assert c52.meta["fracture_slices"] == [5]
    assert len(c52.meta["no_hemorrhage_slices"]) == 16 - 7


def test_demographics(physio: Path) -> None:
    ds = open_physionet(physio)
    assert ds["049"].meta["age"] == 71 and ds["049"].meta["gender"] == "Male"
    assert ds["050"].meta["age"] == 35.5 and ds["050"].meta["gender"] == "Female"
    assert ds["051"].meta["gender"] == "Male"  # whitespace tolerated
    assert ds["049"].meta["demographics"]["Note"] == "x"
    parsed = parse_demographics_csv(physio / "Patient_demographics.csv")
    assert sorted(parsed) == [49, 50, 51, 52]


def test_load_image_mask_and_canonical(physio: Path) -> None:
    ds = open_physionet(physio)
    img = ds["049"].load_image()
    assert img.shape == (32, 32, 16) and img.axcodes == ("L", "P", "S")
    assert str(img.intensity.kind) == "hu"
    mask = ds["049"].load_mask(reference=img)
    assert mask.array.dtype == np.uint8 and set(np.unique(mask.array)) == {0, 1}  # 0/255 -> 0/1
    assert ds["049"].load_mask().same_geometry(mask)  # header-only grid check
    # the RAS-stored copy gives the same canonical arrays
    img52 = ds["052"].load_image()
    assert img52.axcodes == ("R", "A", "S")
    can49, _ = to_canonical(img)
    can52, _ = to_canonical(img52)
    np.testing.assert_array_equal(can49.array, can52.array)
    np.testing.assert_allclose(can49.affine, can52.affine, atol=1e-6)
    m52, _ = to_canonical(ds["052"].load_mask())
    np.testing.assert_array_equal(to_canonical(mask)[0].array, m52.array)
    sub = ds["049"].load_subtype_mask()
    assert set(np.unique(sub.array)) == {0, int(Subtype.IPH)}
    assert ds["050"].load_subtype_mask() is None


def test_hemorrhage_slices_and_filter(physio: Path) -> None:
    ds = open_physionet(physio)
    assert ds["049"].hemorrhage_slices() == [2, 3, 4, 5, 6, 7, 8]
    assert ds["052"].hemorrhage_slices() == [2, 3, 4, 5, 6, 7, 8]
    assert ds["050"].hemorrhage_slices() == [7, 8]
    assert ds["051"].hemorrhage_slices() == []
    counts = ds.hemorrhage_slice_counts()
    assert counts == {"049": 7, "050": 2, "051": 0, "052": 7}
    assert ds.filter_min_hemorrhage_slices(3).case_ids == ["049", "052"]
    assert ds.filter_min_hemorrhage_slices(2).case_ids == ["049", "050", "052"]
    assert len(ds.filter_min_hemorrhage_slices(0)) == 4


def test_filter_from_csv_without_masks(tmp_path: Path) -> None:
    root = make_physionet(tmp_path, masks=False)
    ds = open_dataset(root)
    assert all(c.mask_path is None for c in ds)
    assert ds["049"].load_mask() is None
    assert ds.filter_min_hemorrhage_slices(3).case_ids == ["049", "052"]
    (root / "hemorrhage_diagnosis_raw_ct.csv").unlink()
    ds2 = open_dataset(root)
    assert ds2["049"].slice_subtypes is None
    with pytest.raises(DatasetLayoutError, match="cannot count hemorrhage slices"):
        ds2.filter_min_hemorrhage_slices(3)


def _csv(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "hemorrhage_diagnosis_raw_ct.csv"
    p.write_text(text)
    return p


def test_csv_tolerates_whitespace_and_extra_columns(tmp_path: Path) -> None:
    header = " , ".join(CSV_HEADER.split(",")) + " , Comment"
    rows = [r.replace(",", " , ") + " , hello" for r in csv_rows(7, (0, 1), "Epidural", n=3)]
    labels, extras = parse_diagnosis_csv(
        _csv(tmp_path, "\ufeff" + header + "\n" + "\n".join(rows) + "\n\n")
    )
    assert labels == {7: {0: frozenset({Subtype.EDH}), 1: frozenset({Subtype.EDH}), 2: frozenset()}}
    assert extras[7]["no_hemorrhage_slices"] == [2]
    # optional columns may be absent; floats like "1.0" are accepted
    minimal = "PatientNumber,SliceNumber,Intraventricular,Intraparenchymal,Subarachnoid,Epidural,Subdural\n3,1.0,0,0,1,0,0\n"
    labels2, _ = parse_diagnosis_csv(_csv(tmp_path, minimal))
    assert labels2 == {3: {0: frozenset({Subtype.SAH})}}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("49,abc,0,0,0,0,0,1,0", r"line 3: SliceNumber is 'abc'"),
        ("49,0,0,0,0,0,0,1,0", r"line 3: SliceNumber is 0, expected >= 1"),
        ("49,2,2,0,0,0,0,1,0", r"line 3: Intraventricular is 2, expected 0 or 1"),
        ("49,1,0,0,0,0,0,1,0", r"line 3: duplicate row for patient 49, slice 1"),
        ("49,2,0,0,0,,0,1,0", r"line 3: Epidural is empty"),
        ("x49,2,0,0,0,0,0,1,0", r"line 3: PatientNumber is 'x49'"),
    ],
)
def test_csv_malformed_rows(tmp_path: Path, row: str, message: str) -> None:
    text = CSV_HEADER + "\n49,1,0,0,0,0,0,1,0\n" + row + "\n"
    with pytest.raises(DatasetLayoutError, match=message):
        parse_diagnosis_csv(_csv(tmp_path, text))


def test_csv_missing_column_and_empty(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match=r"missing column.*Subdural"):
        parse_diagnosis_csv(_csv(tmp_path, CSV_HEADER.replace("Subdural", "SDH") + "\n"))
    with pytest.raises(DatasetLayoutError, match="empty"):
        parse_diagnosis_csv(_csv(tmp_path, "\n\n"))


def test_layout_errors(tmp_path: Path) -> None:
    root = make_physionet(tmp_path / "a", csv=False)
    shutil.copy(root / "masks" / "050.nii", root / "masks" / "077.nii")
    with pytest.raises(DatasetLayoutError, match=r"masks without a CT scan.*077"):
        open_physionet(root)
    root2 = make_physionet(tmp_path / "b", csv=False)
    shutil.copy(root2 / "ct_scans" / "050.nii", root2 / "ct_scans" / "scan_x.nii")
    with pytest.raises(DatasetLayoutError, match="not named by patient number"):
        open_physionet(root2)
    with pytest.raises(DatasetLayoutError, match="no ct_scans"):
        open_physionet(tmp_path)


def test_mask_on_wrong_grid(tmp_path: Path) -> None:
    root = make_physionet(tmp_path, csv=False)
    write(root / "masks" / "050.nii", np.zeros((32, 32, 15), np.uint8))
    with pytest.raises(GeometryError):
        open_physionet(root)["050"].load_mask()


def test_csv_rows_for_missing_scans_warn(tmp_path: Path) -> None:
    root = make_physionet(tmp_path)
    with (root / "hemorrhage_diagnosis_raw_ct.csv").open("a") as f:
        f.write("\n".join(csv_rows(99, None, "Subdural", n=2)) + "\n")
    with pytest.warns(UserWarning, match="099"):
        ds = open_physionet(root)
    assert len(ds) == 4
