"""Checkpoints are read with ``weights_only=True``: code planted in a pickle never runs.

Covers ``ichseg export-weights``, ``ichseg train --init`` and resuming from a planted
``RUN/last.pt``; the RNG/optimizer/scaler state the trainer writes stays weights-only loadable and
comes back exactly; NaN/Inf weights are refused.
"""

from __future__ import annotations

import os
import pathlib
import random
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training_loop import TINY, tiny_cfg

from ichseg.cli import main
from ichseg.errors import ConfigError, IchsegError, InputFileError
from ichseg.models.registry import build_model, model_to_state, safe_torch_load
from ichseg.training.export import export_weights
from ichseg.training.trainer import Trainer, capture_rng_state, restore_rng_state


class _RunsShell:
    """Unpickles to ``os.system("touch TARGET")``: the attack from issue 9."""

    def __init__(self, target: Path) -> None:
        self.cmd = f"touch {shlex.quote(str(target))}"

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _TouchesPath:
    """Unpickles to ``pathlib.Path.touch(TARGET)`` (no shell involved)."""

    def __init__(self, target: Path) -> None:
        self.target = pathlib.Path(target)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.target,))


PAYLOADS = {"os.system": _RunsShell, "Path.touch": _TouchesPath}


def evil_checkpoint(path: Path, target: Path, kind: str = "os.system") -> Path:
    """A file shaped like a trainer checkpoint whose optimizer entry is a payload."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "model": "hpinet",
            "config": {},
            "state_dict": {},
            "optimizer": PAYLOADS[kind](target),
            "scaler": {},
            "step": 3,
            "best_val": 0.5,
        },
        path,
    )
    return path


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_payload_really_runs_when_unpickled_unsafely(tmp_path: Path, kind: str) -> None:
    """Control: the planted files are real attacks (so the tests below mean something)."""
    target = tmp_path / "pwned"
    ckpt = evil_checkpoint(tmp_path / "evil.pt", target, kind)
    torch.load(ckpt, weights_only=False)
    assert target.exists()


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_safe_torch_load_refuses_code(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "pwned"
    ckpt = evil_checkpoint(tmp_path / "evil.pt", target, kind)
    with pytest.raises(InputFileError, match="refusing to unpickle") as exc:
        safe_torch_load(ckpt)
    msg = str(exc.value)
    assert str(ckpt) in msg and "\n" not in msg and "not plain tensors" in msg
    assert not target.exists()


def _numpy_log_checkpoint(path: Path) -> Path:
    """Shaped like a stock nnU-Net checkpoint: numpy scalars and arrays in its training log."""
    torch.save(
        {
            "network_weights": {"w": torch.ones(2)},
            "logging": {"mean_fg_dice": [np.float64(0.5), np.float32(0.25)], "ema": np.arange(3)},
            "_best_ema": np.float64(0.75),
            "current_epoch": 1,
        },
        path,
    )
    return path


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_allow_numpy_reads_numpy_data_and_still_refuses_code(tmp_path: Path, kind: str) -> None:
    ckpt = _numpy_log_checkpoint(tmp_path / "np.pt")
    with pytest.raises(InputFileError, match="refusing to unpickle"):
        safe_torch_load(ckpt)  # the default stays plain tensors/numbers only
    got = safe_torch_load(ckpt, allow_numpy=True)
    assert got["_best_ema"] == 0.75 and got["logging"]["mean_fg_dice"][1] == np.float32(0.25)
    np.testing.assert_array_equal(got["logging"]["ema"], [0, 1, 2])
    target = tmp_path / "pwned"
    evil = evil_checkpoint(tmp_path / "evil.pt", target, kind)
    with pytest.raises(InputFileError, match="refusing to unpickle"):
        safe_torch_load(evil, allow_numpy=True)
    assert not target.exists()


def test_export_weights_refuses_code_in_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "pwned"
    ckpt = evil_checkpoint(tmp_path / "EVIL.pt", target)
    with pytest.raises(InputFileError, match="refusing to unpickle"):
        export_weights(ckpt, tmp_path / "w.pt")
    assert not target.exists()
    with pytest.raises(SystemExit) as exc:
        main(["export-weights", str(ckpt), "--out", str(tmp_path / "w.pt")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "EVIL.pt" in err and "refusing to unpickle" in err
    assert "Traceback" not in err
    assert not target.exists() and not (tmp_path / "w.pt").exists()


def test_train_init_refuses_code_in_checkpoint(
    tiny_physionet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "pwned"
    ckpt = evil_checkpoint(tmp_path / "EVIL.pt", target)
    args = ["train", "--data", str(tiny_physionet), "--out", str(tmp_path / "run")]
    args += ["--steps", "1", "--threads", "1", "--no-progress", "--init", str(ckpt)]
    for k, v in TINY.items():
        args += ["--set", f"{k}={v}"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "EVIL.pt" in err and "refusing to unpickle" in err
    assert not target.exists()
    assert not (tmp_path / "run" / "last.pt").exists()  # no training happened


def test_resume_refuses_planted_last_pt(tiny_physionet: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    target = tmp_path / "pwned"
    planted = evil_checkpoint(run / "last.pt", target)
    trainer = Trainer(tiny_cfg(tiny_physionet, run, max_steps=2), progress=False)
    with pytest.raises(InputFileError, match="refusing to unpickle") as exc:
        trainer.setup()
    assert str(planted) in str(exc.value)
    assert not target.exists()


def test_resume_refuses_a_checkpoint_of_another_shape(tiny_physionet: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"state_dict": {}, "step": 1}, run / "last.pt")  # safe, but not resumable
    with pytest.raises(InputFileError, match="not an ichseg training checkpoint"):
        Trainer(tiny_cfg(tiny_physionet, run, max_steps=2), progress=False).setup()
    other = model_to_state(build_model("hpinet", "lite", **{**TINY, "vim_base": 8}))
    torch.save(
        {**other, "optimizer": {}, "scaler": {}, "step": 1, "best_val": 0.0}, run / "last.pt"
    )
    with pytest.raises(InputFileError, match="cannot resume from this checkpoint"):
        Trainer(tiny_cfg(tiny_physionet, run, max_steps=2), progress=False).setup()


def _scramble_global_rngs() -> None:
    torch.manual_seed(12345)
    np.random.seed(12345)
    random.seed(12345)


def _global_rngs() -> tuple:
    np_state = np.random.get_state()
    return (torch.get_rng_state(), np_state[1].copy(), np_state[2:], random.getstate())


def _same_rngs(a: tuple, b: tuple) -> bool:
    return torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2] and a[3] == b[3]


def test_rng_state_survives_a_weights_only_round_trip(tmp_path: Path) -> None:
    np.random.normal()  # leaves a cached gaussian in numpy's legacy state
    random.gauss(0, 1)  # and in python's
    path = tmp_path / "rng.pt"
    torch.save({"rng": capture_rng_state()}, path)
    before = _global_rngs()
    draws = (torch.rand(3), np.random.normal(size=3), np.random.normal(), random.gauss(0, 1))
    _scramble_global_rngs()
    restore_rng_state(torch.load(path, weights_only=True)["rng"])
    assert _same_rngs(_global_rngs(), before)
    again = (torch.rand(3), np.random.normal(size=3), np.random.normal(), random.gauss(0, 1))
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1])
    assert draws[2:] == again[2:]


def test_trainer_checkpoint_is_weights_only_and_restores_rngs(
    tiny_physionet: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    first = Trainer(tiny_cfg(tiny_physionet, run, max_steps=1, val_every=1), progress=False)
    first.run()
    at_save = _global_rngs()  # nothing draws between the final checkpoint and the return
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    assert {"optimizer", "scaler", "rng", "step"} <= set(state) and state["step"] == 1
    assert state["optimizer"]["state"]  # Adam moments are stored
    torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    _scramble_global_rngs()
    resumed = Trainer(tiny_cfg(tiny_physionet, run, max_steps=2, val_every=1), progress=False)
    resumed.setup()
    assert resumed.step == 1
    assert _same_rngs(_global_rngs(), at_save)
    for group_a, group_b in zip(
        first.optimizer.state_dict()["state"].values(),
        resumed.optimizer.state_dict()["state"].values(),
        strict=True,
    ):
        for key in group_a:
            assert torch.equal(torch.as_tensor(group_a[key]), torch.as_tensor(group_b[key])), key


def _tiny_state() -> dict:
    torch.manual_seed(0)
    return model_to_state(build_model("hpinet", "lite", **TINY))


def test_export_weights_refuses_non_finite_and_float16_overflow(tmp_path: Path) -> None:
    state = _tiny_state()
    name = next(k for k, v in state["state_dict"].items() if v.is_floating_point())
    nan = {
        **state,
        "state_dict": {
            k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
            for k, v in state["state_dict"].items()
        },
    }
    torch.save(nan, tmp_path / "nan.pt")
    with pytest.raises(InputFileError, match="non-finite") as exc:
        export_weights(tmp_path / "nan.pt", tmp_path / "w.pt")
    assert repr(name) in str(exc.value) and "nan.pt" in str(exc.value)
    big = {**state, "state_dict": {**state["state_dict"], name: state["state_dict"][name] + 1e6}}
    torch.save(big, tmp_path / "big.pt")
    export_weights(tmp_path / "big.pt", tmp_path / "w32.pt")  # float32 holds 1e6
    with pytest.raises(InputFileError, match="float16"):
        export_weights(tmp_path / "big.pt", tmp_path / "w16.pt", half=True)
    assert not (tmp_path / "w16.pt").exists()


def test_init_weights_refuses_nan_weights(tmp_path: Path) -> None:
    state = _tiny_state()
    name = list(state["state_dict"])[3]
    bad = state["state_dict"][name].clone().float()
    bad.view(-1)[0] = float("inf")
    torch.save({**state, "state_dict": {**state["state_dict"], name: bad}}, tmp_path / "inf.pt")
    trainer = Trainer(tiny_cfg(tmp_path / "data", tmp_path / "run"), progress=False)
    trainer.out.mkdir(parents=True)
    trainer.model = build_model("hpinet", "lite", **TINY)
    with pytest.raises(InputFileError, match="non-finite") as exc:
        trainer.init_weights(tmp_path / "inf.pt")
    assert repr(name) in str(exc.value)
    with pytest.raises(ConfigError, match="not found"):
        trainer.init_weights(tmp_path / "missing.pt")


@pytest.mark.parametrize("content", [b"", b"junk that is no pickle", b"PK\x03\x04truncated"])
def test_unreadable_checkpoints_get_one_line_errors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(IchsegError, match="cannot read checkpoint") as exc:
        safe_torch_load(path)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)
