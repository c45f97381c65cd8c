"""FLOP/parameter counting and ``ichseg info``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from models_tiny import TINY
from typer.testing import CliRunner

from ichseg.cli import app, main, register_commands
from ichseg.errors import ConfigError
from ichseg.models.flops import (
    count_flops,
    count_parameters,
    generic_cost,
    hpinet_cost,
    parse_input_size,
)
from ichseg.models.hpinet import HPINet, HPINetConfig
from ichseg.models.registry import build_model, save_model

torch.set_num_threads(1)


def test_count_flops_is_two_per_mac() -> None:
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    assert count_flops(lambda: conv(torch.zeros(1, 3, 8, 8))) == 2 * 3 * 4 * 9 * 64
    assert count_parameters(conv) == 3 * 4 * 9
    assert count_parameters(None) == 0


def test_parse_input_size() -> None:
    assert parse_input_size("32x512x512") == (32, 512, 512)
    assert parse_input_size("7X64x48") == (7, 64, 48)
    for bad in ("32x512", "axbxc", "0x4x4", ""):
        with pytest.raises(ConfigError):
            parse_input_size(bad)


def test_hpinet_cost_rows_and_paper_reference() -> None:
    with torch.device("meta"):
        paper = HPINet(HPINetConfig.preset("paper"))
    report = hpinet_cost(paper, (16, 512, 512))
    names = [r.name for r in report.rows]
    assert names[0].startswith("VIM") and len(names) == 6
    vim = report.rows[0]
    assert vim.flops == pytest.approx(2.44e12, rel=0.01)  # ~1.22 TMAC (notes §9)
    assert vim.ref_params_m == 141.25
    assert report.total.params == pytest.approx(237.45e6, rel=0.01)
    assert report.total.flops > sum(r.flops for r in report.rows) - 1  # 2 key encodings
    assert any("325.32" in n for n in report.notes)
    small = hpinet_cost(build_model("hpinet", "lite", **TINY), (5, 32, 32))
    assert all(r.ref_params_m is None for r in small.rows)
    sliced = hpinet_cost(build_model("hpinet", "lite", **TINY, propagation="slice"), (5, 32, 32))
    assert not any(r.name.startswith(("VIM", "FCM")) for r in sliced.rows)


def test_generic_cost_for_other_models() -> None:
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3, padding=1), torch.nn.Conv3d(2, 1, 1))
    report = generic_cost(net, (4, 8, 8), "toy")
    assert report.total.params == count_parameters(net)
    assert report.total.flops == 2 * (1 * 2 * 27 + 2 * 1) * 4 * 8 * 8


def test_info_command_lite_and_weights(tmp_path: Path) -> None:
    register_commands()
    runner = CliRunner()
    res = runner.invoke(app, ["info", "--model", "hpinet", "--preset", "lite"])
    assert res.exit_code == 0, res.output
    assert "VIM" in res.output and "Total" in res.output and "32x256x256" in res.output
    res = runner.invoke(app, ["info", "--preset", "lite", "--input", "5x32x32"])
    assert res.exit_code == 0 and "5x32x32" in res.output
    ckpt = save_model(build_model("hpinet", "lite", **TINY), tmp_path / "tiny.pt")
    res = runner.invoke(app, ["info", "--weights", str(ckpt), "--input", "5x48x48"])
    assert res.exit_code == 0, res.output
    assert "checkpoint" in res.output and "MPFFM" in res.output


def test_info_command_bad_input_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["info", "--preset", "lite", "--input", "32x256"])
    assert exc.value.code == 2
    assert "DxHxW" in capsys.readouterr().err


def test_info_train_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ichseg.training.memory as memory

    calls: list[tuple] = []

    def fake_estimate(preset: str, **kw: object) -> memory.MemoryEstimate:
        progress = kw.pop("progress")
        progress("step 1/2: forward at 8x32x32")  # type: ignore[operator]
        calls.append((preset, kw))
        return memory.MemoryEstimate(
            preset, (8, 32, 32), 2, False, True, True, 0.5, 0.25, 1.0, 2.0, 0.25, 4.0, 0.1
        )

    monkeypatch.setattr(memory, "estimate_training_memory", fake_estimate)
    register_commands()
    res = CliRunner().invoke(
        app, ["info", "--preset", "lite", "--input", "8x32x32", "--train-memory", "--no-amp"]
    )
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "peak 4.00 GiB" in out and "amp=False" in out and "Adam state 1.00" in out
    # not a terminal: what it is doing is printed, one line per stage
    assert "estimating training-step memory of lite at 8x32x32" in out
    assert "s step 1/2: forward at 8x32x32" in out
    assert calls == [("lite", {"amp": False, "checkpointing": True, "depth": 8, "slice_size": 32})]
    ckpt = save_model(build_model("hpinet", "lite", **TINY), tmp_path / "tiny.pt")
    for args in (["--weights", str(ckpt)], ["--preset", "lite", "--input", "8x32x48"]):
        with pytest.raises(SystemExit) as exc:
            main(["info", *args, "--train-memory"])
        assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--weights" in err and "square" in err


def test_train_memory_reports_its_stages() -> None:
    from ichseg.training.memory import estimate_training_memory

    tiny = {**TINY, "sim_layers": [1, 1, 1, 1], "key_layers": [1, 1, 1], "value_layers": [1] * 3}
    seen: list[str] = []
    estimate_training_memory("lite", overrides=tiny, amp=False, progress=seen.append)
    assert seen[0].startswith("building the lite model")
    assert seen[1:] == [
        f"step {s}/2: {stage}"
        for s in (1, 2)
        for stage in ("forward at 7x48x48", "backward", "optimizer update")
    ]
