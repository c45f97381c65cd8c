"""The demo pipeline end to end on a small synthetic scan with a tiny checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from models_tiny import TINY32 as TINY
from PIL import Image

from ichseg.app.demo import run_demo
from ichseg.errors import ConfigError
from ichseg.interaction.session import SessionConfig
from ichseg.models.registry import build_model, save_model
from ichseg.visualize.overlay import overlay_size


def test_demo_runs_three_rounds(tmp_path):
    torch.manual_seed(0)
    ckpt = save_model(build_model("hpinet", "lite", **TINY), tmp_path / "tiny.pt")
    lines: list[str] = []
    res = run_demo(tmp_path / "out", weights=ckpt, shape=(64, 64, 12), echo=lines.append)
    text = "\n".join(lines)
    assert "round 1" in text and "Dice" in text and "mL" in text
    assert 1 <= len(res.rounds) <= 3
    for name in ("scan", "ground_truth", "montage", "mask", "log", "overlay"):
        assert res.files[name].exists() and res.files[name].stat().st_size > 0
    log = json.loads(res.files["log"].read_text())
    assert log["format"] == "ichseg-interaction-log"
    assert res.summary["true_volume_ml"] > 0
    # one overlay panel per round: ground truth + prediction + scribbles, Dice and mL titles
    n = len(res.rounds)
    with Image.open(res.files["overlay"]) as im:
        assert im.size == overlay_size(n, n)
    assert "engine" in log and log["engine"]["config"]["stroke_radius_mm"] == 10.0


def test_demo_session_options(tmp_path):
    torch.manual_seed(0)
    ckpt = save_model(build_model("hpinet", "lite", **TINY), tmp_path / "tiny.pt")
    lines: list[str] = []
    res = run_demo(
        tmp_path / "out",
        weights=ckpt,
        shape=(64, 64, 12),
        rounds=1,
        engine_options={"stroke_radius_mm": 0.0, "feed_previous": False},
        session_config=SessionConfig(threshold=0.4),
        echo=lines.append,
    )
    log = json.loads(res.files["log"].read_text())
    assert log["engine"]["config"]["stroke_radius_mm"] == 0.0
    assert log["engine"]["config"]["feed_previous"] is False
    assert log["session_config"]["threshold"] == 0.4
    assert any("stroke refinement 0 mm" in line for line in lines)


def test_demo_cli_checks_options_first(tmp_path):
    from typer.testing import CliRunner

    from ichseg.cli import app, register_commands

    register_commands()
    runner = CliRunner()
    out = tmp_path / "o"
    for extra in (["--threshold", "0"], ["--stroke-radius-mm", "-2"], ["--rounds", "0"]):
        res = runner.invoke(app, ["demo", "--out", str(out), *extra])
        assert isinstance(res.exception, ConfigError), (extra, repr(res.exception))
    assert not out.exists()


def test_demo_without_weights_says_how_to_get_them(tmp_path, monkeypatch):
    import ichseg.models.pretrained as pre

    monkeypatch.setattr(pre, "DEFAULT_WEIGHTS", "does-not-exist.pt")
    with pytest.raises(ConfigError):
        run_demo(tmp_path / "out", shape=(64, 64, 12), echo=lambda s: None)
