"""Per-slice MUNet samples: subtype-mask and PhysioNet-CSV label sources, caching, geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ichseg.data.dataset import Case, open_dataset
from ichseg.data.slices import (
    IGNORE,
    SliceSet,
    canonical_slice_of,
    label_combination_keys,
    label_vector,
    prepare_case_slices,
)
from ichseg.data.subtypes import Subtype
from ichseg.errors import DatasetLayoutError
from ichseg.io.nifti import write_nifti
from ichseg.io.volume import Intensity, Volume, make_affine, reorient


def _case(tmp: Path, codes: str = "LPS") -> tuple[Case, np.ndarray]:
    """64x64x4 scan: slice 1 holds IPH (label 2) + IVH (3), slice 2 EDH (1), others none."""
    ii, jj = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    r = np.hypot(ii - 31.5, jj - 31.5)
    sl = np.where(r < 31, 1000, -1000)
    sl[r < 29] = 30
    img = np.repeat(sl[:, :, None], 4, axis=2).astype(np.int16)
    lab = np.zeros((64, 64, 4), np.uint8)
    lab[10:30, 10:30, 1] = 2
    lab[36:46, 36:46, 1] = 3
    lab[20:40, 44:54, 2] = 1
    img[lab > 0] = 70
    aff = make_affine((0.8, 0.8, 5.0), "LPS")
    image, sub = Volume(img, aff), Volume(lab, aff, Intensity.label())
    if codes != "LPS":
        image, sub = reorient(image, codes)[0], reorient(sub, codes)[0]
    write_nifti(image, tmp / "img.nii")
    write_nifti(sub, tmp / "sub.nii")
    return Case("c1", tmp / "img.nii", subtype_mask_path=tmp / "sub.nii"), lab


def test_label_vector_and_keys() -> None:
    assert label_vector({Subtype.IPH, Subtype.IVH}).tolist() == [0, 1, 1, 0, 0, 0]
    assert label_vector(set()).tolist() == [0, 0, 0, 0, 0, 1]
    keys = label_combination_keys(np.array([[0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 1]]))
    assert keys.tolist() == [6, 32]


@pytest.mark.parametrize("codes", ["LPS", "RAS", "LPI"])
def test_subtype_mask_source_in_any_orientation(tmp_path: Path, codes: str) -> None:
    case, _ = _case(tmp_path, codes)
    p = prepare_case_slices(case, slice_size=32)
    assert p.seg_source == "subtype_mask" and p.image.shape == (4, 32, 32)
    assert p.labels.tolist() == [
        [0, 0, 0, 0, 0, 1],
        [0, 1, 1, 0, 0, 0],
        [1, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 1],
    ]
    assert set(np.unique(p.seg[1])) == {0, 2, 3} and set(np.unique(p.seg[2])) == {0, 1}
    # 20x20 source pixels at half resolution -> 10x10 network pixels of IPH
    assert int((p.seg[1] == 2).sum()) == 100
    assert float(p.image.min()) >= 0.0 and float(p.image.max()) <= 1.0


def test_cache_roundtrip(tmp_path: Path) -> None:
    case, _ = _case(tmp_path)
    a = prepare_case_slices(case, 32, cache_dir=tmp_path / "cache")
    b = prepare_case_slices(case, 32, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").iterdir())) == 1
    assert np.array_equal(a.image, b.image) and np.array_equal(a.seg, b.seg)
    assert np.array_equal(a.labels, b.labels)
    s = SliceSet([a, b])
    assert len(s) == 8 and s.positive.tolist() == [1, 2, 5, 6]
    x, seg, lab = s.batch(np.array([1, 6]))
    assert x.shape == (2, 1, 32, 32) and seg.shape == (2, 32, 32) and lab.shape == (2, 6)


def test_physionet_csv_source(tiny_physionet: Path, tmp_path: Path) -> None:
    ds = open_dataset(tiny_physionet)
    case = ds.cases[0]
    # make one hemorrhage slice ambiguous: two subtypes flagged -> its pixels are IGNORE
    ks = sorted(k for k, v in case.slice_subtypes.items() if v)
    case.slice_subtypes = dict(case.slice_subtypes)
    case.slice_subtypes[ks[0]] = frozenset({Subtype.IPH, Subtype.SAH})
    p = prepare_case_slices(case, slice_size=64)
    assert p.seg_source == "csv"
    z_of_k = canonical_slice_of(case.load_image())
    amb = int(z_of_k[ks[0]])
    assert p.labels[amb].tolist() == [0, 1, 0, 1, 0, 0]
    assert set(np.unique(p.seg[amb])) <= {0, IGNORE} and (p.seg[amb] == IGNORE).any()
    single = int(z_of_k[ks[1]])
    assert set(np.unique(p.seg[single])) == {0, int(Subtype.IPH)}


def test_case_without_subtype_labels_is_refused(tiny_physionet: Path) -> None:
    case = open_dataset(tiny_physionet).cases[0]
    case.slice_subtypes = None
    with pytest.raises(DatasetLayoutError, match="subtype labels"):
        prepare_case_slices(case, slice_size=64)
