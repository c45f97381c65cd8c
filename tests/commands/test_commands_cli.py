"""``ichseg --version``, package metadata, licence, honest footnotes, evaluate progress lines."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ichseg.cli import app, main, register_commands

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    register_commands()
    return CliRunner()


def test_version_flag(runner: CliRunner, capsys: pytest.CaptureFixture[str]) -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"ichseg {version('ichseg')}"
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"ichseg {version('ichseg')}"
    assert runner.invoke(app, ["version"]).output.strip() == version("ichseg")


def test_license_and_project_metadata() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "Apache-2.0" and meta["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert meta["authors"] and all("name" in a for a in meta["authors"])
    assert {"Homepage", "Issues"} <= set(meta["urls"])
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "interaction/*.schema.json" in data["tool"]["setuptools"]["package-data"]["ichseg"]


def test_info_footnotes_cite_nothing_outside_the_repo(runner: CliRunner) -> None:
    res = runner.invoke(app, ["info", "--preset", "paper", "--input", "4x64x64"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "Reference columns" in text
    for outside in ("reference notes", "reference-notes", "../shared", "/work/", "peers"):
        assert outside not in text
    flops = (ROOT / "src" / "ichseg" / "models" / "flops.py").read_text()
    assert not re.search(r"reference[ -]notes|\.\./shared|peers-and", flops)


def test_train_memory_help_is_honest(runner: CliRunner) -> None:
    res = runner.invoke(app, ["info", "--help"], env={"COLUMNS": "200"})
    text = " ".join(res.output.split())
    assert "no compute" not in text.split("--train-memory", 1)[1].split("--amp", 1)[0]
    assert "minutes" in text


def test_evaluate_prints_one_line_per_case_without_a_terminal(
    runner: CliRunner, tiny_physionet: Path, tmp_path: Path
) -> None:
    out = tmp_path / "e"
    args = ["evaluate", "--data", str(tiny_physionet), "--out", str(out), "--method", "rw"]
    res = runner.invoke(app, [*args, "--cases", "001,002", "--rounds", "1"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    lines = [ln for ln in res.output.splitlines() if " done in " in ln]
    assert len(lines) == 2
    assert lines[0].startswith("random_walker: case 1/2 (001) done in ")
    assert lines[1].startswith("random_walker: case 2/2 (002) done in ")
    assert set(pd.read_csv(out / "results.csv", dtype={"case_id": str})["case_id"]) == {
        "001",
        "002",
    }
    # --no-progress: no lines; --overwrite replaces the earlier run
    res = runner.invoke(app, [*args, "--cases", "001", "--rounds", "1", "--no-progress"])
    assert res.exit_code != 0 and "--overwrite" in str(res.exception)
    res = runner.invoke(
        app, [*args, "--cases", "001", "--rounds", "1", "--no-progress", "--overwrite"]
    )
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert " done in " not in res.output
    assert "--overwrite" not in (out / "report.md").read_text().splitlines()[1]


def test_scan_options_on_dataset_commands(runner: CliRunner, tiny_physionet: Path) -> None:
    """inspect reads every case with the shared options (a series UID is DICOM-only)."""
    res = runner.invoke(app, ["inspect", str(tiny_physionet), "--series-uid", "1.2.3"])
    assert res.exit_code != 0
    assert "series_uid only applies to DICOM folders" in str(res.exception)
    res = runner.invoke(app, ["inspect", str(tiny_physionet), "--correct-tilt", "--allow-non-ct"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    for command in ("segment", "replay", "montage", "inspect", "evaluate"):
        text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
        for flag in ("--correct-tilt", "--series-uid", "--allow-non-ct"):
            assert flag in text, (command, flag)


def _dicom_head(shape=(24, 28, 6)):
    import numpy as np

    from ichseg.io.volume import Volume, make_affine

    ni, nj, nk = shape
    i, j = np.meshgrid(np.linspace(-1, 1, ni), np.linspace(-1, 1, nj), indexing="ij")
    r = np.sqrt(i**2 + j**2)
    sl = np.where(r < 0.9, 900, -1000).astype(np.int16)
    sl[r < 0.75] = 32
    arr = np.repeat(sl[:, :, None], nk, axis=2)
    arr[8:11, 14:18, 1:5] = 70
    return Volume(arr, make_affine((0.5, 0.625, 2.5), "LPS", (12.0, -20.0, -30.0)))


def test_dicom_flags_named_by_the_messages_exist(runner: CliRunner, tmp_path: Path) -> None:
    """Each DICOM refusal names a flag; passing that flag to a command makes it load."""
    import math

    from ichseg.io.dicom import write_dicom_series

    vol = _dicom_head()
    mr = tmp_path / "mr"
    write_dicom_series(vol, mr, modality="MR")
    two = tmp_path / "two"
    write_dicom_series(vol, two, series_uid="1.2.826.0.1.1", series_number=1)
    write_dicom_series(vol, two, series_uid="1.2.826.0.1.2", series_number=2)
    tilt = tmp_path / "tilt"
    aff = vol.affine.copy()
    aff[1, 2] = -2.5 * math.tan(math.radians(12.0))  # each slice shifted posteriorly: sheared
    write_dicom_series(type(vol)(vol.array, aff), tilt)
    for folder, flag, extra in (
        (mr, "--allow-non-ct", ["--allow-non-ct"]),
        (two, "--series-uid", ["--series-uid", "1.2.826.0.1.2"]),
        (tilt, "--correct-tilt", ["--correct-tilt"]),
    ):
        out = tmp_path / f"{folder.name}.png"
        res = runner.invoke(app, ["montage", str(folder), "--out", str(out)])
        assert res.exit_code != 0 and flag in str(res.exception), (flag, repr(res.exception))
        res = runner.invoke(app, ["montage", str(folder), "--out", str(out), *extra])
        assert res.exit_code == 0, (flag, res.output, repr(res.exception))
        assert out.is_file()
