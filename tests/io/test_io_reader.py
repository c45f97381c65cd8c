"""load_volume / load_mask / save_volume / save_mask: dispatch, checks, orientation, safety."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from io_synth import head_phantom

from ichseg.errors import (
    ConfigError,
    DimensionalityError,
    EmptyMaskError,
    GeometryError,
    InputFileError,
    InputWarning,
    IntensityError,
)
from ichseg.io import (
    IntensityKind,
    Volume,
    Window,
    load_mask,
    load_volume,
    make_affine,
    reorient,
    save_mask,
    save_volume,
    to_canonical,
    write_dicom_series,
)

CASE166 = Path("/work/shared/data/real/case166")


def _save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_round_trip_is_bit_exact(tmp_path: Path, suffix: str) -> None:
    vol = head_phantom(spacing=(0.48828125, 0.5, 6.0), origin=(119.0, 7.0, 429.5))
    path = save_volume(vol, tmp_path / f"img{suffix}")
    back = load_volume(path)
    assert back.array.dtype == np.int16
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_array_equal(back.affine, vol.affine)
    assert back.intensity.kind == IntensityKind.HU
    assert back.meta["intensity_source"] == "detected"


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".mhd", ".nhdr"])
def test_sitk_formats_through_the_entry_points(tmp_path: Path, suffix: str) -> None:
    vol = head_phantom()
    back = load_volume(save_volume(vol, tmp_path / f"img{suffix}"))
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-12)
    mask = vol.as_label(vol.array == 70)
    np.testing.assert_array_equal(
        load_mask(save_mask(mask, tmp_path / f"m{suffix}"), vol).array, mask.array
    )
    assert not any(p.name.startswith(".ichseg-write-") for p in tmp_path.iterdir())


def test_dicom_folder_through_load_volume(tmp_path: Path) -> None:
    vol = head_phantom()
    write_dicom_series(vol, tmp_path / "dcm")
    back = load_volume(tmp_path / "dcm")
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.intensity.kind == IntensityKind.HU


def test_same_anatomy_in_ras_and_lps_files_agrees(tmp_path: Path) -> None:
    lps = head_phantom(shape=(12, 14, 5), axcodes="LPS")
    marked = (3, 9, 1)
    arr = lps.array.copy()
    arr[marked] = 1234
    lps = lps.with_array(arr)
    ras, _ = reorient(lps, "RAS")  # same anatomy, voxels stored in the opposite i/j order
    assert not np.array_equal(ras.array, lps.array)
    a = load_volume(save_volume(lps, tmp_path / "lps.nii.gz"))
    b = load_volume(save_volume(ras, tmp_path / "ras.nii.gz"))
    ca, _ = to_canonical(a)
    cb, _ = to_canonical(b)
    np.testing.assert_array_equal(ca.array, cb.array)
    np.testing.assert_allclose(ca.affine, cb.affine, atol=1e-6)
    wa = a.voxel_to_world(np.argwhere(a.array == 1234))
    wb = b.voxel_to_world(np.argwhere(b.array == 1234))
    np.testing.assert_allclose(wa, wb, atol=1e-6)
    np.testing.assert_allclose(wa, lps.voxel_to_world(np.array([marked])), atol=1e-6)


def test_windowed_data_detected_or_declared(tmp_path: Path) -> None:
    hu = head_phantom().array.astype(np.float32) + np.linspace(0, 60, 24 * 28 * 6).reshape(
        24, 28, 6
    )
    win = Window(40, 255)
    data = (np.clip((hu - win.lo) / win.width, 0, 1) * 85).round().astype(np.int16) * 3
    path = _save_nifti(data, make_affine((0.5, 0.5, 6.0)), tmp_path / "w.nii.gz")
    with pytest.warns(InputWarning, match=r"assuming the brain 40/80 window.*--input-window"):
        detected = load_volume(path)
    assert detected.intensity.kind == IntensityKind.WINDOWED
    assert detected.intensity.window == Window(40, 80)
    assert detected.intensity.note == "window assumed brain 40/80"
    assert detected.meta["intensity_source"] == "assumed"
    unknown = load_volume(path, assume_window=None)
    assert unknown.intensity.window is None
    declared = load_volume(path, input_window=win)
    assert declared.intensity.window == win and declared.intensity.stored_range == (0.0, 255.0)
    assert declared.meta["intensity_source"] == "declared"
    np.testing.assert_allclose(declared.hu()[data == 255], win.hi)


def test_float_0_1_data_needs_a_declared_window(tmp_path: Path) -> None:
    data = np.linspace(0, 1, 24 * 28 * 6, dtype=np.float32).reshape(24, 28, 6)
    path = _save_nifti(data, np.eye(4), tmp_path / "n.nii.gz")
    with pytest.raises(IntensityError, match=r"0\.\.1") as err:
        load_volume(path)
    assert str(path) in str(err.value) and "input_window" in str(err.value)
    vol = load_volume(path, input_window=Window(40, 80))
    assert vol.intensity.stored_range == (0.0, 1.0)
    assert vol.hu().min() == pytest.approx(0.0) and vol.hu().max() == pytest.approx(80.0)
    assert load_volume(path, allow_non_ct=True).intensity.kind == IntensityKind.UNKNOWN
    explicit = load_volume(path, input_window=Window(40, 80), input_range=(0.0, 2.0))
    assert explicit.intensity.stored_range == (0.0, 2.0)
    with pytest.raises(ConfigError):
        load_volume(path, input_range=(0.0, 1.0))


def test_nan_voxels_are_refused(tmp_path: Path) -> None:
    arr = head_phantom().array.astype(np.float32)
    arr[1, 1, 1] = np.nan
    path = _save_nifti(arr, np.eye(4), tmp_path / "nan.nii.gz")
    with pytest.raises(IntensityError, match="1 NaN"):
        load_volume(path)


def test_truncated_2d_4d_missing_and_unknown_files(tmp_path: Path) -> None:
    good = save_volume(head_phantom(), tmp_path / "good.nii.gz")
    data = good.read_bytes()
    (tmp_path / "trunc.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError):
        load_volume(tmp_path / "trunc.nii.gz")
    _save_nifti(np.zeros((8, 9), np.int16), np.eye(4), tmp_path / "2d.nii")
    with pytest.raises(DimensionalityError, match="2D"):
        load_volume(tmp_path / "2d.nii")
    _save_nifti(np.zeros((4, 5, 6, 2), np.int16), np.eye(4), tmp_path / "4d.nii")
    with pytest.raises(DimensionalityError, match="4D"):
        load_volume(tmp_path / "4d.nii")
    with pytest.raises(InputFileError, match="no such file"):
        load_volume(tmp_path / "missing.nii.gz")
    (tmp_path / "img.png").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(InputFileError, match="unsupported file type"):
        load_volume(tmp_path / "img.png")
    with pytest.raises(ConfigError, match="series_uid"):
        load_volume(good, series_uid="1.2.3")


def test_max_voxels_is_enforced_before_reading(tmp_path: Path) -> None:
    vol = head_phantom()
    for suffix in (".nii.gz", ".nrrd"):
        path = save_volume(vol, tmp_path / f"big{suffix}")
        with pytest.raises(DimensionalityError, match="exceeds the limit"):
            load_volume(path, max_voxels=1000)
    write_dicom_series(vol, tmp_path / "dcm")
    with pytest.raises(DimensionalityError, match="exceeds the limit"):
        load_volume(tmp_path / "dcm", max_voxels=1000)


def test_uncompressed_nifti_can_be_overwritten_after_loading(tmp_path: Path) -> None:
    vol = head_phantom()
    path = save_volume(vol, tmp_path / "a.nii")
    loaded = load_volume(path)
    save_volume(vol.with_array(np.zeros(vol.shape, np.int16)), path, overwrite=True)
    np.testing.assert_array_equal(loaded.array, vol.array)  # not a view of the rewritten file


def test_masks_binarised_or_labelled(tmp_path: Path) -> None:
    img = head_phantom()
    labels = np.zeros(img.shape, np.int16)
    labels[2:5, 3:6, 1:3] = 2
    labels[10:12, 10:12, 2] = 5
    path = _save_nifti(labels, img.affine, tmp_path / "lab.nii.gz")
    mask = load_mask(path, img)
    assert mask.array.dtype == np.uint8 and mask.is_label
    assert set(np.unique(mask.array)) == {0, 1}
    kept = load_mask(path, img, binarize=False)
    assert set(np.unique(kept.array)) == {0, 2, 5}
    floats = _save_nifti(labels.astype(np.float32), img.affine, tmp_path / "f.nii.gz")
    assert load_mask(floats).array.sum() == (labels > 0).sum()


def test_mask_problems(tmp_path: Path) -> None:
    img = head_phantom()
    prob = np.zeros(img.shape, np.float32)
    prob[3, 3, 3] = 0.37
    with pytest.raises(IntensityError, match="probability map"):
        load_mask(_save_nifti(prob, img.affine, tmp_path / "p.nii.gz"))
    prob[3, 3, 3] = np.nan
    with pytest.raises(IntensityError, match="1 NaN"):
        load_mask(_save_nifti(prob, img.affine, tmp_path / "nan.nii.gz"))
    empty = _save_nifti(np.zeros(img.shape, np.uint8), img.affine, tmp_path / "e.nii.gz")
    assert load_mask(empty, img).array.sum() == 0
    with pytest.raises(EmptyMaskError, match="empty"):
        load_mask(empty, img, allow_empty=False)
    big = np.full(img.shape, 300, np.int16)
    with pytest.raises(IntensityError, match=r"0\.\.255"):
        load_mask(_save_nifti(big, img.affine, tmp_path / "b.nii.gz"), binarize=False)


def test_mask_geometry_is_checked(tmp_path: Path) -> None:
    img = head_phantom()
    m = np.zeros(img.shape, np.uint8)
    m[4, 5, 2] = 1
    shifted = img.affine.copy()
    shifted[0, 3] += 2.0
    with pytest.raises(GeometryError, match="affine differs"):
        load_mask(_save_nifti(m, shifted, tmp_path / "shift.nii.gz"), img)
    with pytest.raises(GeometryError, match="shape"):
        load_mask(_save_nifti(m[:-1], img.affine, tmp_path / "crop.nii.gz"), img)
    # The same grid stored with flipped/permuted axes is reoriented exactly, not refused.
    ras, _ = reorient(img.as_label(m), "SAR")
    back = load_mask(save_mask(ras, tmp_path / "ras.nii.gz"), img)
    assert back.meta["reoriented_to_reference"]
    np.testing.assert_array_equal(back.array, m)
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-6)


def test_saving_never_overwrites_without_permission(tmp_path: Path) -> None:
    img = head_phantom()
    mask = img.as_label(img.array == 70)
    path = save_mask(mask, tmp_path / "sub" / "mask.nii.gz")
    before = path.read_bytes()
    with pytest.raises(InputFileError, match="refusing to overwrite"):
        save_mask(img.as_label(np.zeros(img.shape)), path)
    assert path.read_bytes() == before
    save_mask(img.as_label(np.zeros(img.shape)), path, overwrite=True)
    assert load_mask(path).array.sum() == 0
    # detached headers: the data file is protected too
    save_mask(mask, tmp_path / "m.mhd")
    (tmp_path / "m.mhd").unlink()
    with pytest.raises(InputFileError, match=r"m\.zraw"):
        save_mask(mask, tmp_path / "m.mhd")
    with pytest.raises(InputFileError, match="unsupported output"):
        save_volume(img, tmp_path / "x.png")
    with pytest.raises(IntensityError, match="non-integer"):
        save_mask(img.with_array(np.full(img.shape, 0.5)), tmp_path / "half.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.zraw", "sub"]


def test_saved_mask_is_uint8_with_source_geometry(tmp_path: Path) -> None:
    img = head_phantom(axcodes="RAS")
    mask = img.with_array((img.array == 70).astype(np.int64))
    path = save_mask(mask, tmp_path / "m.nii.gz")
    raw = nib.load(str(path))
    assert raw.get_data_dtype() == np.uint8
    np.testing.assert_allclose(raw.affine, img.affine, atol=1e-6)


@pytest.mark.skipif(not CASE166.exists(), reason="real case166 not available")
def test_case166_loads_as_lps_windowed() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = load_volume(CASE166 / "image.nii.gz")
    ours = [w for w in caught if issubclass(w.category, InputWarning)]
    assert len(ours) == 1 and "assuming the brain 40/80 window" in str(ours[0].message)
    assert "\n" not in str(ours[0].message)
    assert img.shape == (512, 512, 24) and img.axcodes == ("L", "P", "S")
    assert img.spacing == pytest.approx((0.48828125, 0.48828125, 6.0))
    assert img.intensity.kind == IntensityKind.WINDOWED and img.intensity.window == Window(40, 80)
    assert "window assumed brain 40/80" in img.intensity.describe()
    mask = load_mask(CASE166 / "mask.nii.gz", img, allow_empty=False)
    assert int(mask.array.sum()) == 18420
    assert isinstance(mask, Volume) and mask.array.dtype == np.uint8
