"""The six MONAI baselines: build, forward, one optimizer step, presets, registry round trip."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from ichseg.cli import app, register_commands
from ichseg.errors import ConfigError
from ichseg.models.flops import model_cost
from ichseg.models.monai_nets import MONAI_MODELS, MonaiSegNet, preset_config
from ichseg.models.registry import available_models, build_model, load_model, save_model

#: tiny overrides per model (fast on CPU); patch sides respect each network's divisibility
TINY: dict[str, dict] = {
    "unet": {"channels": [4, 8], "strides": [2], "num_res_units": 1, "patch_size": [16, 16, 8]},
    "vnet": {"patch_size": [16, 16, 16]},  # MONAI's VNet has a fixed width
    "segresnet": {
        "init_filters": 8,
        "blocks_down": [1, 1],
        "blocks_up": [1],
        "patch_size": [8] * 3,
    },
    "attention_unet": {"channels": [4, 8], "strides": [2], "patch_size": [16, 16, 8]},
    "unetr": {
        "feature_size": 4,
        "hidden_size": 32,
        "mlp_dim": 64,
        "num_heads": 2,
        "patch_size": [16, 16, 16],
    },
    "swin_unetr": {
        "feature_size": 12,
        "depths": [1, 1, 1, 1],
        "window_size": 4,
        "patch_size": [64, 32, 32],
    },
}


def test_all_six_are_registered():
    assert set(MONAI_MODELS) <= set(available_models())
    assert set(TINY) == set(MONAI_MODELS)


#: MONAI's VNet has 45.6 M parameters at any input size; SwinUNETR's attention is slow on CPU
SLOW = ("vnet", "swin_unetr")


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in MONAI_MODELS]
)
def test_forward_and_one_optimizer_step(name):
    torch.manual_seed(0)
    model = build_model(name, "lite", **TINY[name])
    assert isinstance(model, MonaiSegNet) and model.registry_name == name
    batch = 2 if name == "vnet" else 1  # VNet's batch norm needs two samples at its bottleneck
    x = torch.randn(batch, 1, *model.patch_size)
    y = (torch.rand(batch, 1, *model.patch_size) > 0.7).float()
    out = model(x)
    assert out.shape == (batch, 1, *model.patch_size)
    from monai.losses import DiceLoss

    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in model.parameters()]
    loss = DiceLoss(sigmoid=True)(out, y)
    loss.backward()
    opt.step()
    changed = sum(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    assert torch.isfinite(loss) and changed > len(before) // 2


@pytest.mark.parametrize("name", ["unet", "segresnet", "unetr"])
def test_registry_round_trip(name, tmp_path):
    model = build_model(name, "lite", **TINY[name]).eval()
    again = build_model(name, None, **model.config)  # the registry contract
    assert again.config == model.config
    assert {k: v.shape for k, v in again.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }
    path = save_model(model, tmp_path / f"{name}.pt")
    loaded, cfg = load_model(path)
    x = torch.randn(1, 1, *model.patch_size)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x))
    for key in ("patch_size", "target_spacing", "clip", "mean", "std", "threshold"):
        assert key in cfg


def test_paper_preset_is_the_hemseg_repository():
    unet = preset_config("unet", "paper")
    assert unet["channels"] == [32, 64, 128, 256, 512] and unet["num_res_units"] == 2
    assert unet["patch_size"] == [256, 256, 16]
    assert unet["target_spacing"] == [0.48828, 0.48828, 4.6494]
    assert unet["clip"] == [11.9997, 79.0] and unet["mean"] == 48.134
    unetr = preset_config("unetr", "paper")
    assert (unetr["hidden_size"], unetr["mlp_dim"], unetr["num_heads"]) == (768, 3072, 12)
    assert preset_config("swin_unetr", "paper")["patch_size"] == [128, 128, 32]
    assert preset_config("swin_unetr", "paper")["feature_size"] == 48
    assert preset_config("segresnet", "paper")["dropout_prob"] == 0.2
    lite = preset_config("unet", "lite")
    assert lite["patch_size"] == [128, 128, 16] and lite["target_spacing"][0] == pytest.approx(
        0.9766
    )
    # a paper config rebuilt through builder(None, **config) stays the paper architecture
    seg = preset_config("segresnet", None, **preset_config("segresnet", "paper"))
    assert "blocks_down" not in seg


@pytest.mark.parametrize(
    "name, bad",
    [
        ("unet", {"patch_size": [15, 16, 8]}),
        ("swin_unetr", {"patch_size": [32, 32, 16]}),
        ("unet", {"no_such_argument": 1}),
        ("unet", {"in_channels": 2}),
        ("unetr", {"threshold": 1.5}),
    ],
)
def test_bad_overrides_are_config_errors(name, bad):
    with pytest.raises(ConfigError):
        build_model(name, "lite", **{**TINY[name], **bad})


def test_unknown_preset():
    with pytest.raises(ConfigError, match="preset"):
        build_model("unet", "huge")


def test_flops_at_the_models_own_patch():
    model = build_model("unet", "lite", **TINY["unet"])
    report = model_cost(model, None, "unet")
    assert report.input_shape == (1, 1, 16, 16, 8)
    assert report.total.flops and report.total.flops > 0
    assert report.total.params == sum(p.numel() for p in model.parameters())
    # an explicit DxHxW input becomes (1, 1, H, W, D)
    assert model_cost(model, (8, 32, 32), "unet").input_shape == (1, 1, 32, 32, 8)


def test_info_cli_reports_the_lite_patch():
    register_commands()
    res = CliRunner().invoke(app, ["info", "--model", "unet", "--preset", "lite"])
    assert res.exit_code == 0, res.output
    assert "1x1x128x128x16" in res.output and "0.60" in res.output
