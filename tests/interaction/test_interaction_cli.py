"""``ichseg segment`` and ``ichseg replay`` end to end on a tiny scan and a tiny checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_interaction_session import TINY, phantom
from typer.testing import CliRunner

from ichseg.cli import app, register_commands
from ichseg.errors import ConfigError, IntensityError, PromptError
from ichseg.interaction.prompts import Click, GridRef, InteractionRound, PromptSet, Scribble
from ichseg.io.nifti import write_nifti
from ichseg.io.reader import load_mask
from ichseg.io.volume import Volume, make_affine, to_canonical
from ichseg.models.registry import build_model, save_model


def test_segment_then_replay(tmp_path):
    register_commands()
    torch.manual_seed(0)
    ckpt = save_model(build_model("hpinet", "lite", **TINY), tmp_path / "tiny.pt")
    vol, mask = phantom("RAS")
    scan = write_nifti(vol, tmp_path / "scan.nii.gz")
    canon = to_canonical(vol)[0]
    gt = to_canonical(mask)[0].zyx()
    z = int(np.argmax(gt.reshape(gt.shape[0], -1).sum(1)))
    ys, xs = np.nonzero(gt[z])
    sc = Scribble(z, list(zip(ys[:3].tolist(), xs[:3].tolist(), strict=True)), True, 2.0)
    ps = PromptSet(GridRef.from_volume(canon), (InteractionRound(1, (sc,)),))
    prompts = ps.save(tmp_path / "prompts.json")
    out = tmp_path / "mask.nii.gz"
    log = tmp_path / "log.json"
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "segment",
            str(scan),
            "--prompts",
            str(prompts),
            "--out",
            str(out),
            "--weights",
            str(ckpt),
            "--log-out",
            str(log),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "round 1" in res.output and "mL" in res.output
    m = load_mask(out, vol)
    assert m.same_geometry(vol)
    # refuses to overwrite the user's mask
    again = runner.invoke(
        app,
        [
            "segment",
            str(scan),
            "--prompts",
            str(prompts),
            "--out",
            str(out),
            "--weights",
            str(ckpt),
        ],
    )
    assert again.exit_code != 0
    replayed = tmp_path / "replayed.nii.gz"
    res2 = runner.invoke(app, ["replay", str(log), "--out", str(replayed)])
    assert res2.exit_code == 0, res2.output
    assert "warning" not in res2.output
    assert np.array_equal(load_mask(replayed, vol).array, m.array)
    data = json.loads(log.read_text())
    assert data["engine"]["name"] == "hpinet_refined" and data["engine"]["model"]["weights_sha256"]
    assert data["scan"]["sha256"] and data["scan"]["source_relative_to_log"] == "scan.nii.gz"

    # another scan of the same geometry: refused, named; --force replays and says so
    other = write_nifti(vol.with_array(np.asarray(vol.array) + 1), tmp_path / "other.nii.gz")
    bad = runner.invoke(
        app, ["replay", str(log), "--scan", str(other), "--out", str(tmp_path / "o.nii.gz")]
    )
    assert isinstance(bad.exception, PromptError)
    assert "the scan" in str(bad.exception) and "--force" in str(bad.exception)
    forced = runner.invoke(
        app,
        ["replay", str(log), "--scan", str(other), "--out", str(tmp_path / "o.nii.gz"), "--force"],
    )
    assert forced.exit_code == 0 and "--force" in forced.output
    # other weights with the same architecture: refused
    torch.manual_seed(1)
    ckpt2 = save_model(build_model("hpinet", "lite", **TINY), tmp_path / "tiny2.pt")
    bad_w = runner.invoke(
        app,
        ["replay", str(log), "--weights", str(ckpt2), "--out", str(tmp_path / "w.nii.gz")],
    )
    assert isinstance(bad_w.exception, PromptError) and "the weights" in str(bad_w.exception)

    # the log and its scan moved together to another folder: the relative path finds the scan
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "scan.nii.gz").write_bytes(scan.read_bytes())
    log2 = moved / "log.json"
    data["scan"]["source"] = str(tmp_path / "gone" / "scan.nii.gz")
    data["engine"]["model"]["weights"] = str(ckpt)
    log2.write_text(json.dumps(data))
    res3 = runner.invoke(app, ["replay", str(log2), "--out", str(moved / "m.nii.gz")])
    assert res3.exit_code == 0, res3.output
    assert np.array_equal(load_mask(moved / "m.nii.gz", vol).array, m.array)


def test_replay_of_a_malformed_log_is_one_line(tmp_path, capsys):
    from ichseg.cli import main

    for name, data in (
        ("keys.json", b'{"format": "ichseg-interaction-log", "version": 2}'),
        ("bin.json", b"\xff\xfe\x00"),
    ):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(SystemExit) as exc:
            main(["replay", str(path), "--out", str(tmp_path / "m.nii.gz")])
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and err.startswith("error:") and "\n" not in err
        assert name in err


# --- prompt file and options are checked before the model loads (issue 9 items 10, 11) --------
def _scan_and_prompts(tmp_path):
    vol, mask = phantom("RAS")
    scan = write_nifti(vol, tmp_path / "scan.nii.gz")
    canon = to_canonical(vol)[0]
    gt = to_canonical(mask)[0].zyx()
    z = int(np.argmax(gt.reshape(gt.shape[0], -1).sum(1)))
    ys, xs = np.nonzero(gt[z])
    sc = Scribble(z, list(zip(ys[:3].tolist(), xs[:3].tolist(), strict=True)), True, 2.0)
    ps = PromptSet(GridRef.from_volume(canon), (InteractionRound(1, (sc,)),))
    return scan, ps.save(tmp_path / "prompts.json"), ps


@pytest.fixture
def no_weights(monkeypatch):
    """Loading weights fails loudly: whatever error a test sees was found before."""
    import ichseg.models.pretrained as pre

    def refuse(*a, **k):
        raise AssertionError("weights were loaded before the input was checked")

    monkeypatch.setattr(pre, "load_weights", refuse)


def _segment(runner, scan, prompts, out, *extra):
    return runner.invoke(
        app, ["segment", str(scan), "--prompts", str(prompts), "--out", str(out), *extra]
    )


def test_segment_help_points_at_the_prompt_docs():
    register_commands()
    res = CliRunner().invoke(app, ["segment", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    assert "docs/prompts.md" in text and '"points"' in text
    for flag in ("--correct-tilt", "--series-uid", "--allow-non-ct", "--stroke-radius-mm"):
        assert flag in text
    assert "--no-feed-previous" in text and "--threshold" in text


def test_segment_checks_the_prompt_file_before_the_model(tmp_path, no_weights):
    register_commands()
    runner = CliRunner()
    scan, _, ps = _scan_and_prompts(tmp_path)
    out = tmp_path / "m.nii.gz"
    data = ps.to_dict()
    bad = tmp_path / "bad.json"
    cases = [
        (
            {**data, "rounds": [{"prompts": [{**data["rounds"][0]["prompts"][0], "postive": 1}]}]},
            "unknown field",
        ),
        ({**data, "rounds": []}, "no rounds"),
        ({**data, "rounds": [{"prompts": []}]}, "rounds[0] has no prompts"),
        (
            {
                "rounds": [
                    {"prompts": [{"type": "click", "z": 99, "point": [1, 1], "positive": True}]}
                ]
            },
            "rounds[0].prompts[0]",
        ),
        ({"rounds": [{"prompts": [{"type": "box", "z": 1}]}]}, "missing the field 'corners'"),
        ({"rounds": [{"prompts": [{"type": "lasso", "z": 1}]}]}, "unknown prompt type 'lasso'"),
    ]
    for content, words in cases:
        bad.write_text(json.dumps(content))
        res = _segment(runner, scan, bad, out)
        assert isinstance(res.exception, PromptError), (words, repr(res.exception))
        assert words in str(res.exception)
    # the grid of the file against the scan (a different scan)
    other = PromptSet(GridRef.from_volume(to_canonical(phantom("LPS", depth=12)[0])[0]))
    other.add_round([Click(1, 1, 1, True)]).save(bad)
    res = _segment(runner, scan, bad, out)
    assert isinstance(res.exception, PromptError) and "canonical grid is" in str(res.exception)
    assert not out.exists()


def test_segment_options_are_checked_and_reach_the_reader(tmp_path, no_weights):
    register_commands()
    runner = CliRunner()
    scan, prompts, _ = _scan_and_prompts(tmp_path)
    out = tmp_path / "m.nii.gz"
    for extra, flag in (
        (["--threshold", "1.5"], "--threshold"),
        (["--threshold", "nan"], "--threshold"),
        (["--stroke-radius-mm", "-1"], "--stroke-radius-mm"),
    ):
        res = _segment(runner, scan, prompts, out, *extra)
        assert isinstance(res.exception, ConfigError) and flag in str(res.exception), res.exception
    res = _segment(runner, scan, prompts, out, "--series-uid", "1.2.3")
    assert isinstance(res.exception, ConfigError) and "DICOM" in str(res.exception)
    # an MR-like scan: refused with a message naming the flag, loaded with the flag
    mr = Volume(np.full((40, 40, 10), 300, np.int16), make_affine((1.0, 1.0, 5.0), "LPS"))
    mr.array[5:30, 5:30] = 2500
    mr_path = write_nifti(mr, tmp_path / "mr.nii.gz")
    res = _segment(runner, mr_path, prompts, out)
    assert isinstance(res.exception, IntensityError) and "--allow-non-ct" in str(res.exception)
    res = _segment(runner, mr_path, prompts, out, "--allow-non-ct")
    assert isinstance(res.exception, AssertionError), repr(res.exception)  # reached the weights


def test_segment_session_options_change_the_session(tmp_path):
    register_commands()
    torch.manual_seed(0)
    ckpt = save_model(build_model("hpinet", "lite", **TINY), tmp_path / "tiny.pt")
    scan, prompts, _ = _scan_and_prompts(tmp_path)
    log = tmp_path / "log.json"
    res = _segment(
        CliRunner(),
        scan,
        prompts,
        tmp_path / "m.nii.gz",
        "--weights",
        str(ckpt),
        "--log-out",
        str(log),
        "--stroke-radius-mm",
        "0",
        "--no-feed-previous",
        "--threshold",
        "0.4",
    )
    assert res.exit_code == 0, res.output + repr(res.exception)
    data = json.loads(log.read_text())
    assert data["engine"]["config"]["stroke_radius_mm"] == 0.0
    assert data["engine"]["config"]["feed_previous"] is False
    assert data["engine"]["config"]["threshold"] == 0.4
    assert data["session_config"]["threshold"] == 0.4


def test_session_option_help_quotes_the_real_defaults():
    from ichseg.commands import _session
    from ichseg.interaction.engine import DEFAULT_METHOD, METHODS
    from ichseg.interaction.hpinet_engine import HPINetEngineConfig
    from ichseg.interaction.session import SessionConfig

    def help_of(alias):
        return alias.__metadata__[0].help

    cfg = HPINetEngineConfig(**METHODS[DEFAULT_METHOD][1])
    assert f"Default: {cfg.stroke_radius_mm:g}." in help_of(_session.StrokeRadiusOpt)
    flag = "--feed-previous" if cfg.feed_previous else "--no-feed-previous"
    assert f"Default: {flag}." in help_of(_session.FeedPreviousOpt)
    assert f"Default: {SessionConfig().threshold:g}." in help_of(_session.ThresholdOpt)


def test_segment_autosaves_its_log_by_default(tmp_path):
    from ichseg.commands.interact import default_log_path

    register_commands()
    torch.manual_seed(0)
    ckpt = save_model(build_model("hpinet", "lite", **TINY), tmp_path / "tiny.pt")
    scan, prompts, _ = _scan_and_prompts(tmp_path)
    out = tmp_path / "mask.nii.gz"
    res = _segment(CliRunner(), scan, prompts, out, "--weights", str(ckpt))
    assert res.exit_code == 0, res.output
    log = default_log_path(out)
    assert log == tmp_path / "mask.log.json" and log.exists()
    assert json.loads(log.read_text())["events"][-1]["op"] == "run_round"
    res2 = _segment(
        CliRunner(), scan, prompts, tmp_path / "m2.nii.gz", "--weights", str(ckpt), "--no-log"
    )
    assert res2.exit_code == 0 and not (tmp_path / "m2.log.json").exists()
