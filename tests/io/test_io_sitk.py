"""NRRD and MetaImage through SimpleITK: LPS <-> RAS geometry and bad files."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from io_synth import head_phantom

from ichseg.errors import DimensionalityError, InputFileError
from ichseg.io import Volume, write_nifti
from ichseg.io.sitk_io import read_sitk, sitk_to_affine, write_sitk


def _oblique(vol: Volume) -> Volume:
    th = math.radians(17)
    rot = np.array([[1, 0, 0], [0, math.cos(th), -math.sin(th)], [0, math.sin(th), math.cos(th)]])
    aff = vol.affine.copy()
    aff[:3, :3] = rot @ aff[:3, :3]
    aff[:3, 3] = (-3.25, 14.5, 101.125)
    return Volume(vol.array, aff)


@pytest.mark.parametrize("suffix", [".nrrd", ".nhdr", ".mha", ".mhd"])
@pytest.mark.parametrize("axcodes", ["LPS", "RAS", "SLA"])
def test_round_trip_keeps_array_and_geometry(tmp_path: Path, suffix: str, axcodes: str) -> None:
    vol = _oblique(head_phantom(shape=(9, 10, 4), spacing=(0.48828125, 0.7, 3.3), axcodes=axcodes))
    path = write_sitk(vol, tmp_path / f"img{suffix}")
    back = read_sitk(path)
    assert back.array.dtype == vol.array.dtype
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, vol.affine, rtol=0, atol=1e-12)
    assert back.meta["format"] == ("nrrd" if "nrrd" in suffix or "nhdr" in suffix else "metaimage")


def test_lps_header_becomes_ras_affine(tmp_path: Path) -> None:
    img = sitk.GetImageFromArray(np.zeros((3, 4, 5), dtype=np.int16))  # (k, j, i)
    img.SetOrigin((10.0, 20.0, 30.0))  # LPS
    img.SetSpacing((0.5, 0.75, 2.0))
    sitk.WriteImage(img, str(tmp_path / "a.mha"))
    vol = read_sitk(tmp_path / "a.mha")
    assert vol.shape == (5, 4, 3)
    expected = np.diag([-0.5, -0.75, 2.0, 1.0])
    expected[:3, 3] = (-10.0, -20.0, 30.0)
    np.testing.assert_allclose(vol.affine, expected)
    assert vol.axcodes == ("L", "P", "S")


def test_agrees_with_nibabel_on_the_same_nifti(tmp_path: Path) -> None:
    """SimpleITK reads NIfTI in LPS; our conversion must give nibabel's RAS affine."""
    vol = _oblique(head_phantom(shape=(6, 7, 3), axcodes="RAS"))
    write_nifti(vol, tmp_path / "a.nii.gz")
    nib_affine = nib.load(str(tmp_path / "a.nii.gz")).affine
    ours = sitk_to_affine(sitk.ReadImage(str(tmp_path / "a.nii.gz")))
    np.testing.assert_allclose(ours, nib_affine, atol=1e-5)


def test_sheared_affine_survives(tmp_path: Path) -> None:
    vol = head_phantom(shape=(5, 6, 4))
    aff = vol.affine.copy()
    aff[1, 2] = -0.8  # gantry-tilt-like shear of the k axis
    vol = Volume(vol.array, aff)
    for suffix in (".nrrd", ".mha"):
        back = read_sitk(write_sitk(vol, tmp_path / f"s{suffix}"))
        np.testing.assert_allclose(back.affine, aff, atol=1e-12)


def test_label_volume_is_written_as_uint8(tmp_path: Path) -> None:
    vol = head_phantom(shape=(5, 6, 4))
    mask = vol.as_label(vol.array > 50)
    back = read_sitk(write_sitk(mask, tmp_path / "m.nrrd"))
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, mask.array)


def test_2d_4d_and_vector_images_are_refused(tmp_path: Path) -> None:
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5), np.int16)), str(tmp_path / "2d.mha"))
    with pytest.raises(DimensionalityError, match="2D"):
        read_sitk(tmp_path / "2d.mha")
    sitk.WriteImage(
        sitk.GetImageFromArray(np.zeros((2, 3, 4, 5), np.int16), isVector=False),
        str(tmp_path / "4d.nrrd"),
    )
    with pytest.raises(DimensionalityError, match="4D"):
        read_sitk(tmp_path / "4d.nrrd")
    rgb = sitk.GetImageFromArray(np.zeros((3, 4, 5, 3), np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.mha"))
    with pytest.raises(DimensionalityError, match="components"):
        read_sitk(tmp_path / "rgb.mha")
    single = sitk.GetImageFromArray(
        np.ones((1, 3, 4, 5), np.int16), isVector=False
    )  # trailing singleton axis
    sitk.WriteImage(single, str(tmp_path / "4d1.nrrd"))
    assert read_sitk(tmp_path / "4d1.nrrd").shape == (5, 4, 3)


def test_missing_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        read_sitk(tmp_path / "none.nrrd")
    (tmp_path / "bad.mha").write_text("this is not an image\n")
    with pytest.raises(InputFileError, match="not a readable"):
        read_sitk(tmp_path / "bad.mha")
    with pytest.raises(InputFileError, match="must end with"):
        write_sitk(head_phantom(), tmp_path / "x.png")
