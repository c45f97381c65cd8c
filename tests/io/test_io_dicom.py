"""DICOM series reading/writing: ordering, spacing, rescale, series selection, damage, tilt."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from io_synth import head_phantom
from pydicom.uid import generate_uid

from ichseg.errors import DicomSeriesError, DimensionalityError, GeometryError, IntensityError
from ichseg.io import Volume, load_volume, make_affine, to_canonical
from ichseg.io.dicom import list_dicom_series, read_dicom_series, write_dicom_series


def _edit(path: Path, **changes: object) -> None:
    ds = pydicom.dcmread(str(path))
    for key, value in changes.items():
        setattr(ds, key, value)
    ds.save_as(str(path), enforce_file_format=True)


def test_round_trip_with_shuffled_files_and_instance_numbers(tmp_path: Path) -> None:
    vol = head_phantom()
    paths = write_dicom_series(vol, tmp_path / "s")
    rng = np.random.default_rng(3)
    perm = rng.permutation(len(paths))
    for n, p in enumerate(paths):  # random names and instance numbers: only positions are truth
        _edit(p, InstanceNumber=int(perm[n]) + 1)
        p.rename(p.with_name(f"{generate_uid()[-12:]}_{perm[n]}"))
    back = read_dicom_series(tmp_path / "s")
    assert back.shape == vol.shape
    assert back.array.dtype == np.int16
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-6)
    assert back.axcodes == ("L", "P", "S")
    assert back.meta["format"] == "dicom" and back.meta["modality"] == "CT"
    assert back.meta["patient_id"] == "ICHSEG-ANON" and len(back.meta["files"]) == vol.shape[2]


@pytest.mark.parametrize("axcodes", ["RAS", "LIP", "PSR"])
def test_non_axial_orientations_keep_world_coordinates(tmp_path: Path, axcodes: str) -> None:
    vol = head_phantom(shape=(10, 12, 5), axcodes=axcodes)
    write_dicom_series(vol, tmp_path / "s")
    back = read_dicom_series(tmp_path / "s")
    # DICOM sorts slices along the normal, so the k axis may be flipped: compare in canonical form
    a, _ = to_canonical(vol)
    b, _ = to_canonical(back)
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-5)


def test_oblique_rotation_round_trip(tmp_path: Path) -> None:
    th = math.radians(20)
    rot = np.array([[math.cos(th), -math.sin(th), 0], [math.sin(th), math.cos(th), 0], [0, 0, 1]])
    vol = head_phantom(shape=(10, 12, 4))
    aff = vol.affine.copy()
    aff[:3, :3] = rot @ aff[:3, :3]
    vol = Volume(vol.array, aff)
    write_dicom_series(vol, tmp_path / "s")
    back = read_dicom_series(tmp_path / "s")
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-5)


def test_spacing_comes_from_positions_not_slice_thickness(tmp_path: Path) -> None:
    vol = head_phantom(spacing=(0.5, 0.5, 2.5))
    write_dicom_series(vol, tmp_path / "s", slice_thickness=1.0)
    back = read_dicom_series(tmp_path / "s")
    assert back.spacing[2] == pytest.approx(2.5, abs=1e-6)
    assert back.meta["slice_thickness"] == pytest.approx(1.0)
    assert back.meta["slice_spacing"] == pytest.approx(2.5, abs=1e-6)


def test_rescale_slope_intercept_gives_float_hu(tmp_path: Path) -> None:
    vol = head_phantom()
    hu = vol.array.astype(np.float32) + 0.5 * (np.arange(vol.array.size) % 2).reshape(vol.shape)
    vol = vol.with_array(hu)
    write_dicom_series(vol, tmp_path / "s", rescale=(0.5, -2048.0))
    back = read_dicom_series(tmp_path / "s")
    assert back.array.dtype == np.float32
    np.testing.assert_array_equal(back.array, hu)


def test_values_beyond_int16_fall_back_to_float(tmp_path: Path) -> None:
    vol = head_phantom()
    arr = vol.array.astype(np.int32)
    arr[3, 3, 4] = 40000
    write_dicom_series(vol.with_array(arr), tmp_path / "s", rescale=(1.0, -1000.0))
    back = read_dicom_series(tmp_path / "s")
    assert back.array.dtype == np.float32
    np.testing.assert_array_equal(back.array, arr)


def test_per_slice_rescale_is_applied(tmp_path: Path) -> None:
    vol = head_phantom()
    paths = write_dicom_series(vol, tmp_path / "s", rescale=(1.0, -1024.0))
    ds = pydicom.dcmread(str(paths[2]))  # store slice 2 with another intercept, same HU
    raw = ds.pixel_array.astype(np.int32) + 24
    ds.PixelData = raw.astype(np.uint16).tobytes()
    ds.RescaleIntercept = "-1048"
    ds.save_as(str(paths[2]), enforce_file_format=True)
    back = read_dicom_series(tmp_path / "s")
    assert back.array.dtype == np.int16
    np.testing.assert_array_equal(back.array, vol.array)


def test_several_series_are_listed_and_selectable(tmp_path: Path) -> None:
    a = head_phantom()
    b = head_phantom(shape=(16, 16, 4))
    write_dicom_series(a, tmp_path, series_description="head 5mm", series_number=1)
    write_dicom_series(b, tmp_path, series_description="bone", series_number=2)
    infos = {s.description: s for s in list_dicom_series(tmp_path)}
    assert infos["head 5mm"].n_files == 6 and infos["bone"].n_files == 4
    with pytest.raises(DicomSeriesError) as err:
        read_dicom_series(tmp_path)
    msg = str(err.value)
    assert "2 series" in msg and "head 5mm" in msg and "bone" in msg
    assert infos["bone"].uid in msg and "6 files" in msg
    picked = load_volume(tmp_path, series_uid=infos["bone"].uid)
    assert picked.shape == (16, 16, 4)
    with pytest.raises(DicomSeriesError, match="no series with UID"):
        read_dicom_series(tmp_path, series_uid="1.2.3")


def test_non_dicom_files_are_ignored(tmp_path: Path) -> None:
    write_dicom_series(head_phantom(), tmp_path / "s")
    (tmp_path / "s" / "README.txt").write_text("exported by a PACS\n")
    (tmp_path / "s" / "notes.json").write_bytes(b"\x08\x00\x05\x00CS\x0a\x00not dicom at all")
    (tmp_path / "s" / ".DS_Store").write_bytes(b"\x00" * 300)
    assert read_dicom_series(tmp_path / "s").shape == (24, 28, 6)


def test_files_without_preamble_or_meta_header_are_read(tmp_path: Path) -> None:
    vol = head_phantom(shape=(8, 9, 3))
    for p in write_dicom_series(vol, tmp_path / "s"):  # old ACR-NEMA-style export, no suffix
        ds = pydicom.dcmread(str(p))
        del ds.file_meta
        ds.preamble = None
        ds.save_as(str(p.with_suffix("")), implicit_vr=True, enforce_file_format=False)
        p.unlink()
    back = read_dicom_series(tmp_path / "s")
    np.testing.assert_array_equal(back.array, vol.array)


@pytest.mark.parametrize("keep", [200, -100])
def test_truncated_file_is_named(tmp_path: Path, keep: int) -> None:
    paths = write_dicom_series(head_phantom(), tmp_path / "s")
    data = paths[3].read_bytes()
    paths[3].write_bytes(data[:keep])
    with pytest.raises(DicomSeriesError, match=paths[3].name):
        read_dicom_series(tmp_path / "s")


def test_missing_slice_is_reported(tmp_path: Path) -> None:
    paths = write_dicom_series(head_phantom(), tmp_path / "s")
    paths[2].unlink()
    with pytest.raises(DicomSeriesError, match=r"1 slice\(s\) missing"):
        read_dicom_series(tmp_path / "s")


def test_duplicate_slice_is_reported(tmp_path: Path) -> None:
    paths = write_dicom_series(head_phantom(), tmp_path / "s")
    dup = tmp_path / "s" / "copy.dcm"
    shutil.copy(paths[1], dup)
    _edit(dup, SOPInstanceUID=generate_uid())
    with pytest.raises(DicomSeriesError, match="duplicate slice") as err:
        read_dicom_series(tmp_path / "s")
    assert "copy.dcm" in str(err.value)


def test_irregular_spacing_is_reported(tmp_path: Path) -> None:
    paths = write_dicom_series(head_phantom(spacing=(0.5, 0.5, 2.0)), tmp_path / "s")
    ds = pydicom.dcmread(str(paths[-1]))
    ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], float(ds.ImagePositionPatient[2]) + 1]
    ds.save_as(str(paths[-1]), enforce_file_format=True)
    with pytest.raises(DicomSeriesError, match="not uniform"):
        read_dicom_series(tmp_path / "s")


def test_modality_other_than_ct_is_refused(tmp_path: Path) -> None:
    write_dicom_series(head_phantom(), tmp_path / "s", modality="MR")
    with pytest.raises(IntensityError, match="modality MR"):
        read_dicom_series(tmp_path / "s")
    assert read_dicom_series(tmp_path / "s", allow_non_ct=True).meta["modality"] == "MR"


def test_single_dicom_file_is_2d(tmp_path: Path) -> None:
    paths = write_dicom_series(head_phantom(), tmp_path / "s")
    with pytest.raises(DimensionalityError, match="single 2D DICOM"):
        load_volume(paths[0])
    for p in paths[1:]:
        p.unlink()
    with pytest.raises(DimensionalityError, match="single 2D image"):
        read_dicom_series(tmp_path / "s")


def test_empty_folder_and_writer_refuses_overwrite(tmp_path: Path) -> None:
    (tmp_path / "e").mkdir()
    with pytest.raises(DicomSeriesError, match="no DICOM image files"):
        read_dicom_series(tmp_path / "e")
    write_dicom_series(head_phantom(), tmp_path / "s")
    with pytest.raises(Exception, match="file exists"):
        write_dicom_series(head_phantom(), tmp_path / "s")
    write_dicom_series(head_phantom(), tmp_path / "s", overwrite=True)


def _tilted_linear_series(tmp_path: Path, tilt_deg: float) -> tuple[Volume, np.ndarray]:
    """A stack sheared along j whose HU values are a linear function of world position."""
    ni, nj, nk = 14, 16, 6
    aff = make_affine((0.8, 0.7, 3.0), "LPS", (5.0, -8.0, 20.0))
    aff[1, 2] = -3.0 * math.tan(math.radians(tilt_deg))  # k step moves posteriorly
    coef = np.array([2.0, 3.0, 0.5])
    ijk = np.stack(np.meshgrid(np.arange(ni), np.arange(nj), np.arange(nk), indexing="ij"), -1)
    world = ijk @ aff[:3, :3].T + aff[:3, 3]
    hu = (world @ coef).astype(np.float64)
    vol = Volume(hu.astype(np.float32), aff)
    write_dicom_series(vol, tmp_path / "tilt", rescale=(0.01, -200.0))
    return vol, coef


def test_tilted_stack_is_refused_with_its_angle(tmp_path: Path) -> None:
    _tilted_linear_series(tmp_path, 12.0)
    with pytest.raises(GeometryError, match=r"12\.00 degrees") as err:
        load_volume(tmp_path / "tilt")
    assert "correct_tilt=True" in str(err.value)


def test_tilt_correction_resamples_onto_orthogonal_grid(tmp_path: Path) -> None:
    src, coef = _tilted_linear_series(tmp_path, 12.0)
    vol = read_dicom_series(tmp_path / "tilt", correct_tilt=True)
    assert vol.meta["tilt_corrected"] and vol.meta["gantry_tilt_deg"] == pytest.approx(12.0)
    cols = vol.affine[:3, :3]
    gram = cols.T @ cols
    np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-9)  # orthogonal axes
    assert vol.spacing == pytest.approx((0.8, 0.7, 3.0), abs=1e-5)
    assert vol.shape[0] == 14 and vol.shape[1] > 16 and vol.shape[2] == 6  # grown, nothing cut
    # Linear interpolation reproduces a linear function exactly wherever the source covers.
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in vol.shape], indexing="ij"), -1)
    ijk = ijk.reshape(-1, 3)
    world = vol.voxel_to_world(ijk)
    src_ijk = src.world_to_voxel(world)
    inside = np.all((src_ijk > -1e-6) & (src_ijk < np.array(src.shape) - 1 + 1e-6), axis=1)
    assert inside.sum() > 0.6 * src.array.size
    got = vol.array.reshape(-1)[np.ravel_multi_index(ijk[inside].T, vol.shape)]
    np.testing.assert_allclose(got, world[inside] @ coef, atol=0.02)
