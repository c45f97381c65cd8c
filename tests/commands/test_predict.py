"""``ichseg predict``: one scan / a folder, NIfTI and DICOM-SEG (AUTOMATIC), workers, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from ichseg.cli import app, register_commands
from ichseg.commands.predict import find_scans, resolve_model
from ichseg.errors import ConfigError, InputFileError, OutputPathError
from ichseg.io.nifti import read_nifti, write_nifti
from ichseg.io.reader import load_mask
from ichseg.io.volume import Intensity, Volume, make_affine
from ichseg.models.registry import build_model, save_model

TINY_UNET = {"channels": [4, 8], "strides": [2], "num_res_units": 0, "patch_size": [32, 32, 8]}
MUNET = {"slice_size": 64, "widths": [4, 8, 8, 16, 16], "decoder_channels": 8, "cls_hidden": 16}


def scan(seed: int, shape=(40, 36, 10), axcodes: str = "RAS") -> Volume:
    """A head-like scan stored in ``axcodes`` with a bright blob (values in HU)."""
    rng = np.random.default_rng(seed)
    ii, jj, kk = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    r2 = ((ii - shape[0] / 2) / 17) ** 2 + ((jj - shape[1] / 2) / 15) ** 2
    img = np.full(shape, -1000.0)
    img[r2 < 1] = 1000.0
    img[r2 < 0.8] = 35.0 + rng.normal(0, 3, int((r2 < 0.8).sum()))
    img[((ii - 15) / 5) ** 2 + ((jj - 20) / 4) ** 2 + ((kk - 5) / 2) ** 2 < 1] = 70.0
    affine = make_affine((0.9, 1.1, 5.0), axcodes, (10.0, -4.0, 3.0))
    return Volume(img.astype(np.int16), affine, Intensity.hu())


@pytest.fixture(scope="module")
def unet_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model("unet", "lite", **TINY_UNET)
    return save_model(model, tmp_path_factory.mktemp("w") / "unet.pt")


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    register_commands()
    return CliRunner()


def expected_mask(ckpt: Path, vol: Volume) -> np.ndarray:
    from ichseg.inference.automatic import AutomaticPredictor

    return AutomaticPredictor.from_checkpoint(ckpt).segment(vol).array


def test_one_scan_nifti_in_source_geometry(runner, unet_ckpt, tmp_path):
    vol = scan(0, axcodes="LIP")  # oblique storage order: the mask must keep it
    src = tmp_path / "ct.nii.gz"
    write_nifti(vol, src)
    out = tmp_path / "mask.nii.gz"
    args = ["predict", str(src), "--weights", str(unet_ckpt), "--out", str(out), "--threads", "1"]
    res = runner.invoke(app, [*args, "--no-progress"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    mask = read_nifti(out)
    assert mask.shape == vol.shape and np.allclose(mask.affine, vol.affine, atol=1e-4)
    want = expected_mask(unet_ckpt, read_nifti(src))
    np.testing.assert_array_equal(mask.array, want)
    ml = want.sum() * vol.voxel_volume_ml
    assert f"{ml:.2f} mL" in res.output
    # existing output: refused before any work without --overwrite, replaced with it
    before = out.stat().st_mtime_ns
    res = runner.invoke(app, [*args, "--no-progress"])
    assert isinstance(res.exception, OutputPathError) and "--overwrite" in str(res.exception)
    assert out.stat().st_mtime_ns == before
    res = runner.invoke(app, [*args, "--no-progress", "--overwrite"])
    assert res.exit_code == 0, res.output


def test_dicom_seg_is_automatic(runner, unet_ckpt, tmp_path):
    pytest.importorskip("highdicom")
    import pydicom

    from ichseg.io.dicom import write_dicom_series

    series = tmp_path / "series"
    write_dicom_series(scan(1, axcodes="LPS"), series)
    out = tmp_path / "mask.seg.dcm"
    args = ["predict", str(series), "--weights", str(unet_ckpt), "--out", str(out)]
    res = runner.invoke(app, [*args, "--threads", "1", "--no-progress"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    ds = pydicom.dcmread(out)
    assert ds.Modality == "SEG"
    assert {s.SegmentAlgorithmType for s in ds.SegmentSequence} == {"AUTOMATIC"}
    assert "unet" in ds.SegmentSequence[0].SegmentAlgorithmName
    from ichseg.io.reader import load_volume

    ref = load_volume(series)
    mask = load_mask(out, reference=ref)
    np.testing.assert_array_equal(mask.array, expected_mask(unet_ckpt, ref))
    # a NIfTI scan cannot give a DICOM-SEG: one-line error naming the alternative
    nii = tmp_path / "ct.nii.gz"
    write_nifti(scan(1), nii)
    res = runner.invoke(
        app,
        [
            "predict",
            str(nii),
            "--weights",
            str(unet_ckpt),
            "--out",
            str(tmp_path / "x.seg.dcm"),
            "--no-progress",
        ],
    )
    assert isinstance(res.exception, InputFileError) and ".nii.gz" in str(res.exception)
    assert not (tmp_path / "x.seg.dcm").exists()


def test_folder_with_two_workers(runner, unet_ckpt, tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    write_nifti(scan(2), scans / "a.nii.gz")
    write_nifti(scan(3, shape=(36, 40, 8)), scans / "b.nii")
    (scans / "notes.txt").write_text("not a scan")
    out = tmp_path / "out"
    args = ["predict", str(scans), "--weights", str(unet_ckpt), "--out", str(out)]
    res = runner.invoke(app, [*args, "--workers", "2", "--no-progress"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    table = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert list(table["scan"].map(lambda p: Path(p).name)) == ["a.nii.gz", "b.nii"]
    assert (table["error"] == "").all() and (table["cpu_seconds"] > 0).all()
    for name, src in (("a", "a.nii.gz"), ("b", "b.nii")):
        vol = read_nifti(scans / src)
        mask = read_nifti(out / f"{name}.nii.gz")
        assert mask.shape == vol.shape and np.allclose(mask.affine, vol.affine, atol=1e-4)
        np.testing.assert_array_equal(mask.array, expected_mask(unet_ckpt, vol))
        row = table[table["mask"].str.endswith(f"{name}.nii.gz")].iloc[0]
        assert row["volume_ml"] == pytest.approx(mask.array.sum() * vol.voxel_volume_ml, 1e-3)
    assert "2 of 2 scan(s) segmented" in res.output
    res = runner.invoke(app, [*args, "--no-progress"])
    assert isinstance(res.exception, OutputPathError) and "already holds" in str(res.exception)


def test_munet_writes_labels_and_subtype_json(runner, tmp_path):
    torch.manual_seed(0)
    ckpt = save_model(build_model("munet", "lite", **MUNET), tmp_path / "munet.pt")
    src = tmp_path / "ct.nii.gz"
    vol = scan(4)
    write_nifti(vol, src)
    out = tmp_path / "labels.nii.gz"
    res = runner.invoke(
        app, ["predict", str(src), "--weights", str(ckpt), "--out", str(out), "--no-progress"]
    )
    assert res.exit_code == 0, res.output + repr(res.exception)
    labels = read_nifti(out)
    assert labels.shape == vol.shape and labels.array.max() <= 5
    summary = json.loads((tmp_path / "labels.subtypes.json").read_text())
    assert summary["model"] == "munet" and "volumes_ml" in summary
    assert "mL" in res.output


def test_bad_inputs_are_one_line_errors(runner, unet_ckpt, tmp_path):
    hp = save_model(build_model("hpinet", "lite", slice_size=32, vim_base=4), tmp_path / "hp.pt")
    with pytest.raises(ConfigError, match="interactive model"):
        resolve_model(hp)
    with pytest.raises(InputFileError, match="no such file"):
        resolve_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputFileError):
        resolve_model(tmp_path / "junk.pt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputFileError, match="no scans found"):
        find_scans(empty)
    cases = [
        (
            [
                "predict",
                str(tmp_path / "nope.nii"),
                "--weights",
                str(unet_ckpt),
                "--out",
                str(tmp_path / "m.nii.gz"),
            ],
            InputFileError,
        ),
        (
            [
                "predict",
                str(empty),
                "--weights",
                str(unet_ckpt),
                "--out",
                str(tmp_path / "o"),
                "--workers",
                "0",
            ],
            ConfigError,
        ),
        (
            ["predict", str(empty), "--weights", str(unet_ckpt), "--out", str(tmp_path / "o")],
            InputFileError,
        ),
        (
            ["predict", str(empty), "--weights", str(unet_ckpt), "--out", str(tmp_path / "m.png")],
            InputFileError,
        ),
    ]
    write_nifti(scan(5), tmp_path / "ct.nii")
    cases.append(
        (
            [
                "predict",
                str(tmp_path / "ct.nii"),
                "--weights",
                str(unet_ckpt),
                "--out",
                str(tmp_path / "m.nii.gz"),
                "--format",
                "dicom-seg",
            ],
            ConfigError,
        )
    )
    for args, err in cases:
        res = runner.invoke(app, [*args, "--no-progress"])
        assert isinstance(res.exception, err), (args, res.output, res.exception)
        assert "\n" not in str(res.exception).strip()


def test_segment_starts_from_predicted_mask(runner, unet_ckpt, tmp_path):
    from ichseg.interaction.session import read_log

    hp_tiny = {"slice_size": 32, "vim_base": 4, "sim_widths": [8, 8, 16, 16]}
    hp_tiny |= {"sim_aspp_channels": 8, "key_widths": [8, 8, 16], "value_widths": [8, 8, 16]}
    hp_tiny |= {"key_dim": 8, "value_dim": 16, "decoder_widths": [16, 8, 8]}
    torch.manual_seed(0)
    hp = save_model(build_model("hpinet", "lite", **hp_tiny), tmp_path / "hp.pt")
    src = tmp_path / "ct.nii.gz"
    write_nifti(scan(6), src)
    auto = tmp_path / "auto.nii.gz"
    res = runner.invoke(
        app, ["predict", str(src), "--weights", str(unet_ckpt), "--out", str(auto), "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    prompts = tmp_path / "p.json"
    stroke = {"type": "scribble", "z": 5, "points": [[18, 14], [18, 16]], "positive": True}
    prompts.write_text(json.dumps({"rounds": [{"prompts": [stroke]}]}))
    out = tmp_path / "final.nii.gz"
    args = ["segment", str(src), "--prompts", str(prompts), "--out", str(out)]
    res = runner.invoke(app, [*args, "--weights", str(hp), "--initial-mask", str(auto)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "round 0:" in res.output and "round 1:" in res.output
    log = read_log(tmp_path / "final.log.json")
    assert log["version"] == 3 and log["events"][1]["source"] == str(auto)
    assert [r["index"] for r in log["rounds"]] == [0, 1]
