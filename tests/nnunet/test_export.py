"""nnU-Net export: nnU-Net's own dataset check, folds, geometry, errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ichseg.data.dataset import Dataset
from ichseg.data.splits import Splits, make_splits
from ichseg.errors import ConfigError, DatasetLayoutError, InputFileError
from ichseg.io.volume import to_canonical
from ichseg.nnunet.export import export_dataset, verify_export


def test_export_passes_nnunets_check_and_keeps_folds(
    tiny_set: tuple[Dataset, Splits], tmp_path: Path
) -> None:
    ds, sp = tiny_set
    res = export_dataset(ds, sp, tmp_path, dataset_id=7, name="Tiny", fold=1, progress=False)
    assert res.folder == tmp_path / "Dataset007_Tiny"
    verify_export(res.folder)  # nnU-Net's verify_dataset_integrity; raises on any problem

    meta = json.loads((res.folder / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT"}
    assert meta["labels"] == {"background": 0, "hemorrhage": 1}
    assert meta["file_ending"] == ".nii.gz"
    fold = sp.fold(1)
    assert meta["numTraining"] == len(fold.train_val)
    tr = sorted(p.name for p in (res.folder / "imagesTr").iterdir())
    ts = sorted(p.name for p in (res.folder / "imagesTs").iterdir())
    assert tr == sorted(f"{c}_0000.nii.gz" for c in fold.train_val)
    assert ts == sorted(f"{c}_0000.nii.gz" for c in fold.test)

    nn_splits = json.loads((res.folder / "splits_final.json").read_text())
    assert len(nn_splits) == sp.k
    assert nn_splits[1] == {"train": list(fold.train), "val": list(fold.val)}
    in_tr = set(fold.train_val)
    for f, entry in zip(sp.folds, nn_splits, strict=True):
        assert entry["train"] == [c for c in f.train if c in in_tr]
        assert entry["val"] == [c for c in f.val if c in in_tr]
        # patient-grouped: no patient on both sides
        pts = sp.patients
        assert not {pts[c] for c in entry["train"]} & {pts[c] for c in entry["val"]}

    # images are LPS copies in HU; labels binary on exactly the image grid
    case = ds.get(fold.train[0])
    src = case.load_image()
    canon, _ = to_canonical(src)
    img = nib.load(res.folder / "imagesTr" / f"{case.case_id}_0000.nii.gz")
    lab = nib.load(res.folder / "labelsTr" / f"{case.case_id}.nii.gz")
    np.testing.assert_allclose(img.affine, canon.affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(img.dataobj), canon.array)
    np.testing.assert_allclose(lab.affine, img.affine, atol=1e-6)
    labels = np.asarray(lab.dataobj)
    assert set(np.unique(labels).tolist()) <= {0, 1} and labels.any()
    mask_canon, _ = to_canonical(case.load_mask(reference=src))
    np.testing.assert_array_equal(labels, mask_canon.array)


def test_export_all_folds_and_broken_export_is_refused(
    tiny_set: tuple[Dataset, Splits], tmp_path: Path
) -> None:
    ds, sp = tiny_set
    res = export_dataset(ds, sp, tmp_path, dataset_id=8, name="All", fold=None, progress=False)
    assert sorted(res.train_ids) == sorted(ds.case_ids) and res.test_ids == []
    nn_splits = json.loads((res.folder / "splits_final.json").read_text())
    assert [e["val"] for e in nn_splits] == [list(f.val) for f in sp.folds]
    next((res.folder / "labelsTr").iterdir()).unlink()
    with pytest.raises(DatasetLayoutError, match="nnU-Net's dataset check failed"):
        verify_export(res.folder)
    with pytest.raises(InputFileError, match="exists"):
        export_dataset(ds, sp, tmp_path, dataset_id=8, name="All", progress=False)


def test_export_bad_inputs(tiny_set: tuple[Dataset, Splits], tmp_path: Path) -> None:
    ds, sp = tiny_set
    other = make_splits([*ds.case_ids[:-1], "zzz"], k=3, seed=0)
    with pytest.raises(DatasetLayoutError, match="splits do not match"):
        export_dataset(ds, other, tmp_path, dataset_id=9, name="X", progress=False)
    with pytest.raises(ConfigError, match=r"ids are 1\.\.999"):
        export_dataset(ds, sp, tmp_path, dataset_id=1000, name="X", progress=False)
    with pytest.raises(ConfigError, match="dataset name"):
        export_dataset(ds, sp, tmp_path, dataset_id=9, name="a_b", progress=False)
    with pytest.raises(ConfigError, match="fold 5 does not exist"):
        export_dataset(ds, sp, tmp_path, dataset_id=9, name="X", fold=5, progress=False)
    cases = [dataclasses.replace(c) for c in ds.cases]
    cases[0].mask_path = None
    no_mask = Dataset("nomask", ds.root, cases)
    with pytest.raises(DatasetLayoutError, match="no hemorrhage mask"):
        export_dataset(no_mask, sp, tmp_path, dataset_id=10, name="X", fold=None, progress=False)
