"""Shared building blocks: normalisation factory, conv blocks, residual blocks, CBAM, resizing.

All networks in :mod:`ichseg.models` use GroupNorm or InstanceNorm (never BatchNorm: the
ICH-HPINet networks are trained with batch size 1). Dropouts are registered modules, so
``model.eval()`` switches them off.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from ichseg.errors import ConfigError

NormKind = Literal["group", "instance"]
NORM_KINDS: tuple[str, ...] = ("group", "instance")

_T = TypeVar("_T")


def group_count(channels: int, max_groups: int = 32) -> int:
    """Number of GroupNorm groups for ``channels``: the largest divisor of ``channels`` that is
    at most ``max_groups`` and leaves at least two channels per group (1 for ``channels < 2``)."""
    if channels < 1:
        raise ConfigError(f"channel count must be positive, got {channels}")
    best = 1
    for g in range(1, min(max_groups, channels // 2) + 1):
        if channels % g == 0:
            best = g
    return best


def make_norm(kind: str, channels: int, dims: int) -> nn.Module:
    """GroupNorm (``"group"``) or affine InstanceNorm (``"instance"``) for 2D or 3D maps."""
    if kind == "group":
        return nn.GroupNorm(group_count(channels), channels)
    if kind == "instance":
        if dims == 2:
            return nn.InstanceNorm2d(channels, affine=True)
        if dims == 3:
            return nn.InstanceNorm3d(channels, affine=True)
        raise ConfigError(f"dims must be 2 or 3, got {dims}")
    raise ConfigError(f"unknown norm {kind!r}; expected one of {NORM_KINDS}")


_FAST_CONV3D = True


def set_fast_conv3d(enabled: bool) -> None:
    """Globally enable/disable the oneDNN route of :class:`Conv3d` (for comparisons)."""
    global _FAST_CONV3D
    _FAST_CONV3D = bool(enabled)


class _SameConv3dFunction(torch.autograd.Function):
    """Stride-1 'same' 3D convolution whose forward *and* backward run on oneDNN.

    For batch-1 volumes PyTorch's backend heuristic picks the slow im2col kernels (in the forward
    for small maps, and in the backward); here both gradients are themselves convolutions:
    ``grad_input = conv(grad_out, flipped transposed weight)`` and ``grad_weight =
    conv(padded input with channels as batch, grad_out with batch as channels)``.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, padding: tuple[int, int, int]
    ) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        ctx.has_bias = bias is not None
        ones = (1, 1, 1)
        return torch.mkldnn_convolution(x.contiguous(), weight, bias, padding, ones, ones, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        pad = ctx.padding
        ones = (1, 1, 1)
        g = grad_out.contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            w_t = weight.flip(2, 3, 4).transpose(0, 1).contiguous()
            grad_x = torch.mkldnn_convolution(g, w_t, None, pad, ones, ones, 1)
        if ctx.needs_input_grad[1]:
            xp = F.pad(x, (pad[2], pad[2], pad[1], pad[1], pad[0], pad[0]))
            gw = torch.mkldnn_convolution(
                xp.transpose(0, 1).contiguous(),
                g.transpose(0, 1).contiguous(),
                None,
                (0, 0, 0),
                ones,
                ones,
                1,
            )
            grad_w = gw.transpose(0, 1).contiguous()
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum(dim=(0, 2, 3, 4))
        return grad_x, grad_w, grad_b, None


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` that runs stride-1 'same' convolutions on CPU fp32 through oneDNN.

    PyTorch's backend choice for batch-1 3D convolutions on CPU falls onto slow im2col kernels
    (forward for small maps, and the backward); :class:`_SameConv3dFunction` computes the same
    convolution and its gradients with ``torch.mkldnn_convolution`` several times faster.
    Outputs and gradients agree with ``nn.Conv3d`` to float rounding (checked in the tests).
    Other configurations (strides, autocast, GPU) use the stock implementation.
    """

    def _fast_ok(self, x: Tensor) -> bool:
        k = self.kernel_size
        return (
            _FAST_CONV3D
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and x.dim() == 5
            and self.groups == 1
            and self.padding_mode == "zeros"
            and tuple(self.stride) == (1, 1, 1)
            and tuple(self.dilation) == (1, 1, 1)
            and all(kk % 2 == 1 for kk in k)
            and tuple(self.padding) == tuple(kk // 2 for kk in k)
            and not torch.is_autocast_enabled("cpu")
            and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled
        )

    def forward(self, x: Tensor) -> Tensor:
        if self._fast_ok(x):
            pad = (int(self.padding[0]), int(self.padding[1]), int(self.padding[2]))
            return _SameConv3dFunction.apply(x, self.weight, self.bias, pad)
        return super().forward(x)


def run_checkpointed(fn: Callable[..., _T], *args: Tensor, enabled: bool) -> _T:
    """Call ``fn(*args)``, through non-reentrant activation checkpointing when ``enabled`` and
    gradients are being recorded (works under autocast; dropout RNG state is preserved)."""
    if enabled and torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


class ConvNormAct(nn.Sequential):
    """``conv -> norm -> ReLU`` for 2D (``dims=2``) or 3D (``dims=3``) maps."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        *,
        dims: int = 2,
        stride: int = 1,
        dilation: int = 1,
        norm: str = "group",
        act: bool = True,
    ) -> None:
        conv_cls = nn.Conv2d if dims == 2 else Conv3d
        padding = dilation * (kernel_size // 2)
        layers: list[nn.Module] = [
            conv_cls(
                in_ch,
                out_ch,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                bias=False,
            ),
            make_norm(norm, out_ch, dims),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResBlock3d(nn.Module):
    """Residual 3D block with three 3x3x3 convolutions (residual U-Net style).

    ``conv1`` maps ``in_ch -> out_ch``; its output is the residual that is added back after
    ``conv3`` (so no projection shortcut is needed); ReLU after the sum. Dropout (a registered
    module) follows the first and second convolution.
    """

    def __init__(self, in_ch: int, out_ch: int, *, norm: str = "group", dropout: float = 0.0):
        super().__init__()
        self.conv1 = ConvNormAct(in_ch, out_ch, 3, dims=3, norm=norm)
        self.drop1 = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = ConvNormAct(out_ch, out_ch, 3, dims=3, norm=norm)
        self.drop2 = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv3 = ConvNormAct(out_ch, out_ch, 3, dims=3, norm=norm, act=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        res = self.conv1(x)
        y = self.conv2(self.drop1(res))
        y = self.conv3(self.drop2(y))
        return self.act(y + res)


class PreActResBlock2d(nn.Module):
    """Pre-activation 2D residual block ``ReLU -> conv3x3 -> ReLU -> conv3x3`` plus a skip that is
    a 3x3 convolution when the channel count changes (STCN decoder style, no normalisation)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip: nn.Module = (
            nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 3, padding=1)
        )

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(F.relu(x))
        y = self.conv2(F.relu(y))
        return y + self.skip(x)


class ChannelGate(nn.Module):
    """CBAM channel attention: shared MLP on average- and max-pooled descriptors."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Flatten(), nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels)
        )

    def forward(self, x: Tensor) -> Tensor:
        att = self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1))
        return x * torch.sigmoid(att)[:, :, None, None]


class SpatialGate(nn.Module):
    """CBAM spatial attention: 7x7 conv on the channel-wise max and mean maps."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        desc = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(desc))


class CBAM(nn.Module):
    """Convolutional block attention module: channel gate, then spatial gate."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.channel = ChannelGate(channels, reduction)
        self.spatial = SpatialGate()

    def forward(self, x: Tensor) -> Tensor:
        return self.spatial(self.channel(x))


def resize2d(x: Tensor, size: Sequence[int]) -> Tensor:
    """Resize ``(N, C, H, W)`` to ``size``: area averaging when shrinking both axes, bilinear
    otherwise; identity when the size already matches."""
    h, w = int(size[0]), int(size[1])
    if x.shape[-2:] == (h, w):
        return x
    if h <= x.shape[-2] and w <= x.shape[-1]:
        return F.adaptive_avg_pool2d(x, (h, w))
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
