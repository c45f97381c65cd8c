"""SIM — Slice Interaction Module: DeepLabV3 on {slice, 2-channel hints, previous slice mask}.

Own ResNet backbone (:class:`~ichseg.models.resnet2d.ResNet2d`) at output stride 16 (last stage
dilated), an ASPP head with a real global-average-pooling image branch, GroupNorm everywhere, and
bilinear upsampling of the logits to the input size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ichseg.errors import ConfigError, DimensionalityError
from ichseg.models.blocks import ConvNormAct, make_norm, run_checkpointed
from ichseg.models.resnet2d import ResNet2d


class ASPPPooling(nn.Module):
    """Image-level branch: global average pooling -> 1x1 conv -> GroupNorm -> ReLU -> broadcast.

    GroupNorm (not InstanceNorm) is used here because the pooled map is 1x1.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.norm = make_norm("group", out_ch, 2)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self.norm(self.conv(F.adaptive_avg_pool2d(x, 1))))
        return y.expand(-1, -1, x.shape[-2], x.shape[-1])


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1 branch, one 3x3 branch per rate, image pooling;
    concatenation -> 1x1 projection -> dropout."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int = 256,
        rates: Sequence[int] = (6, 12, 18),
        *,
        norm: str = "group",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        branches: list[nn.Module] = [ConvNormAct(in_ch, out_ch, 1, norm=norm)]
        branches += [ConvNormAct(in_ch, out_ch, 3, dilation=r, norm=norm) for r in rates]
        branches.append(ASPPPooling(in_ch, out_ch))
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(
            ConvNormAct(out_ch * len(branches), out_ch, 1, norm=norm), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.project(torch.cat([b(x) for b in self.branches], dim=1))


class SIM(nn.Module):
    """DeepLabV3 slice network.

    Args:
        in_channels: input channels (4: slice, hint positive, hint negative, previous mask).
        block, layers, widths: ResNet backbone definition (see :class:`ResNet2d`).
        aspp_channels: ASPP width (256 in the paper preset).
        aspp_rates: dilation rates of the 3x3 ASPP branches (6, 12, 18 at output stride 16).
        output_stride: backbone output stride (16).
        norm: ``"group"`` or ``"instance"``.
        out_channels: logit channels.

    ``forward(x (N, in_channels, H, W)) -> logits (N, out_channels, H, W)``.
    """

    def __init__(
        self,
        in_channels: int = 4,
        *,
        block: str = "bottleneck",
        layers: Sequence[int] = (3, 4, 6, 3),
        widths: Sequence[int] = (64, 128, 256, 512),
        aspp_channels: int = 256,
        aspp_rates: Sequence[int] = (6, 12, 18),
        output_stride: int = 16,
        norm: str = "group",
        out_channels: int = 1,
    ) -> None:
        super().__init__()
        if aspp_channels < 1:
            raise ConfigError(f"ASPP channels must be positive, got {aspp_channels}")
        self.in_channels = in_channels
        self.backbone = ResNet2d(
            block, layers, widths, in_channels, norm=norm, output_stride=output_stride
        )
        self.aspp = ASPP(self.backbone.out_channels[-1], aspp_channels, aspp_rates, norm=norm)
        self.head = nn.Sequential(
            ConvNormAct(aspp_channels, aspp_channels, 3, norm=norm),
            nn.Conv2d(aspp_channels, out_channels, 1),
        )
        self.use_checkpoint = False

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise DimensionalityError(
                f"SIM expects (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        self.backbone.use_checkpoint = self.use_checkpoint
        feats = self.backbone(x)
        y = run_checkpointed(self.aspp, feats[-1], enabled=self.use_checkpoint)
        y = self.head(y)
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
