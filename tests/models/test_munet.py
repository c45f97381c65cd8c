"""MUNet architecture: head shapes, FPN ablation, registry round trip."""

from __future__ import annotations

import pytest
import torch

from ichseg.errors import ConfigError
from ichseg.models.munet import CLASS_NAMES, MUNet, MUNetConfig
from ichseg.models.registry import build_model, model_from_state, model_to_state

TINY = {"slice_size": 64, "widths": [4, 8, 8, 16, 16], "decoder_channels": 8, "cls_hidden": 16}


@pytest.mark.parametrize("fpn", [True, False])
def test_head_shapes(fpn: bool) -> None:
    torch.manual_seed(0)
    m = build_model("munet", "lite", fpn=fpn, **TINY)
    x = torch.randn(3, 1, 64, 96)
    m.train()
    out = m(x)
    assert out["seg_logits"].shape == (3, 6, 64, 96)
    assert out["cls_logits"].shape == (3, len(CLASS_NAMES)) == (3, 6)
    assert out["embedding"].shape == (3, 16 + (4 * 8 if fpn else 0))
    assert len(out["aux_seg_logits"]) == 3
    assert all(a.shape == (3, 6, 64, 96) for a in out["aux_seg_logits"])
    m.eval()
    assert "aux_seg_logits" not in m(x)
    enc, dec = m.features(x)
    assert [t.shape[-1] for t in enc] == [48, 24, 12, 6, 3]
    assert [t.shape[-1] for t in dec] == [6, 12, 24, 48]


def test_fpn_off_ignores_encoder_skips() -> None:
    """Without FPN the decoder only sees C5: the fusion layers take no lateral channels."""
    m = build_model("munet", "lite", fpn=False, **TINY)
    assert all(f[0].in_channels == 8 for f in m.fuse)
    m2 = build_model("munet", "lite", fpn=True, **TINY)
    assert [f[0].in_channels for f in m2.fuse] == [8 + 16, 8 + 8, 8 + 8, 8 + 4]


def test_presets_and_rebuild() -> None:
    paper = MUNetConfig.preset("paper")
    assert paper.widths == [64, 128, 256, 512, 1024] and paper.slice_size == 256
    with torch.device("meta"):
        net = build_model("munet", "paper")
    assert net.example_input_shape() == (1, 1, 256, 256)
    assert net.example_input_shape((32, 512, 512)) == (32, 1, 512, 512)
    m = build_model("munet", "lite", **TINY)
    again = model_from_state(model_to_state(m))
    assert isinstance(again, MUNet) and again.config == m.config


def test_bad_config_and_input() -> None:
    with pytest.raises(ConfigError):
        MUNetConfig(widths=[1, 2, 3])
    with pytest.raises(ConfigError):
        MUNetConfig.preset("huge")
    m = build_model("munet", "lite", **TINY)
    with pytest.raises(ConfigError, match="multiples of 32"):
        m(torch.zeros(1, 1, 50, 64))
