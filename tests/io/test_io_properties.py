"""Property tests: geometry survives every writer/reader pair; broken files give InputFileError."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from io_synth import head_phantom

from ichseg.errors import IchsegError, InputFileError
from ichseg.io import Volume, load_mask, load_volume, make_affine, save_volume, write_dicom_series
from ichseg.io.dicom import read_dicom_series

_AXES = [
    (a, b, c)
    for perm in itertools.permutations([("L", "R"), ("P", "A"), ("S", "I")])
    for a, b, c in itertools.product(*perm)
]
_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def volumes(draw: st.DrawFn) -> Volume:
    shape = (draw(st.integers(2, 7)), draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    spacing = tuple(draw(st.floats(0.1, 8.0, allow_nan=False)) for _ in range(3))
    origin = tuple(draw(st.floats(-500.0, 500.0, allow_nan=False)) for _ in range(3))
    axcodes = draw(st.sampled_from(_AXES))
    seed = draw(st.integers(0, 2**16))
    arr = np.random.default_rng(seed).integers(-1024, 3000, size=shape).astype(np.int16)
    arr.flat[0], arr.flat[-1] = -1024, 3000  # keep the HU detector happy for tiny volumes
    return Volume(arr, make_affine(spacing, axcodes, origin))


@_SETTINGS
@given(vol=volumes(), suffix=st.sampled_from([".nii.gz", ".nii", ".mha", ".nrrd"]))
def test_geometry_round_trips(vol: Volume, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        back = load_volume(save_volume(vol, Path(tmp) / f"v{suffix}"))
    np.testing.assert_array_equal(back.array, vol.array)
    # NIfTI stores the affine as float32; ITK formats keep float64
    atol = 1e-3 if "nii" in suffix else 1e-9
    np.testing.assert_allclose(back.affine, vol.affine, rtol=1e-6, atol=atol)
    assert back.axcodes == vol.axcodes


@st.composite
def dicom_volumes(draw: st.DrawFn) -> Volume:
    vol = draw(volumes())
    if vol.shape[2] < 2:  # a series needs two slices
        vol = Volume(np.concatenate([vol.array, vol.array], axis=2), vol.affine)
    return vol


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vol=dicom_volumes())
def test_dicom_world_coordinates_round_trip(vol: Volume) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        write_dicom_series(vol, Path(tmp))
        back = read_dicom_series(Path(tmp))
    # slices may come back in the opposite k order: map every voxel through world space
    idx = np.argwhere(np.ones(vol.shape, bool))
    back_idx = back.world_to_voxel(vol.voxel_to_world(idx))
    np.testing.assert_allclose(back_idx, np.round(back_idx), atol=1e-3)
    back_idx = np.round(back_idx).astype(int)
    assert back.shape == vol.shape
    np.testing.assert_array_equal(back.array[tuple(back_idx.T)], vol.array[tuple(idx.T)])


_GOOD: dict[str, bytes] = {}


def _good_bytes(suffix: str) -> bytes:
    if suffix not in _GOOD:
        with tempfile.TemporaryDirectory() as tmp:
            path = save_volume(head_phantom(shape=(6, 7, 3)), Path(tmp) / f"g{suffix}")
            _GOOD[suffix] = path.read_bytes()
    return _GOOD[suffix]


@settings(max_examples=60, deadline=None)
@given(suffix=st.sampled_from([".nii.gz", ".nii", ".mha"]), frac=st.floats(0.0, 1.0))
def test_truncated_files_always_give_input_file_error(suffix: str, frac: float) -> None:
    data = _good_bytes(suffix)
    cut = min(int(frac * len(data)), len(data) - 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"t{suffix}"
        path.write_bytes(data[:cut])
        for load in (load_volume, load_mask):
            try:
                load(path)
            except InputFileError:
                continue
            raise AssertionError(f"{load.__name__} accepted a file cut at {cut}/{len(data)} bytes")


@settings(max_examples=20, deadline=None)
@given(frac=st.floats(0.0, 1.0))
def test_truncated_dicom_slice_always_gives_input_file_error(frac: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_dicom_series(head_phantom(shape=(6, 7, 3)), Path(tmp))
        data = paths[1].read_bytes()
        paths[1].write_bytes(data[: min(int(frac * len(data)), len(data) - 1)])
        try:
            load_volume(Path(tmp))
        except InputFileError as exc:
            assert paths[1].name in str(exc)
        else:
            raise AssertionError("a truncated DICOM slice was accepted")


@settings(max_examples=80, deadline=None)
@given(
    suffix=st.sampled_from([".nii", ".mha"]),
    offset=st.integers(0, 351),
    value=st.integers(0, 255),
)
@example(suffix=".mha", offset=321, value=0)  # a NUL in the data-file name (found in session 12)
def test_corrupted_header_bytes_never_escape_as_other_errors(
    suffix: str, offset: int, value: int
) -> None:
    data = bytearray(_good_bytes(suffix))
    data[offset] = value
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"c{suffix}"
        path.write_bytes(bytes(data))
        try:
            vol = load_volume(path, allow_non_ct=True)
        except IchsegError:
            return
        assert vol.array.ndim == 3 and np.all(np.isfinite(vol.affine))
