"""``ichseg inspect`` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ichseg_data_fixtures import SPACING, head, make_physionet, write
from typer.testing import CliRunner

from ichseg.cli import app, register_commands

CASE166 = Path("/work/shared/data/real/case166")


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    register_commands()
    return CliRunner()


@pytest.fixture(scope="module")
def physio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_physionet(tmp_path_factory.mktemp("physio_cli"))


def test_inspect_table_and_json(runner: CliRunner, physio: Path, tmp_path: Path) -> None:
    out = tmp_path / "inspect.json"
    res = runner.invoke(app, ["inspect", str(physio), "--json", str(out)])
    assert res.exit_code == 0, res.output
    for cid in ("049", "050", "051", "052"):
        assert cid in res.output
    assert "4 case(s), 4 with masks, 3 with hemorrhage" in res.output
    data = json.loads(out.read_text())
    assert data["layout"] == "physionet" and data["summary"]["cases"] == 4
    rows = {r["case_id"]: r for r in data["cases"]}
    r49 = rows["049"]
    assert r49["shape"] == [32, 32, 16] and r49["spacing_mm"] == list(SPACING)
    assert r49["orientation"] == "LPS" and rows["052"]["orientation"] == "RAS"
    assert r49["intensity"]["kind"] == "hu"
    assert r49["intensity"]["detected"] == "raw HU" and r49["warnings"] == []
    assert r49["intensity"]["min"] == -1000 and r49["intensity"]["max"] == 1000
    voxel_ml = SPACING[0] * SPACING[1] * SPACING[2] / 1000
    n_vox = 6 * 8 * 5 + 3 * 3 * 2
    assert r49["lesion_voxels"] == n_vox
    assert r49["lesion_ml"] == pytest.approx(n_vox * voxel_ml, abs=1e-3)
    assert r49["components"] == 2 and rows["050"]["components"] == 1
    assert r49["hemorrhage_slices"] == [2, 3, 4, 5, 6, 7, 8]
    assert r49["subtypes"] == ["IPH"]
    assert rows["052"]["subtypes"] == ["IPH", "IVH"]
    assert rows["050"]["subtypes"] == ["SDH"]
    assert rows["051"]["lesion_ml"] == 0 and rows["051"]["n_hemorrhage_slices"] == 0


def test_inspect_min_slices(runner: CliRunner, physio: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.json"
    res = runner.invoke(app, ["inspect", str(physio), "--min-slices", "3", "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert [r["case_id"] for r in data["cases"]] == ["049", "052"]
    assert data["summary"]["excluded_by_min_slices"] == 2
    assert "2 case(s) with fewer than 3 hemorrhage slices excluded" in res.output


def test_inspect_errors(runner: CliRunner, tmp_path: Path) -> None:
    res = runner.invoke(app, ["inspect", str(tmp_path / "missing")])
    assert res.exit_code != 0 and "no such file" in str(res.exception)
    root = make_physionet(tmp_path / "bad", csv=False)
    write(root / "masks" / "050.nii", np.zeros((32, 32, 15), np.uint8))
    out = tmp_path / "bad.json"
    res = runner.invoke(app, ["inspect", str(root), "--json", str(out)])
    assert res.exit_code != 0
    assert "1 case(s) could not be inspected; first: case 050" in str(res.exception)
    rows = {r["case_id"]: r for r in json.loads(out.read_text())["cases"]}
    assert "error" in rows["050"] and rows["049"]["lesion_ml"] > 0
    res = runner.invoke(app, ["inspect", str(root), "--input-window", "nonsense"])
    assert res.exit_code != 0 and "unknown window" in str(res.exception)


def test_inspect_main_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ichseg.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["inspect", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "unrecognised dataset layout" in err and "\n" not in err


def test_inspect_case166(runner: CliRunner, tmp_path: Path) -> None:
    if not (CASE166 / "image.nii.gz").exists():
        pytest.skip("real case166 not available")
    out = tmp_path / "c166.json"
    res = runner.invoke(app, ["inspect", str(CASE166), "--json", str(out)])
    assert res.exit_code == 0, res.output
    row = json.loads(out.read_text())["cases"][0]
    assert row["case_id"] == "case166" and row["shape"] == [512, 512, 24]
    assert row["intensity"]["kind"] == "windowed"
    assert (
        row["intensity"]["detected"] == "windowed 0..255 from L40/W80, window assumed brain 40/80"
    )
    assert len(row["warnings"]) == 1  # the assumption, and no implausibility warning
    assert row["lesion_voxels"] == 18420
    assert row["lesion_ml"] == pytest.approx(26.35, abs=0.05)
    assert row["hemorrhage_slices"] == list(range(9, 16))


def _one_case(root: Path, image: np.ndarray, mask: np.ndarray) -> Path:
    write(root / "image.nii.gz", image)
    write(root / "mask.nii.gz", mask)
    return root


def test_inspect_states_what_was_detected(runner: CliRunner, tmp_path: Path) -> None:
    hu, mask = head()
    hu = hu + np.random.default_rng(0).normal(0, 3, hu.shape).round().astype(np.int16)
    stored = np.round(np.clip(hu / 80.0, 0, 1) * 255).astype(np.int16)  # brain window 0..255
    stripped = np.where((hu > -500) & (hu < 500), hu, 0).astype(np.int16)  # no air, no skull
    cases = {
        "windowed": _one_case(tmp_path / "windowed", stored, mask),
        "stripped": _one_case(tmp_path / "stripped", stripped, mask),
    }
    expected = {
        "windowed": "windowed 0..255 from L40/W80, window assumed brain 40/80",
        "stripped": "raw HU, skull-stripped (no air/bone)",
    }
    for name, root in cases.items():
        out = tmp_path / f"{name}.json"
        res = runner.invoke(app, ["inspect", str(root), "--json", str(out)])
        assert res.exit_code == 0, res.output
        row = json.loads(out.read_text())["cases"][0]
        assert row["intensity"]["detected"] == expected[name]
        if name == "windowed":
            assert row["intensity"]["window"] == [40.0, 80.0]
            assert row["intensity"]["source"] == "assumed"
            assert len(row["warnings"]) == 1 and "--input-window" in row["warnings"][0]
            line = next(ln for ln in res.output.splitlines() if ln.startswith("warning: case"))
            assert "assuming the brain 40/80 window" in line
        else:
            assert row["warnings"] == []
    out = tmp_path / "declared.json"
    res = runner.invoke(
        app, ["inspect", str(cases["windowed"]), "--input-window", "subdural", "--json", str(out)]
    )
    assert res.exit_code == 0, res.output
    row = json.loads(out.read_text())["cases"][0]
    assert row["intensity"]["detected"] == "windowed 0..255 from L75/W215, window declared"
    assert row["warnings"] == []
