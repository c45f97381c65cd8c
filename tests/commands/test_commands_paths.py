"""Output paths of every command are checked before any work (issue 9 item 8).

Each CLI test gives an input that would fail *later* (a missing scan, checkpoint or dataset), so
an :class:`OutputPathError` proves the outputs were checked first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ichseg.cli import app, main, register_commands
from ichseg.commands._paths import Output, check_output_paths, volume_suffixes
from ichseg.errors import InputFileError, OutputPathError
from ichseg.io.nifti import write_nifti
from ichseg.io.volume import Volume, make_affine

HAS_PROC = Path("/proc/self").is_dir()


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    register_commands()
    return CliRunner()


def _fails_with(res, *words: str) -> str:
    assert res.exit_code != 0, res.output
    assert isinstance(res.exception, OutputPathError), repr(res.exception)
    msg = str(res.exception)
    for w in words:
        assert w in msg, msg
    return msg


# ------------------------------------------------------------------------------ the helper
def test_helper_file_checks(tmp_path: Path) -> None:
    existing = tmp_path / "a.nii.gz"
    existing.write_bytes(b"x")
    ok = tmp_path / "new.nii.gz"
    assert check_output_paths(Output("--out", ok), Output("--x", None)) == [ok]
    cases = [
        (Output("--out", tmp_path / "missing" / "m.nii.gz"), "does not exist"),
        (Output("--out", existing), "--overwrite"),
        (Output("--out", tmp_path), "is a folder"),
        (Output("--out", existing / "m.nii.gz"), "is a file, not a folder"),
        (Output("--out", tmp_path / "m.png", suffixes=volume_suffixes()), ".nii.gz"),
        (Output("--out", ""), "empty path"),
    ]
    for out, words in cases:
        with pytest.raises(OutputPathError, match=words.replace(".", r"\.")):
            check_output_paths(out)
    # --overwrite lets an existing file be replaced, never a folder
    assert check_output_paths(Output("--out", existing), overwrite=True) == [existing]
    with pytest.raises(OutputPathError, match="is a folder"):
        check_output_paths(Output("--out", tmp_path), overwrite=True)
    # the same path twice (also spelled differently), or an input
    with pytest.raises(OutputPathError, match="--out and --prob-out name the same path"):
        check_output_paths(Output("--out", ok), Output("--prob-out", tmp_path / "." / "new.nii.gz"))
    with pytest.raises(OutputPathError, match="is the input given as SCAN"):
        check_output_paths(Output("--out", existing), overwrite=True, inputs=[("SCAN", existing)])
    assert not list(tmp_path.glob(".ichseg-write-check-*"))  # the probe leaves nothing
    assert issubclass(OutputPathError, InputFileError)


def test_helper_folder_checks(tmp_path: Path) -> None:
    f = tmp_path / "file.txt"
    f.write_text("x")
    # a folder that does not exist yet (with missing parents) is fine and is not created
    deep = tmp_path / "a" / "b"
    assert check_output_paths(Output("--out", deep, kind="folder")) == [deep]
    assert not (tmp_path / "a").exists()
    with pytest.raises(OutputPathError, match="is a file, expected a folder"):
        check_output_paths(Output("--out", f, kind="folder"))
    with pytest.raises(OutputPathError, match="is a file, not a folder"):
        check_output_paths(Output("--out", f / "sub", kind="folder"))
    (tmp_path / "report.md").write_text("old")
    results = Output("--out", tmp_path, kind="folder", products=("results.csv", "report.md"))
    with pytest.raises(OutputPathError, match=r"already holds results \(report.md\)"):
        check_output_paths(results)
    check_output_paths(results, overwrite=True)


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc")
def test_helper_unwritable_location() -> None:
    for out in (Output("--out", "/proc/x.nii.gz"), Output("--out", "/proc/x/y", kind="folder")):
        with pytest.raises(OutputPathError, match="cannot create files in /proc"):
            check_output_paths(out)


# ------------------------------------------------------------------------------ per command
def _scan(tmp_path: Path) -> Path:
    img = np.full((16, 16, 4), 30, np.int16)
    img[0] = -1000
    return write_nifti(Volume(img, make_affine((1.0, 1.0, 5.0), "LPS")), tmp_path / "s.nii.gz")


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc")
def test_segment_out_in_proc_fails_before_loading(runner: CliRunner, tmp_path: Path) -> None:
    args = ["segment", str(tmp_path / "no-scan.nii.gz"), "--prompts", str(tmp_path / "no.json")]
    res = runner.invoke(app, [*args, "--out", "/proc/x.nii.gz"])
    _fails_with(res, "--out", "/proc")


def test_segment_outputs(runner: CliRunner, tmp_path: Path) -> None:
    base = ["segment", str(tmp_path / "no-scan.nii.gz"), "--prompts", str(tmp_path / "no.json")]
    mask = tmp_path / "m.nii.gz"
    log = tmp_path / "log.json"
    log.write_text("{}")
    # --log-out used to be overwritten silently
    _fails_with(runner.invoke(app, [*base, "--out", str(mask), "--log-out", str(log)]), "--log-out")
    # a --prob-out clash used to be found after the mask was written
    prob = tmp_path / "p.nii.gz"
    prob.write_bytes(b"x")
    _fails_with(runner.invoke(app, [*base, "--out", str(mask), "--prob-out", str(prob)]), "--prob")
    _fails_with(
        runner.invoke(app, [*base, "--out", str(mask), "--prob-out", str(mask)]), "same path"
    )
    _fails_with(runner.invoke(app, [*base, "--out", str(tmp_path / "m.png")]), ".nii.gz")
    _fails_with(runner.invoke(app, [*base, "--out", str(tmp_path / "d" / "m.nii")]), "not exist")
    assert not mask.exists()
    # the output must not be the scan itself, even with --overwrite
    scan = _scan(tmp_path)
    res = runner.invoke(
        app, ["segment", str(scan), "--prompts", "p.json", "--out", str(scan), "--overwrite"]
    )
    _fails_with(res, "is the input given as SCAN")
    # with valid outputs the next problem is reported: the missing prompt file
    res = runner.invoke(app, [*base, "--out", str(mask), "--log-out", str(log), "--overwrite"])
    assert isinstance(res.exception, InputFileError) and "no.json" in str(res.exception)


def test_replay_out_checked_first(runner: CliRunner, tmp_path: Path) -> None:
    existing = tmp_path / "m.nii.gz"
    existing.write_bytes(b"x")
    res = runner.invoke(app, ["replay", str(tmp_path / "no-log.json"), "--out", str(existing)])
    _fails_with(res, "--overwrite")


def test_montage_out(runner: CliRunner, tmp_path: Path) -> None:
    scan = _scan(tmp_path)
    out = tmp_path / "m.png"
    res = runner.invoke(app, ["montage", str(scan), "--out", str(out), "--slices", "2"])
    assert res.exit_code == 0, res.output
    first = out.stat().st_mtime_ns
    _fails_with(runner.invoke(app, ["montage", str(scan), "--out", str(out)]), "--overwrite")
    assert out.stat().st_mtime_ns == first
    res = runner.invoke(app, ["montage", str(scan), "--out", str(out), "--overwrite"])
    assert res.exit_code == 0, res.output
    missing = ["montage", str(tmp_path / "none.nii.gz")]
    _fails_with(runner.invoke(app, [*missing, "--out", str(tmp_path / "m.jpg")]), ".png")


def test_inspect_json_out(runner: CliRunner, tmp_path: Path) -> None:
    js = tmp_path / "i.json"
    js.write_text("{}")
    res = runner.invoke(app, ["inspect", str(tmp_path / "no-dataset"), "--json", str(js)])
    _fails_with(res, "--json", "--overwrite")
    assert js.read_text() == "{}"
    res = runner.invoke(
        app, ["inspect", str(tmp_path / "no-dataset"), "--json", str(js), "--overwrite"]
    )
    assert not isinstance(res.exception, OutputPathError)  # now the missing dataset


def test_export_weights_out(runner: CliRunner, tmp_path: Path) -> None:
    w = tmp_path / "w.pt"
    w.write_bytes(b"x")
    res = runner.invoke(app, ["export-weights", str(tmp_path / "none.pt"), "--out", str(w)])
    _fails_with(res, "--out", "--overwrite")
    (tmp_path / "v.json").write_text("{}")  # the facts file next to the weights
    res = runner.invoke(
        app, ["export-weights", str(tmp_path / "none.pt"), "--out", str(tmp_path / "v.pt")]
    )
    _fails_with(res, "facts", "v.json")
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"x")
    res = runner.invoke(app, ["export-weights", str(ckpt), "--out", str(ckpt), "--overwrite"])
    _fails_with(res, "CHECKPOINT")
    res = runner.invoke(
        app, ["export-weights", str(tmp_path / "none.pt"), "--out", str(w), "--overwrite"]
    )
    assert isinstance(res.exception, InputFileError) and "not found" in str(res.exception)
    assert not isinstance(res.exception, OutputPathError)


def test_training_curves_out(runner: CliRunner, tmp_path: Path) -> None:
    png = tmp_path / "c.png"
    png.write_bytes(b"x")
    _fails_with(runner.invoke(app, ["training-curves", "log.csv", "--out", str(png)]), "--out")


def test_folder_outputs(runner: CliRunner, tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    for args in (
        ["demo", "--out", str(f)],
        ["synth", "--out", str(f), "--cases", "1"],
        ["train", "--data", str(tmp_path / "none"), "--out", str(f)],
        ["evaluate", "--data", str(tmp_path / "none"), "--out", str(f), "--method", "rw"],
    ):
        _fails_with(runner.invoke(app, args), "is a file, expected a folder")


def test_evaluate_refuses_an_earlier_report(
    runner: CliRunner, tiny_physionet: Path, tmp_path: Path
) -> None:
    out = tmp_path / "e"
    out.mkdir()
    (out / "results.csv").write_text("old")
    args = ["evaluate", "--data", str(tiny_physionet), "--out", str(out), "--method", "rw"]
    res = runner.invoke(app, [*args, "--cases", "001", "--rounds", "1", "--no-progress"])
    _fails_with(res, "results.csv", "--overwrite")
    assert (out / "results.csv").read_text() == "old"


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc")
def test_main_prints_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--data", str(tmp_path), "--out", "/proc/x", "--method", "rw"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --out /proc/x: cannot create files in /proc") and "\n" not in err
