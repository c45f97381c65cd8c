"""FCM — Feature Convert Module: 3D VIM decoder features -> 2D features of one target slice.

For a target slice ``k`` of the full-depth volume and each VIM level ``l`` (``d1`` finest, ``d2``,
``d3``):

1. take depth index ``k // s_l`` of that level (``s_l`` = the level's depth stride);
2. if the level's depth is pooled (``s_l > 1``), append a one-hot "sub-slice position" map with
   ``s_l`` constant channels (a 1 in channel ``k % s_l``);
3. adapt with the level's own 1x1 convolution + ReLU (on every level, including the finest);
4. only then resize in-plane to the 2D resolution the MPFFM decoder needs (never the 3D map).

Auxiliary mask heads on the two coarser levels (``d3`` and ``d2``, sharing their last residual
block and output convolution as in the authors' code) give logits at slice resolution for the
feature-convert loss (FCL).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ichseg.errors import ConfigError, PromptError
from ichseg.models.blocks import PreActResBlock2d, resize2d
from ichseg.models.vim import VIMFeatures


@dataclass
class FCMOutput:
    """FCM result for ``N`` target slices (ordered k-major: row ``i * B + b`` is target ``i`` of
    batch item ``b``).

    Attributes:
        features: ``[f1, f2, f3]``, each ``(N*B, C_l, h, w)`` at the requested in-plane sizes.
        aux_logits: ``[from d3, from d2]``, each ``(N*B, 1, H, W)`` at slice resolution; empty when
            the auxiliary heads were not requested.
    """

    features: list[Tensor]
    aux_logits: list[Tensor] = field(default_factory=list)

    @property
    def channels(self) -> int:
        """Total channels of the converted features."""
        return sum(f.shape[1] for f in self.features)


def _as_index_list(k: int | Sequence[int]) -> list[int]:
    ks = [k] if isinstance(k, int) else list(k)
    if not ks:
        raise PromptError("no target slice index given")
    return [int(v) for v in ks]


class FCM(nn.Module):
    """Feature convert module.

    Args:
        in_channels: channels of the VIM levels ``(C1, C2, C3)``.
        out_channels: channels after adaptation ``(O1, O2, O3)``.
        depth_strides: depth stride of each level ``(1, s2, s3)`` (from the VIM's pooling).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: Sequence[int],
        depth_strides: Sequence[int],
    ) -> None:
        super().__init__()
        if not (len(in_channels) == len(out_channels) == len(depth_strides) == 3):
            raise ConfigError("FCM needs exactly three levels (d1, d2, d3)")
        if any(c < 1 for c in (*in_channels, *out_channels)) or any(s < 1 for s in depth_strides):
            raise ConfigError("FCM channels and depth strides must be positive")
        self.depth_strides = tuple(int(s) for s in depth_strides)
        self.out_channels = tuple(int(c) for c in out_channels)
        self.adapters = nn.ModuleList()
        for c_in, c_out, s in zip(in_channels, out_channels, self.depth_strides, strict=True):
            extra = s if s > 1 else 0
            self.adapters.append(nn.Sequential(nn.Conv2d(c_in + extra, c_out, 1), nn.ReLU()))
        o2, o3 = self.out_channels[1], self.out_channels[2]
        self.aux_in3 = PreActResBlock2d(o3, o2)
        self.aux_shared = PreActResBlock2d(o2, o2)
        self.aux_out = nn.Conv2d(o2, 1, 3, padding=1)

    def select(self, feats: VIMFeatures, k: int | Sequence[int]) -> list[Tensor]:
        """Slice and adapt every level for targets ``k`` at the VIM levels' own in-plane size.

        Returns ``[a1, a2, a3]`` with ``a_l`` of shape ``(N*B, O_l, h_l, w_l)``.
        """
        ks = _as_index_list(k)
        if tuple(feats.depth_strides) != self.depth_strides:
            raise ConfigError(
                f"VIM features have depth strides {feats.depth_strides}, FCM was built for "
                f"{self.depth_strides}"
            )
        bad = [v for v in ks if not 0 <= v < feats.depth]
        if bad:
            raise PromptError(
                f"target slice index {bad[0]} outside the volume (0..{feats.depth - 1})"
            )
        out: list[Tensor] = []
        for level, adapter, s in zip(
            feats.levels(), self.adapters, self.depth_strides, strict=True
        ):
            b, c, _, h, w = level.shape
            idx = torch.tensor([v // s for v in ks], device=level.device)
            sel = level.index_select(2, idx)  # (B, C, N, h, w)
            sel = sel.permute(2, 0, 1, 3, 4).reshape(len(ks) * b, c, h, w)
            if s > 1:
                pos = torch.zeros(len(ks), s, dtype=sel.dtype, device=sel.device)
                pos[torch.arange(len(ks)), torch.tensor([v % s for v in ks])] = 1.0
                pos = pos.repeat_interleave(b, dim=0)[:, :, None, None].expand(-1, -1, h, w)
                sel = torch.cat([sel, pos], dim=1)
            out.append(adapter(sel))
        return out

    def aux_heads(self, adapted: Sequence[Tensor], slice_size: Sequence[int]) -> list[Tensor]:
        """Auxiliary logits ``[from d3, from d2]`` at ``slice_size`` from adapted features."""
        a2, a3 = adapted[1], adapted[2]
        y3 = resize2d(self.aux_in3(a3), a2.shape[-2:])
        y3 = self.aux_out(self.aux_shared(y3))
        y2 = self.aux_out(self.aux_shared(a2))
        return [resize2d(y3, slice_size), resize2d(y2, slice_size)]

    def forward(
        self,
        feats: VIMFeatures,
        k: int | Sequence[int],
        out_sizes: Sequence[Sequence[int]],
        slice_size: Sequence[int] | None = None,
    ) -> FCMOutput:
        """Convert features for targets ``k``.

        Args:
            feats: VIM features of the whole volume.
            k: one slice index or a sequence of them (batched, k-major).
            out_sizes: in-plane size ``(h, w)`` for each of the three converted levels.
            slice_size: ``(H, W)`` of the slices; when given, the auxiliary logits are computed.
        """
        if len(out_sizes) != 3:
            raise ConfigError("FCM needs one output size per level (3)")
        adapted = self.select(feats, k)
        aux = self.aux_heads(adapted, slice_size) if slice_size is not None else []
        resized = [resize2d(a, size) for a, size in zip(adapted, out_sizes, strict=True)]
        return FCMOutput(features=resized, aux_logits=aux)
