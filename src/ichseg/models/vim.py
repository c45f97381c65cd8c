"""VIM — Volume Interaction Module: a residual 3D U-Net on {volume, hints, previous mask}.

Input ``(B, 4, D, H, W)`` = [volume, hint positive, hint negative, previous mask] on the VIM grid
(the composed model downsamples the slice-resolution tensors in-plane first). Output: volume mask
logits ``(B, 1, D, H, W)`` and the decoder features of the three finest levels
(:class:`VIMFeatures`: ``d1`` finest, ``d2``, ``d3``), which the FCM turns into 2D features.

Whole scans of any depth are supported: the input is zero-padded at the end of each axis to a
multiple of the total pooling factor and every output is cropped back (feature level ``l`` keeps
``ceil(D / depth_stride_l)`` slices, so ``k // depth_stride_l`` is a valid index for any ``k < D``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ichseg.errors import ConfigError, DimensionalityError
from ichseg.models.blocks import Conv3d, ResBlock3d, run_checkpointed

Pool3 = tuple[int, int, int]
SKIP_MODES: tuple[str, ...] = ("sum", "concat")


@dataclass
class VIMFeatures:
    """Multi-scale VIM decoder features (finest first), cropped to the input extent.

    Attributes:
        d1: ``(B, C1, D, h, w)`` decoder output of level 0 (VIM grid resolution).
        d2: ``(B, C2, ceil(D/s2), ceil(h/p2), ceil(w/p2))`` decoder output of level 1.
        d3: ``(B, C3, ceil(D/s3), ceil(h/p3), ceil(w/p3))`` decoder output of level 2.
        depth_strides: ``(1, s2, s3)``: slice ``k`` of the volume lies in depth index
            ``k // s`` of each level.
        plane_strides: ``(1, p2, p3)``: in-plane strides relative to the VIM grid.
        depth: number of slices ``D`` of the input volume.
    """

    d1: Tensor
    d2: Tensor
    d3: Tensor
    depth_strides: tuple[int, int, int]
    plane_strides: tuple[int, int, int]
    depth: int

    def levels(self) -> list[Tensor]:
        """``[d1, d2, d3]``."""
        return [self.d1, self.d2, self.d3]

    def detach(self) -> VIMFeatures:
        """Copy without autograd history (for caching between interaction rounds)."""
        return VIMFeatures(
            self.d1.detach(),
            self.d2.detach(),
            self.d3.detach(),
            self.depth_strides,
            self.plane_strides,
            self.depth,
        )


def validate_pools(pools: Sequence[Sequence[int]], levels: int) -> list[Pool3]:
    """Check per-level pooling factors (one ``(d, h, w)`` triple per level below the top)."""
    out: list[Pool3] = []
    for p in pools:
        t = tuple(int(v) for v in p)
        if len(t) != 3 or any(v not in (1, 2) for v in t):
            raise ConfigError(f"VIM pooling factors must be (d, h, w) triples of 1 or 2, got {p}")
        out.append((t[0], t[1], t[2]))
    if len(out) != levels - 1:
        raise ConfigError(f"VIM with {levels} levels needs {levels - 1} pooling triples")
    return out


class VIM(nn.Module):
    """Residual 3D U-Net.

    Args:
        in_channels: input channels (4 for ICH-HPINet).
        base: channels of level 0; level ``l`` has ``base * 2**l`` channels.
        levels: number of resolution levels (>= 3; 5 in the paper). With 3 levels, ``d3`` is the
            bottleneck (encoder) output.
        pools: pooling factor ``(d, h, w)`` entering each level 1..levels-1; default isotropic
            ``(2, 2, 2)``. Use ``(1, 2, 2)`` in early levels for thick (5–6 mm) slices.
        norm: ``"group"`` or ``"instance"``.
        dropout: dropout probability inside the residual blocks (off in eval mode).
        skip: how decoder and encoder features meet: ``"sum"`` (authors' code) or
            ``"concat"`` (paper text).
        out_channels: logit channels.
    """

    def __init__(
        self,
        in_channels: int = 4,
        base: int = 64,
        levels: int = 5,
        pools: Sequence[Sequence[int]] | None = None,
        *,
        norm: str = "group",
        dropout: float = 0.0,
        skip: str = "sum",
        out_channels: int = 1,
    ) -> None:
        super().__init__()
        if levels < 3:
            raise ConfigError(f"VIM needs at least 3 levels (for d1, d2, d3), got {levels}")
        if base < 1 or in_channels < 1:
            raise ConfigError("VIM base width and input channels must be positive")
        if skip not in SKIP_MODES:
            raise ConfigError(f"VIM skip must be one of {SKIP_MODES}, got {skip!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"VIM dropout must be in [0, 1), got {dropout}")
        pools_t = validate_pools(pools if pools is not None else [(2, 2, 2)] * (levels - 1), levels)
        self.in_channels = in_channels
        self.pools = pools_t
        self.skip = skip
        self.channels = [base * 2**lvl for lvl in range(levels)]
        self.depth_strides = [1]
        self.plane_strides = [1]
        for p in pools_t:
            self.depth_strides.append(self.depth_strides[-1] * p[0])
            self.plane_strides.append(self.plane_strides[-1] * p[1])
        if any(p[1] != p[2] for p in pools_t):
            raise ConfigError("VIM in-plane pooling must be the same along H and W")
        self.use_checkpoint = False

        self.pooling = nn.ModuleList([nn.MaxPool3d(p, stride=p) for p in pools_t])
        enc: list[nn.Module] = [
            ResBlock3d(in_channels, self.channels[0], norm=norm, dropout=dropout)
        ]
        for lvl in range(1, levels):
            enc.append(
                ResBlock3d(self.channels[lvl - 1], self.channels[lvl], norm=norm, dropout=dropout)
            )
        self.encoders = nn.ModuleList(enc)
        ups: list[nn.Module] = []
        decs: list[nn.Module] = []
        for lvl in range(levels - 2, -1, -1):
            ch = self.channels[lvl]
            ups.append(
                nn.ConvTranspose3d(self.channels[lvl + 1], ch, 3, stride=pools_t[lvl], padding=1)
            )
            in_ch = 2 * ch if skip == "concat" else ch
            decs.append(ResBlock3d(in_ch, ch, norm=norm, dropout=dropout))
        self.upconvs = nn.ModuleList(ups)
        self.decoders = nn.ModuleList(decs)
        self.head = Conv3d(self.channels[0], out_channels, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv3d | nn.ConvTranspose3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def depth_multiple(self) -> int:
        """Depth is padded internally to a multiple of this."""
        return self.depth_strides[-1]

    @property
    def plane_multiple(self) -> int:
        """Height/width are padded internally to a multiple of this."""
        return self.plane_strides[-1]

    def forward(self, x: Tensor) -> tuple[Tensor, VIMFeatures]:
        """``x (B, in_channels, D, H, W)`` -> (logits ``(B, out, D, H, W)``, :class:`VIMFeatures`)."""
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise DimensionalityError(
                f"VIM expects (B, {self.in_channels}, D, H, W), got {tuple(x.shape)}"
            )
        d, h, w = x.shape[-3:]
        md, mp = self.depth_multiple, self.plane_multiple
        pd, ph, pw = (-d) % md, (-h) % mp, (-w) % mp
        if pd or ph or pw:
            x = F.pad(x, (0, pw, 0, ph, 0, pd))

        skips: list[Tensor] = []
        y = x
        for lvl, enc in enumerate(self.encoders):
            if lvl > 0:
                y = self.pooling[lvl - 1](y)
            y = run_checkpointed(enc, y, enabled=self.use_checkpoint)
            skips.append(y)
        dec_out: list[Tensor] = []
        n_levels = len(self.encoders)
        for i, (up, dec) in enumerate(zip(self.upconvs, self.decoders, strict=True)):
            lvl = n_levels - 2 - i
            skip = skips[lvl]
            y = up(y, output_size=list(skip.shape[-3:]))
            y = merge_skip(y, skip, self.skip)
            y = run_checkpointed(dec, y, enabled=self.use_checkpoint)
            dec_out.append(y)
        logits = self.head(y)[..., :d, :h, :w]

        # per-level features: decoder output, or the bottleneck for the lowest level
        level_feats = [*reversed(dec_out), skips[-1]]
        crops = []
        for lvl in (0, 1, 2):
            f = level_feats[lvl]
            sd, sp = self.depth_strides[lvl], self.plane_strides[lvl]
            crops.append(f[..., : math.ceil(d / sd), : math.ceil(h / sp), : math.ceil(w / sp)])
        feats = VIMFeatures(
            d1=crops[0],
            d2=crops[1],
            d3=crops[2],
            depth_strides=(1, self.depth_strides[1], self.depth_strides[2]),
            plane_strides=(1, self.plane_strides[1], self.plane_strides[2]),
            depth=d,
        )
        return logits, feats


def merge_skip(y: Tensor, skip: Tensor, mode: str) -> Tensor:
    """Merge decoder ``y`` with encoder ``skip`` by channel concatenation or summation."""
    if mode == "concat":
        return torch.cat([y, skip], dim=1)
    return y + skip
