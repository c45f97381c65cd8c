"""Registry: names, builders, checkpoint round trip, load errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from models_tiny import TINY, tiny_inputs

from ichseg.errors import ConfigError, InputFileError
from ichseg.models import registry
from ichseg.models.hpinet import HPINet, HPINetConfig
from ichseg.models.registry import (
    available_models,
    build_model,
    load_model,
    model_to_state,
    register_model,
    save_model,
)

torch.set_num_threads(1)


def test_hpinet_is_registered_and_built_from_presets() -> None:
    assert "hpinet" in available_models()
    model = build_model("hpinet", "lite", **TINY)
    assert isinstance(model, HPINet) and model.registry_name == "hpinet"
    assert model.config.vim_base == TINY["vim_base"]
    default = build_model("hpinet", None, **TINY)
    assert default.config == model.config  # preset None = lite
    with pytest.raises(ConfigError, match="unknown model"):
        build_model("no-such-net")
    with pytest.raises(ConfigError, match="preset"):
        build_model("hpinet", "huge")


def test_register_generic_model_and_duplicate_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    class Toy(torch.nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.config = {"width": width}
            self.lin = torch.nn.Linear(2, width)

    @register_model("toy")
    def build_toy(preset: str | None = None, **overrides: int) -> Toy:
        return Toy(overrides.get("width", 3 if preset != "big" else 9))

    assert "toy" in available_models()
    assert build_model("toy", "big").lin.out_features == 9
    state = model_to_state(build_model("toy", width=5))
    assert state["model"] == "toy" and state["config"] == {"width": 5}
    register_model("toy")(build_toy)  # same builder again: fine

    with pytest.raises(ConfigError, match="already registered"):

        @register_model("toy")
        def other(preset: str | None = None, **kw: int) -> Toy:
            return Toy(1)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("hpinet", "lite", **TINY, use_memory=False).eval()
    state = model_to_state(model)
    assert set(state) == {"model", "config", "state_dict"}
    assert state["model"] == "hpinet" and state["config"]["use_memory"] is False
    path = save_model(model, tmp_path / "sub" / "tiny.pt")
    loaded, cfg = load_model(path)
    assert isinstance(cfg, HPINetConfig) and cfg == model.config
    assert not loaded.training
    vol, hints, prev = tiny_inputs()
    with torch.no_grad():
        a = model(vol, hints, prev, 3, [4, 5])
        b = loaded(vol, hints, prev, 3, [4, 5])
    for key in ("vim_logits", "sim_logits"):
        assert torch.equal(a[key], b[key])
    assert torch.equal(a["mpffm_logits"][1], b["mpffm_logits"][1])
    # extra keys written by a trainer are ignored
    extra = {**state, "optimizer": {}, "epoch": 3}
    torch.save(extra, tmp_path / "extra.pt")
    again, _ = load_model(tmp_path / "extra.pt")
    assert isinstance(again, HPINet)


def test_load_model_errors(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        load_model(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(InputFileError, match="cannot read"):
        load_model(junk)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(InputFileError, match="not an ichseg model checkpoint"):
        load_model(tmp_path / "other.pt")
    state = model_to_state(build_model("hpinet", "lite", **TINY))
    state["config"]["vim_base"] = 8  # weights no longer fit the config
    torch.save(state, tmp_path / "mismatch.pt")
    with pytest.raises(InputFileError, match="do not match"):
        load_model(tmp_path / "mismatch.pt")
    state["config"]["vim_bass"] = 8
    torch.save(state, tmp_path / "badcfg.pt")
    with pytest.raises(ConfigError, match="unknown"):
        load_model(tmp_path / "badcfg.pt")
    with pytest.raises(ConfigError, match="registry"):
        model_to_state(HPINet(HPINetConfig.preset("lite", **TINY)))


def test_load_model_refuses_non_finite_weights(tmp_path: Path) -> None:
    from ichseg.models.pretrained import load_weights

    state = model_to_state(build_model("hpinet", "lite", **TINY))
    first_float = next(k for k, v in state["state_dict"].items() if v.is_floating_point())
    all_nan = {
        k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
        for k, v in state["state_dict"].items()
    }
    torch.save({**state, "state_dict": all_nan}, tmp_path / "nan.pt")
    for loader in (load_model, load_weights):
        with pytest.raises(InputFileError, match="non-finite") as exc:
            loader(tmp_path / "nan.pt")
        msg = str(exc.value)
        assert "nan.pt" in msg and repr(first_float) in msg and "\n" not in msg
    last = list(state["state_dict"])[-1]
    one_inf = dict(state["state_dict"])
    one_inf[last] = one_inf[last].clone().float()
    one_inf[last].view(-1)[-1] = float("-inf")
    torch.save({**state, "state_dict": one_inf}, tmp_path / "inf.pt")
    with pytest.raises(InputFileError, match=f"{last!r} has 1 non-finite"):
        load_model(tmp_path / "inf.pt")


def test_load_model_refuses_pickled_code(tmp_path: Path) -> None:
    import os

    target = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch '{target}'",))

    state = model_to_state(build_model("hpinet", "lite", **TINY))
    torch.save({**state, "extra": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(InputFileError, match="refusing to unpickle"):
        load_model(tmp_path / "evil.pt")
    assert not target.exists()
