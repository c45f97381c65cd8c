"""HemSeg, manifest, paired-folder, case-folder and image-folder layouts, and layout detection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ichseg_data_fixtures import head, write

from ichseg.data import Subtype, open_dataset, open_hemseg, open_manifest, open_paired_dirs
from ichseg.errors import DatasetLayoutError
from ichseg.io.volume import Window

HU, MASK = head((4, 8))


def _pair(folder_img: Path, folder_lab: Path | None, cid: str, img_name: str | None = None) -> None:
    write(folder_img / (img_name or f"{cid}.nii.gz"), HU)
    if folder_lab is not None:
        write(folder_lab / f"{cid}.nii.gz", MASK)


# --- HemSeg ------------------------------------------------------------------------------------
def test_hemseg_split_folders(tmp_path: Path) -> None:
    for split, ids in {"train": ["aa01", "aa02"], "val": ["bb01"], "test": ["cc01"]}.items():
        for cid in ids:
            _pair(tmp_path / split / "image", tmp_path / split / "label", cid)
    # an image in the top-level images/ folder also satisfies a split label
    write(tmp_path / "test" / "label" / "cc02.nii.gz", MASK)
    write(tmp_path / "images" / "cc02.nii.gz", HU)
    (tmp_path / "annotion_file_info.jsonl").write_text(
        json.dumps({"patient": "ID_1", "scan_": "aa01", "slice_list": []})
        + "\n"
        + json.dumps({"patient": "ID_1", "scan": "cc01"})
        + "\n\n"
    )
    (tmp_path / "subtypes.csv").write_text("filename,subtype\naa01.nii.gz,IPH\nbb01,IVH;IPH\n")
    ds = open_dataset(tmp_path)
    assert ds.layout == "hemseg"
    assert ds.case_ids == ["aa01", "aa02", "bb01", "cc01", "cc02"]
    assert [c.meta["split"] for c in ds] == ["train", "train", "val", "test", "test"]
    assert ds["cc02"].image_path == tmp_path / "images" / "cc02.nii.gz"
    assert ds["aa01"].patient_id == ds["cc01"].patient_id == "ID_1"
    assert ds["aa02"].patient_id == "aa02"
    assert ds["aa01"].subtypes == {Subtype.IPH}
    assert ds["bb01"].subtypes == {Subtype.IVH, Subtype.IPH}
    m = ds["aa01"].load_mask()
    assert m is not None and int(m.array.sum()) == int(MASK.sum())


def test_hemseg_flat_and_subtype_folders(tmp_path: Path) -> None:
    _pair(tmp_path / "IPH" / "images", tmp_path / "IPH" / "labels", "p1")
    _pair(tmp_path / "IVH" / "train" / "images", tmp_path / "IVH" / "train" / "labels", "v1")
    (tmp_path / "train_set.csv").write_text("filename,label\np1,1\nv1,0\n")
    ds = open_hemseg(tmp_path)
    assert ds.case_ids == ["p1", "v1"]
    assert ds["p1"].subtypes == {Subtype.IPH} and ds["v1"].subtypes == {Subtype.IVH}
    assert ds["p1"].meta["split"] == "train" and ds["p1"].meta["hemseg500_label"] == "1"
    assert ds["v1"].meta["split"] == "train"


def test_hemseg_errors(tmp_path: Path) -> None:
    write(tmp_path / "train" / "label" / "x1.nii.gz", MASK)
    with pytest.raises(DatasetLayoutError, match=r"label x1.nii.gz \(train\) has no image"):
        open_dataset(tmp_path)
    other = tmp_path / "o"
    _pair(other / "images", other / "labels", "a")
    write(other / "labels" / "zz.nii.gz", MASK)
    with pytest.raises(DatasetLayoutError, match=r"without an image.*zz"):
        open_hemseg(other)
    third = tmp_path / "t"
    _pair(third / "images", third / "labels", "a")
    (third / "subtypes.csv").write_text("id,subtype\na,XYZ\n")
    with pytest.raises(DatasetLayoutError, match="unknown subtype 'XYZ'"):
        open_hemseg(third)


# --- manifest ------------------------------------------------------------------------------------
def test_manifest_relative_paths(tmp_path: Path) -> None:
    _pair(tmp_path / "img", tmp_path / "lab", "c1")
    write(tmp_path / "img" / "c2.nii.gz", HU)
    (tmp_path / "list.csv").write_text(
        "case_id,image,mask,patient_id,site\n"
        "c1,img/c1.nii.gz,lab/c1.nii.gz,P7,A\n"
        f"c2,{tmp_path / 'img' / 'c2.nii.gz'},,P7,B\n"
    )
    ds = open_dataset(tmp_path / "list.csv")
    assert ds.layout == "manifest" and ds.case_ids == ["c1", "c2"]
    assert ds["c1"].mask_path == tmp_path / "lab" / "c1.nii.gz"
    assert ds["c2"].mask_path is None
    assert ds["c1"].patient_id == ds["c2"].patient_id == "P7"
    assert ds["c1"].meta == {"site": "A"}
    assert ds["c1"].hemorrhage_slices() == [4, 5, 6, 7, 8]
    # manifest.csv inside a folder is detected
    (tmp_path / "manifest.csv").write_text("case_id,image\nc1,img/c1.nii.gz\n")
    assert open_dataset(tmp_path).case_ids == ["c1"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("case,image\nc1,img/c1.nii.gz\n", "missing column.*case_id"),
        ("case_id,image\nc1,img/none.nii.gz\n", r"line 2: image 'img/none.nii.gz' not found"),
        ("case_id,image\nc1,img/c1.nii.gz\nc1,img/c1.nii.gz\n", "line 3: duplicate case_id 'c1'"),
        ("case_id,image\n,img/c1.nii.gz\n", "line 2: case_id is empty"),
        ("case_id,image,mask\nc1,,lab/c1.nii.gz\n", "line 2: image is empty"),
    ],
)
def test_manifest_errors(tmp_path: Path, text: str, message: str) -> None:
    _pair(tmp_path / "img", tmp_path / "lab", "c1")
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(DatasetLayoutError, match=message):
        open_manifest(tmp_path / "m.csv")


# --- paired / nnU-Net ------------------------------------------------------------------------------
def test_nnunet_paired_folder(tmp_path: Path) -> None:
    _pair(tmp_path / "imagesTr", tmp_path / "labelsTr", "ich_001", "ich_001_0000.nii.gz")
    _pair(tmp_path / "imagesTr", tmp_path / "labelsTr", "ich_002", "ich_002_0000.nii.gz")
    write(tmp_path / "imagesTs" / "ich_101_0000.nii.gz", HU)
    ds = open_dataset(tmp_path)
    assert ds.layout == "paired"
    assert ds.case_ids == ["ich_001", "ich_002", "ich_101"]
    assert ds["ich_001"].mask_path.name == "ich_001.nii.gz"
    assert ds["ich_101"].mask_path is None and ds["ich_101"].meta["split"] == "test"
    write(tmp_path / "imagesTr" / "ich_001_0001.nii.gz", HU)
    with pytest.raises(DatasetLayoutError, match="channel 0001"):
        open_dataset(tmp_path)


def test_paired_dirs_and_orphans(tmp_path: Path) -> None:
    _pair(tmp_path / "a", tmp_path / "b", "x")
    assert open_paired_dirs(tmp_path / "a", tmp_path / "b").case_ids == ["x"]
    write(tmp_path / "b" / "y.nii.gz", MASK)
    with pytest.raises(DatasetLayoutError, match=r"without a matching image.*y"):
        open_paired_dirs(tmp_path / "a", tmp_path / "b")
    with pytest.raises(DatasetLayoutError, match="not found"):
        open_paired_dirs(tmp_path / "nope", None)


# --- case folders / image folders / detection -----------------------------------------------------
def test_case_folder_layouts(tmp_path: Path) -> None:
    write(tmp_path / "case1" / "image.nii.gz", HU)
    write(tmp_path / "case1" / "mask.nii.gz", MASK)
    write(tmp_path / "case2" / "image.nii", HU)
    write(tmp_path / "case2" / "label.nii", MASK)
    (tmp_path / "notes").mkdir()
    one = open_dataset(tmp_path / "case1")
    assert one.layout == "case-folder" and one.case_ids == ["case1"]
    assert one["case1"].mask_path.name == "mask.nii.gz"
    many = open_dataset(tmp_path, input_window=Window(40, 80))
    assert many.layout == "case-folders" and many.case_ids == ["case1", "case2"]
    assert many["case2"].mask_path.name == "label.nii"
    assert many["case1"].meta["input_window"] == Window(40, 80)


def test_image_folder_with_mask_suffix(tmp_path: Path) -> None:
    write(tmp_path / "s1.nii.gz", HU)
    write(tmp_path / "s1_mask.nii.gz", MASK)
    write(tmp_path / "s2.nii", HU)
    ds = open_dataset(tmp_path)
    assert ds.layout == "image-folder" and ds.case_ids == ["s1", "s2"]
    assert ds["s1"].mask_path.name == "s1_mask.nii.gz" and ds["s2"].mask_path is None


def test_detection_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="no such file"):
        open_dataset(tmp_path / "missing")
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(DatasetLayoutError, match=r"unrecognised dataset layout\. Looked for"):
        open_dataset(tmp_path)
    with pytest.raises(DatasetLayoutError, match="not a file"):
        open_dataset(tmp_path / "readme.txt")
    (tmp_path / "ct_scans").mkdir()
    with pytest.raises(
        DatasetLayoutError, match="physionet layout was found but it holds no cases"
    ):
        open_dataset(tmp_path)


def test_subset_and_filter(tmp_path: Path) -> None:
    for cid in ("a", "b", "c"):
        write(tmp_path / f"{cid}.nii.gz", HU)
    ds = open_dataset(tmp_path)
    assert ds.subset(["c", "a"]).case_ids == ["a", "c"]
    assert ds.filter(lambda c: c.case_id != "b").case_ids == ["a", "c"]
    with pytest.raises(DatasetLayoutError, match="unknown case ids"):
        ds.subset(["zz"])
    assert np.asarray(ds["a"].load_image().array).shape == HU.shape


def test_hemorrhage_slices_follow_file_order(tmp_path: Path) -> None:
    import nibabel as nib

    from ichseg.io.volume import make_affine

    # stored inferior-first ("LPI"): file slice k is anatomical slice n-1-k
    aff = make_affine((0.5, 0.5, 5.0), "LPI")
    mask = MASK[:, :, ::-1]
    for name, arr in (("s.nii.gz", HU[:, :, ::-1]), ("s_mask.nii.gz", mask)):
        img = nib.Nifti1Image(np.ascontiguousarray(arr), aff)
        img.set_sform(aff, code=1)
        nib.save(img, str(tmp_path / name))
    case = open_dataset(tmp_path)["s"]
    n = MASK.shape[2]
    assert case.hemorrhage_slices() == sorted(n - 1 - k for k in range(4, 9))
    # a mask whose stored axes are permuted w.r.t. the image is mapped onto the image grid
    perm = np.ascontiguousarray(np.transpose(mask, (1, 0, 2)))
    paff = aff[:, [1, 0, 2, 3]]
    img = nib.Nifti1Image(perm, paff)
    img.set_sform(paff, code=1)
    nib.save(img, str(tmp_path / "s_mask.nii.gz"))
    loaded = case.load_mask()
    assert loaded.shape == MASK.shape and int(loaded.array.sum()) == int(MASK.sum())
