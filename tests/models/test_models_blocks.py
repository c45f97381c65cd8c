"""Building blocks: norms, the oneDNN Conv3d route, residual blocks, ResNet2d, resizing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ichseg.errors import ConfigError
from ichseg.models import blocks
from ichseg.models.blocks import (
    CBAM,
    Conv3d,
    PreActResBlock2d,
    ResBlock3d,
    group_count,
    make_norm,
    resize2d,
)
from ichseg.models.resnet2d import ResNet2d

torch.set_num_threads(1)


def test_group_count_divides_and_keeps_two_channels_per_group() -> None:
    for c in (1, 2, 3, 4, 6, 8, 12, 16, 64, 96, 256, 2048):
        g = group_count(c)
        assert c % g == 0 and g <= 32
        assert c < 2 or c // g >= 2
    assert group_count(64) == 32
    with pytest.raises(ConfigError):
        group_count(0)


def test_make_norm_kinds_and_errors() -> None:
    assert isinstance(make_norm("group", 16, 3), nn.GroupNorm)
    assert isinstance(make_norm("instance", 16, 3), nn.InstanceNorm3d)
    assert isinstance(make_norm("instance", 16, 2), nn.InstanceNorm2d)
    with pytest.raises(ConfigError, match="unknown norm"):
        make_norm("batch", 16, 2)


@pytest.mark.parametrize(("kernel", "bias", "batch"), [(3, False, 1), (1, True, 1), (3, True, 2)])
def test_fast_conv3d_matches_stock_conv_and_gradients(kernel: int, bias: bool, batch: int) -> None:
    torch.manual_seed(0)
    conv = Conv3d(3, 5, kernel, padding=kernel // 2, bias=bias)
    ref = nn.Conv3d(3, 5, kernel, padding=kernel // 2, bias=bias)
    ref.load_state_dict(conv.state_dict())
    x = torch.randn(batch, 3, 5, 9, 7, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    assert conv._fast_ok(x)
    y, y_ref = conv(x), ref(x_ref)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(conv.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)
    if bias:
        torch.testing.assert_close(conv.bias.grad, ref.bias.grad, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), ref(x), rtol=1e-4, atol=1e-5)


def test_fast_conv3d_is_skipped_when_not_applicable() -> None:
    strided = Conv3d(2, 2, 3, stride=2, padding=1)
    x = torch.randn(1, 2, 4, 8, 8)
    assert not strided._fast_ok(x)
    assert strided(x).shape == (1, 2, 2, 4, 4)
    same = Conv3d(2, 2, 3, padding=1)
    assert not same._fast_ok(x.double())
    blocks.set_fast_conv3d(False)
    try:
        assert not same._fast_ok(x)
    finally:
        blocks.set_fast_conv3d(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not same._fast_ok(x)
        assert same(x).dtype == torch.bfloat16


def test_resblock3d_and_preact_block_shapes() -> None:
    rb = ResBlock3d(3, 6, dropout=0.2)
    assert rb(torch.randn(1, 3, 4, 8, 8)).shape == (1, 6, 4, 8, 8)
    pb = PreActResBlock2d(5, 7)
    assert isinstance(pb.skip, nn.Conv2d)
    assert pb(torch.randn(2, 5, 6, 6)).shape == (2, 7, 6, 6)
    assert isinstance(PreActResBlock2d(4, 4).skip, nn.Identity)
    assert CBAM(16)(torch.randn(2, 16, 5, 5)).shape == (2, 16, 5, 5)


@pytest.mark.parametrize(
    ("block", "layers", "widths", "os", "strides"),
    [
        ("basic", (1, 1, 1, 1), (4, 8, 8, 16), 16, [4, 8, 16, 16]),
        ("basic", (1, 1, 1, 1), (4, 8, 8, 16), 32, [4, 8, 16, 32]),
        ("basic", (1, 1, 1, 1), (4, 8, 8, 16), 8, [4, 8, 8, 8]),
        ("bottleneck", (1, 1, 1), (4, 4, 8), 16, [4, 8, 16]),
    ],
)
def test_resnet2d_strides_and_channels(
    block: str, layers: tuple, widths: tuple, os: int, strides: list[int]
) -> None:
    net = ResNet2d(block, layers, widths, 3, output_stride=os)
    assert net.strides == strides
    feats = net(torch.randn(1, 3, 64, 64))
    exp = 4 if block == "bottleneck" else 1
    for f, s, w in zip(feats, strides, widths, strict=True):
        assert f.shape == (1, w * exp, 64 // s, 64 // s)


def test_resnet2d_rejects_bad_config() -> None:
    with pytest.raises(ConfigError):
        ResNet2d("wide", (1,), (4,), 1)
    with pytest.raises(ConfigError):
        ResNet2d("basic", (1, 1), (4,), 1)
    with pytest.raises(ConfigError):
        ResNet2d("basic", (1,), (4,), 1, output_stride=4)


def test_resize2d_down_up_identity() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert resize2d(x, (4, 4)) is x
    down = resize2d(x, (2, 2))
    assert torch.allclose(down, torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    assert resize2d(x, (8, 6)).shape == (1, 1, 8, 6)
