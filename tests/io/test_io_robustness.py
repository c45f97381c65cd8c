"""Bad scans (issue 9): oversized/lying headers, skull-stripped HU, windowed data of unknown
window, random voxels, interleaved or damaged DICOM series. Tiny synthetic volumes only."""

from __future__ import annotations

import gzip
import re
import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from io_synth import head_phantom
from pydicom.uid import generate_uid

from ichseg.errors import (
    ConfigError,
    DicomSeriesError,
    DimensionalityError,
    InputFileError,
    InputWarning,
)
from ichseg.io import IntensityKind, Volume, Window, load_volume, make_affine, save_volume
from ichseg.io import intensity as intensity_mod
from ichseg.io import reader as reader_mod
from ichseg.io.dicom import write_dicom_series
from ichseg.io.intensity import detect_intensity

AFFINE = make_affine((0.9, 0.9, 5.0), "LPS")


def _load_quietly(path: Path, **kw: object) -> Volume:
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        return load_volume(path, **kw)  # type: ignore[arg-type]


def _forbid_voxel_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object, **__: object) -> None:
        raise AssertionError("voxel data was read although the header is impossible")

    monkeypatch.setattr(reader_mod, "read_nifti", boom)
    monkeypatch.setattr(reader_mod, "read_sitk", boom)


def _lying_nifti(path: Path, shape: tuple[int, ...], dtype: type, data_bytes: int = 16) -> Path:
    """A NIfTI header declaring ``shape`` followed by only ``data_bytes`` bytes of data."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr["vox_offset"] = 352
    raw = hdr.binaryblock + b"\x00" * 4 + b"\x00" * data_bytes
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


# --------------------------------------------------------------------------------------------
# item 2: declared size against file size and memory budget, before allocating
# --------------------------------------------------------------------------------------------


def test_368_byte_nifti_declaring_2048x2048x256_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _lying_nifti(tmp_path / "tiny.nii", (2048, 2048, 256), np.int16)
    assert path.stat().st_size == 368
    _forbid_voxel_reading(monkeypatch)
    with pytest.raises(InputFileError, match="2048x2048x256") as err:
        load_volume(path)
    assert "368 bytes" in str(err.value) and "truncated" in str(err.value)


def test_tiny_nifti_declaring_2048x2048x1024_float64_is_a_typed_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _lying_nifti(tmp_path / "huge.nii", (2048, 2048, 1024), np.float64)
    _forbid_voxel_reading(monkeypatch)
    with pytest.raises(InputFileError, match=r"2048x2048x1024 image of float64 \(32 GiB"):
        load_volume(path)


def test_gzipped_nifti_that_cannot_expand_to_its_declared_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _lying_nifti(tmp_path / "tiny.nii.gz", (2048, 2048, 256), np.int16)
    _forbid_voxel_reading(monkeypatch)
    with pytest.raises(InputFileError, match=r"2048x2048x256.*cannot expand"):
        load_volume(path)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".mha", ".nrrd"])
def test_memory_budget_names_shape_and_budget(tmp_path: Path, suffix: str) -> None:
    path = save_volume(head_phantom(), tmp_path / f"v{suffix}")
    with pytest.raises(DimensionalityError, match=r"24x28x6 .*budget of 10 KiB"):
        load_volume(path, max_bytes=10 * 1024)
    assert load_volume(path, max_bytes=10**6).shape == (24, 28, 6)


def test_memory_budget_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_volume(head_phantom(), tmp_path / "v.nii.gz")
    monkeypatch.setenv("ICHSEG_MAX_BYTES", "8K")
    with pytest.raises(DimensionalityError, match="ICHSEG_MAX_BYTES"):
        load_volume(path)
    monkeypatch.setenv("ICHSEG_MAX_BYTES", "lots")
    with pytest.raises(ConfigError, match="ICHSEG_MAX_BYTES"):
        load_volume(path)
    monkeypatch.setenv("ICHSEG_MAX_BYTES", "1G")
    assert load_volume(path).shape == (24, 28, 6)


def test_dicom_series_respects_the_memory_budget(tmp_path: Path) -> None:
    write_dicom_series(head_phantom(), tmp_path / "s")
    with pytest.raises(DimensionalityError, match="budget"):
        load_volume(tmp_path / "s", max_bytes=4096)


@pytest.mark.parametrize("suffix", [".mha", ".nrrd", ".mhd"])
def test_truncated_raw_itk_files_are_refused_from_the_header(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_volume(head_phantom(), tmp_path / f"v{suffix}")
    from ichseg.io import sitk_io

    # save_volume compresses; rewrite uncompressed, then cut the voxel data short
    sitk_io.write_sitk(head_phantom(), path, compress=False)
    data = path.with_suffix(".raw") if suffix == ".mhd" else path
    data.write_bytes(data.read_bytes()[:-500])
    _forbid_voxel_reading(monkeypatch)
    with pytest.raises(InputFileError, match=r"24x28x6 .*has only \d+ bytes"):
        load_volume(path)


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_compressed_itk_header_declaring_a_huge_image(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_volume(head_phantom(), tmp_path / f"v{suffix}")
    raw = path.read_bytes()
    old, new = (b"DimSize = 24 28 6", b"DimSize = 2048 2048 256")
    if suffix == ".nrrd":
        old, new = (b"sizes: 24 28 6", b"sizes: 2048 2048 256")
    assert old in raw
    path.write_bytes(raw.replace(old, new, 1))
    _forbid_voxel_reading(monkeypatch)
    with pytest.raises(InputFileError, match=r"2048x2048x256.*cannot expand"):
        load_volume(path)


def test_memory_error_while_reading_becomes_a_typed_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_volume(head_phantom(), tmp_path / "v.nii")

    def oom(*_: object, **__: object) -> None:
        raise MemoryError()

    monkeypatch.setattr(reader_mod, "read_nifti", oom)
    with pytest.raises(DimensionalityError, match="not enough memory"):
        load_volume(path)


# --------------------------------------------------------------------------------------------
# item 3: skull-stripped raw HU
# --------------------------------------------------------------------------------------------


def _brain_only(shape: tuple[int, int, int] = (40, 44, 10), seed: int = 0) -> np.ndarray:
    """Skull-stripped head CT in raw HU: brain ~30 HU with noise, a 70 HU bleed, exactly 0
    outside the brain (no air, no skull)."""
    rng = np.random.default_rng(seed)
    ii, jj, kk = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    c = (np.array(shape) - 1) / 2
    brain = ((ii - c[0]) / (0.4 * shape[0])) ** 2 + ((jj - c[1]) / (0.4 * shape[1])) ** 2 < 1
    arr = np.zeros(shape, np.float32)
    arr[brain] = 30 + rng.normal(0, 5, int(brain.sum()))
    bleed = brain & (((ii - c[0] - 4) ** 2 + (jj - c[1]) ** 2 + (kk - c[2]) ** 2) < 16)
    arr[bleed] = 70 + rng.normal(0, 4, int(bleed.sum()))
    return arr


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_skull_stripped_raw_hu_is_accepted_and_recorded(tmp_path: Path, dtype: type) -> None:
    arr = np.round(_brain_only()).astype(dtype)
    assert arr.min() > -200 and arr.max() < 100  # no air, no bone
    path = tmp_path / "stripped.nii.gz"
    nib.save(nib.Nifti1Image(arr, AFFINE), str(path))
    vol = _load_quietly(path)
    assert vol.intensity.kind == IntensityKind.HU
    assert vol.intensity.describe() == "raw HU, skull-stripped (no air/bone)"
    assert vol.meta["intensity_description"] == "raw HU, skull-stripped (no air/bone)"
    np.testing.assert_array_equal(vol.hu(), arr.astype(np.float32))


def test_windowed_data_is_not_mistaken_for_skull_stripped_hu() -> None:
    hu = _brain_only()
    hu[hu == 0] = -1000  # a full head in HU: air outside
    hu[(hu == -1000) & (np.indices(hu.shape)[0] % 7 == 0)] = 1200  # some bone
    win = Window(40, 80)
    stored = np.round(np.clip((hu - win.lo) / win.width, 0, 1) * 255).astype(np.uint8)
    assert detect_intensity(stored).kind == IntensityKind.WINDOWED
    stripped_windowed = np.where(_brain_only() == 0, 0, stored).astype(np.uint8)
    assert detect_intensity(stripped_windowed).kind == IntensityKind.WINDOWED


# --------------------------------------------------------------------------------------------
# item 4: the window of already-windowed data
# --------------------------------------------------------------------------------------------


def _windowed_head(
    window: Window = Window(40, 80), shape: tuple[int, int, int] = (32, 36, 8)
) -> np.ndarray:
    hu = head_phantom(shape=shape).array.astype(np.float32)
    hu += np.random.default_rng(1).normal(0, 4, hu.shape).astype(np.float32)
    return np.round(np.clip((hu - window.lo) / window.width, 0, 1) * 255).astype(np.int16)


def test_unknown_window_is_assumed_brain_with_one_warning_line(tmp_path: Path) -> None:
    path = tmp_path / "w.nii.gz"
    nib.save(nib.Nifti1Image(_windowed_head(), AFFINE), str(path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vol = load_volume(path)
    ours = [str(w.message) for w in caught if issubclass(w.category, InputWarning)]
    assert len(ours) == 1 and "\n" not in ours[0]
    assert "assuming the brain 40/80 window" in ours[0] and "--input-window" in ours[0]
    assert vol.intensity.window == Window(40, 80) and vol.intensity.stored_range == (0, 255)
    assert "window assumed brain 40/80" in vol.intensity.describe()


@pytest.mark.parametrize(
    "field, value",
    [
        ("descrip", b"CT brain; window L75 W215"),
        ("descrip", b"W:215 L:75"),
        ("intent_name", b"WL/WW 75/215"),
        ("cal", (-32.5, 182.5)),
    ],
)
def test_window_recorded_in_the_nifti_header_is_used(
    tmp_path: Path, field: str, value: object
) -> None:
    img = nib.Nifti1Image(_windowed_head(Window(75, 215)), AFFINE)
    if field == "cal":
        img.header["cal_min"], img.header["cal_max"] = value  # type: ignore[misc]
    else:
        img.header[field] = value
    path = tmp_path / "w.nii"
    nib.save(img, str(path))
    vol = _load_quietly(path)  # no assumption, so no warning
    assert vol.intensity.window == Window(75, 215)
    assert vol.meta["intensity_source"] == "header"
    assert "window L75/W215 from NIfTI" in vol.intensity.describe()


def test_display_range_in_stored_units_is_not_taken_for_a_window() -> None:
    assert intensity_mod.stored_window_hint({"cal_min": 0.0, "cal_max": 255.0}) is None
    assert intensity_mod.stored_window_hint({"window_center": 127.5, "window_width": 255.0}) is None
    assert intensity_mod.stored_window_hint({"descrip": "FSL5.0 converted"}) is None
    assert intensity_mod.stored_window_hint(
        {"window_center": [50, 400], "window_width": [100, 2000]}
    ) == (
        Window(50, 100),
        "DICOM WindowCenter/WindowWidth 50/100",
    )


def test_windowed_dicom_uses_its_window_tags(tmp_path: Path) -> None:
    stored = _windowed_head(Window(50, 100))
    paths = write_dicom_series(
        Volume(stored, AFFINE), tmp_path / "s", rescale=(1.0, 0.0)
    )  # 0..255 pixel values, no HU rescale
    for p in paths:
        ds = pydicom.dcmread(str(p))
        ds.WindowCenter, ds.WindowWidth = "50", "100"
        ds.save_as(str(p), enforce_file_format=True)
    vol = _load_quietly(tmp_path / "s")
    assert vol.intensity.kind == IntensityKind.WINDOWED
    assert vol.intensity.window == Window(50, 100)
    assert "DICOM WindowCenter/WindowWidth 50/100" in vol.intensity.describe()


def test_windowed_scan_without_input_window_reaches_the_model_input(tmp_path: Path) -> None:
    from ichseg.preprocess.model_input import prepare_image

    stored = _windowed_head(shape=(32, 32, 8))
    path = tmp_path / "w.nii.gz"
    nib.save(nib.Nifti1Image(stored, AFFINE), str(path))  # LPS: canonical as stored
    with pytest.warns(InputWarning, match="assuming the brain"):
        vol = load_volume(path)
    # what InteractiveSession.set_volume does, with its default assume_stored_window_ok=False
    image, _ = prepare_image(vol, 32, "brain")
    assert image.shape == (8, 32, 32) and image.dtype == np.float32
    # the brain window of data assumed to be brain-windowed is the stored values scaled to 0..1
    expected = stored.transpose(2, 1, 0).astype(np.float32) / 255.0
    np.testing.assert_allclose(image, expected, atol=1e-5)


# --------------------------------------------------------------------------------------------
# item 5: implausible intensities
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["int16-hu", "uint8"])
def test_random_voxels_with_a_valid_header_warn(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(0)
    if kind == "int16-hu":
        arr = rng.integers(-1024, 3000, size=(32, 32, 16)).astype(np.int16)
        expected = r"uniform noise.*no brain-tissue peak in 0\.\.80 HU"
    else:
        arr = rng.integers(0, 256, size=(32, 32, 16)).astype(np.uint8)
        expected = "uniform noise"
    path = tmp_path / "random.nii.gz"
    nib.save(nib.Nifti1Image(arr, AFFINE), str(path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vol = load_volume(path)
    ours = [str(w.message) for w in caught if issubclass(w.category, InputWarning)]
    noise = [m for m in ours if "does not look like a head CT" in m]
    assert len(noise) == 1 and "\n" not in noise[0]
    assert re.search(expected, noise[0]), noise[0]
    assert vol.meta["plausibility_problems"]


def test_hu_without_a_brain_peak_warns() -> None:
    ramp = np.linspace(-1000, 1000, 32 * 32 * 16).reshape(32, 32, 16)  # smooth, but flat HU
    problems = intensity_mod.plausibility_problems(ramp, detect_intensity(ramp))
    assert problems == [
        "no brain-tissue peak in 0..80 HU (4.0% of the voxels there, not denser than the HU "
        "ranges around it)"
    ]


def test_phantoms_and_real_looking_scans_do_not_warn(tmp_path: Path) -> None:
    from ichseg.data.synthetic import PhantomConfig, generate_case

    for seed in range(3):
        case = generate_case(PhantomConfig.for_shape((64, 64, 12)), seed=seed, index=seed)
        path = save_volume(case.image, tmp_path / f"synth{seed}.nii.gz")
        vol = _load_quietly(path)
        assert vol.intensity.describe() == "raw HU"
    _load_quietly(save_volume(head_phantom(), tmp_path / "phantom.nii"))
    stripped = tmp_path / "stripped.nii.gz"
    nib.save(nib.Nifti1Image(_brain_only(), AFFINE), str(stripped))
    _load_quietly(stripped)
    write_dicom_series(head_phantom(), tmp_path / "dcm")
    _load_quietly(tmp_path / "dcm")


# --------------------------------------------------------------------------------------------
# item 5: DICOM series
# --------------------------------------------------------------------------------------------


def _two_interleaved_stacks(folder: Path, same_frame: bool = True) -> None:
    """Two stacks, z = 0, 5, 10... and z = 2.5, 7.5, ..., written under ONE series UID."""
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    a = head_phantom(shape=(16, 16, 5), spacing=(0.5, 0.5, 5.0), origin=(0.0, 0.0, 0.0))
    b = head_phantom(shape=(16, 16, 5), spacing=(0.5, 0.5, 5.0), origin=(0.0, 0.0, 2.5))
    common = {"series_uid": series, "study_uid": study}
    write_dicom_series(a, folder, series_number=1, frame_of_reference_uid=frame, **common)
    write_dicom_series(
        b,
        folder,
        series_number=2,
        frame_of_reference_uid=frame if same_frame else generate_uid(),
        **common,
    )


def test_interleaved_stacks_sharing_a_series_uid_are_refused(tmp_path: Path) -> None:
    _two_interleaved_stacks(tmp_path / "s")
    with pytest.raises(DicomSeriesError, match="interleaved stacks") as err:
        load_volume(tmp_path / "s")
    msg = str(err.value)
    assert "InstanceNumber 1 on 001_0001.dcm (#1, " in msg and "002_0001.dcm (#1, " in msg


def test_stacks_in_different_frames_of_reference_are_refused(tmp_path: Path) -> None:
    _two_interleaved_stacks(tmp_path / "s", same_frame=False)
    with pytest.raises(DicomSeriesError, match="2 frames of reference"):
        load_volume(tmp_path / "s")


def test_irregular_spacing_names_the_offending_slices(tmp_path: Path) -> None:
    paths = write_dicom_series(head_phantom(spacing=(0.5, 0.5, 2.0)), tmp_path / "s")
    ds = pydicom.dcmread(str(paths[3]))
    ds.ImagePositionPatient = [
        *ds.ImagePositionPatient[:2],
        float(ds.ImagePositionPatient[2]) + 0.7,
    ]
    ds.save_as(str(paths[3]), enforce_file_format=True)
    with pytest.raises(DicomSeriesError, match="not uniform") as err:
        load_volume(tmp_path / "s")
    msg = str(err.value)
    assert "001_0004.dcm (#4, " in msg and "001_0003.dcm (#3, " in msg


def test_duplicate_positions_name_instance_numbers(tmp_path: Path) -> None:
    paths = write_dicom_series(head_phantom(), tmp_path / "s")
    dup = tmp_path / "s" / "copy.dcm"
    shutil.copy(paths[1], dup)
    ds = pydicom.dcmread(str(dup))
    ds.SOPInstanceUID, ds.InstanceNumber = generate_uid(), 77
    ds.save_as(str(dup), enforce_file_format=True)
    with pytest.raises(DicomSeriesError, match=r"duplicate slice.*#77") as err:
        load_volume(tmp_path / "s")
    assert "001_0002.dcm (#2, " in str(err.value)


def test_corrupt_files_without_extension_are_skipped_with_a_warning(tmp_path: Path) -> None:
    vol = head_phantom()
    folder = tmp_path / "s"
    for p in write_dicom_series(vol, folder):  # PACS exports: no file extensions
        p.rename(p.with_suffix(""))
    slice_bytes = (folder / "001_0002").read_bytes()
    (folder / "IM9998").write_bytes(slice_bytes[:-300])  # a truncated copy
    (folder / "IM9999").write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 64)  # garbage after magic
    (folder / "junk").write_bytes(np.random.default_rng(0).bytes(2000))  # not DICOM at all
    (folder / "README.txt").write_text("not an image\n")  # expected non-DICOM: silent
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        back = load_volume(folder)
    ours = [str(w.message) for w in caught if issubclass(w.category, InputWarning)]
    assert len(ours) == 1 and "\n" not in ours[0], ours
    assert "skipped 3 file(s)" in ours[0]
    for name in ("IM9998", "IM9999", "junk"):
        assert name in ours[0]
    assert "README" not in ours[0] and "pixel data truncated" in ours[0]
    np.testing.assert_array_equal(back.array, vol.array)


def test_cli_prints_ichseg_warnings_as_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import ichseg.cli as cli

    shown = cli._show_warning_one_line
    with warnings.catch_warnings():
        warnings.showwarning = shown
        warnings.simplefilter("always")
        warnings.warn("a.nii: assuming the brain 40/80 window", InputWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err == "warning: a.nii: assuming the brain 40/80 window\n"


def test_head_ct_cropped_to_the_head_without_air_is_raw_hu():
    """A tight field of view (no air anywhere, bone present) is raw HU, not 'not CT'."""
    from ichseg.data.synthetic import PhantomConfig, generate_case
    from ichseg.io.intensity import CROPPED_NOTE, detect_intensity

    case = generate_case(PhantomConfig(shape=(128, 128, 12)), 5, 1)
    arr = np.asarray(case.image.array)
    assert arr.min() > -200 and arr.max() > 300  # this phantom really has no air
    got = detect_intensity(arr)
    assert got.kind.name == "HU" and got.note == CROPPED_NOTE
    windowed = np.clip((arr - 0) / 80 * 255, 0, 255).astype(np.uint8)
    assert detect_intensity(windowed).kind.name == "WINDOWED"  # 0..255 exports stay windowed
