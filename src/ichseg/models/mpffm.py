"""MPFFM — Multi-Propagation Feature Fusion Module (STCN-style space-time memory read).

Pieces, usable one by one by an interactive engine that caches per-volume encodings:

* :meth:`MPFFM.encode_key` — key encoder shared by query (``S_k``) and memory (``S_r``) slices:
  ResNet trunk to stride 16 on the 1-channel slice -> ``f4, f8, f16``; key projection (3x3 conv ->
  ``key_dim``) and query value projection (3x3 conv -> ``value_dim``). Heavy; run once per volume
  for all slices, batched over slices.
* :meth:`MPFFM.encode_value` — value (memory) encoder on ``(slice, mask probability)`` plus the
  slice's ``f16`` -> value ``(N, value_dim, H/16, W/16)``; fusion block = residual block -> CBAM
  (added back as a residual) -> residual block.
* :meth:`MPFFM.read_memory` — affinity between all memory positions (of all ``T`` memory frames)
  and every query position, ``(-|k_m|^2 + 2 k_m.k_q - |k_q|^2) / sqrt(key_dim)``, softmax over the
  memory axis (optionally restricted to the top-k entries), then ``values @ affinity``.
* :meth:`MPFFM.decode` — mask decoder fusing ``[readout, query value]`` at 1/16, the query ``f8``
  skip at 1/8 and ``[query f4, FCM features F_k]`` concatenated at 1/4 -> logits at slice size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ichseg.errors import ConfigError, DimensionalityError
from ichseg.models.blocks import CBAM, PreActResBlock2d
from ichseg.models.resnet2d import ResNet2d


@dataclass
class KeyFeatures:
    """Key-encoder output for ``N`` slices (``h = H/16``).

    Attributes:
        key: ``(N, key_dim, h, w)`` affinity key.
        query_value: ``(N, value_dim, h, w)`` value used when the slice is the query (``V_k``).
        f16: ``(N, C16, h, w)`` trunk output at stride 16 (also fed to the value encoder).
        f8: ``(N, C8, 2h, 2w)`` stride-8 trunk features (decoder skip).
        f4: ``(N, C4, 4h, 4w)`` stride-4 trunk features (decoder skip).
    """

    key: Tensor
    query_value: Tensor
    f16: Tensor
    f8: Tensor
    f4: Tensor

    def __len__(self) -> int:
        return int(self.key.shape[0])

    def index(self, idx: int | Sequence[int] | slice | Tensor) -> KeyFeatures:
        """Sub-batch (an int keeps the batch dimension: ``index(3)`` has ``N = 1``)."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        elif not isinstance(idx, slice | Tensor):
            idx = torch.as_tensor(list(idx), dtype=torch.long, device=self.key.device)
        return KeyFeatures(
            self.key[idx], self.query_value[idx], self.f16[idx], self.f8[idx], self.f4[idx]
        )

    @staticmethod
    def cat(parts: Sequence[KeyFeatures]) -> KeyFeatures:
        """Concatenate along the slice axis."""
        return KeyFeatures(
            torch.cat([p.key for p in parts]),
            torch.cat([p.query_value for p in parts]),
            torch.cat([p.f16 for p in parts]),
            torch.cat([p.f8 for p in parts]),
            torch.cat([p.f4 for p in parts]),
        )

    def detach(self) -> KeyFeatures:
        """Copy without autograd history."""
        return KeyFeatures(
            self.key.detach(),
            self.query_value.detach(),
            self.f16.detach(),
            self.f8.detach(),
            self.f4.detach(),
        )


def compute_affinity(mem_key: Tensor, query_key: Tensor, top_k: int | None = None) -> Tensor:
    """Softmax-normalised affinity between memory and query positions.

    Args:
        mem_key: ``(B, C, M)`` keys of all memory positions (``M = T * h * w``).
        query_key: ``(B, C, Q)`` keys of the query positions.
        top_k: keep only the ``top_k`` largest entries per query position (others exactly 0)
            before the softmax; ``None`` (or ``>= M``) uses all ``M``.

    Returns:
        ``(B, M, Q)``; every column (query position) sums to 1. Computed in float32 with
        autocast disabled.
    """
    if mem_key.dim() != 3 or query_key.dim() != 3 or mem_key.shape[1] != query_key.shape[1]:
        raise DimensionalityError(
            f"affinity needs (B, C, M) and (B, C, Q) keys, got {tuple(mem_key.shape)} and "
            f"{tuple(query_key.shape)}"
        )
    if top_k is not None and top_k < 1:
        raise ConfigError(f"top_k must be >= 1 or None, got {top_k}")
    dev = mem_key.device.type
    no_autocast = torch.autocast(dev, enabled=False) if dev in ("cpu", "cuda") else nullcontext()
    with no_autocast:
        mk, qk = mem_key.float(), query_key.float()
        dim = mk.shape[1]
        a = 2.0 * torch.bmm(mk.transpose(1, 2), qk)  # (B, M, Q)
        a = a - mk.pow(2).sum(1).unsqueeze(2) - qk.pow(2).sum(1).unsqueeze(1)
        a = a / math.sqrt(dim)
        if top_k is not None and top_k < a.shape[1]:
            vals, idx = torch.topk(a, top_k, dim=1)
            return torch.zeros_like(a).scatter_(1, idx, torch.softmax(vals, dim=1))
        return torch.softmax(a, dim=1)


def _flatten_memory(x: Tensor, n: int) -> Tensor:
    """``(B or 1, T, C, h, w)`` -> ``(n, C, T*h*w)`` (broadcasting a batch of 1)."""
    if x.dim() != 5:
        raise DimensionalityError(f"memory tensors must be (B, T, C, h, w), got {tuple(x.shape)}")
    b, t, c, h, w = x.shape
    if b not in (1, n):
        raise DimensionalityError(f"memory batch {b} does not match query batch {n}")
    flat = x.permute(0, 2, 1, 3, 4).reshape(b, c, t * h * w)
    return flat.expand(n, -1, -1) if b != n else flat


class KeyEncoder(nn.Module):
    """ResNet trunk to stride 16 on a 1-channel slice, plus key and query-value projections."""

    def __init__(
        self,
        block: str,
        layers: Sequence[int],
        widths: Sequence[int],
        key_dim: int,
        value_dim: int,
        norm: str = "group",
    ) -> None:
        super().__init__()
        if len(layers) != 3:
            raise ConfigError("the key encoder trunk needs exactly 3 stages (to stride 16)")
        self.trunk = ResNet2d(block, layers, widths, 1, norm=norm, output_stride=16)
        c16 = self.trunk.out_channels[-1]
        self.key_proj = nn.Conv2d(c16, key_dim, 3, padding=1)
        self.value_proj = nn.Conv2d(c16, value_dim, 3, padding=1)
        nn.init.orthogonal_(self.key_proj.weight)
        nn.init.zeros_(self.key_proj.bias)
        self.out_channels = list(self.trunk.out_channels)

    def forward(self, x: Tensor) -> KeyFeatures:
        f4, f8, f16 = self.trunk(x)
        return KeyFeatures(self.key_proj(f16), self.value_proj(f16), f16, f8, f4)


class ValueEncoder(nn.Module):
    """ResNet trunk to stride 16 on ``[slice, mask]`` fused with the slice's key ``f16``."""

    def __init__(
        self,
        block: str,
        layers: Sequence[int],
        widths: Sequence[int],
        key_f16_channels: int,
        value_dim: int,
        norm: str = "group",
    ) -> None:
        super().__init__()
        if len(layers) != 3:
            raise ConfigError("the value encoder trunk needs exactly 3 stages (to stride 16)")
        self.trunk = ResNet2d(block, layers, widths, 2, norm=norm, output_stride=16)
        c = self.trunk.out_channels[-1] + key_f16_channels
        self.block1 = PreActResBlock2d(c, value_dim)
        self.attention = CBAM(value_dim)
        self.block2 = PreActResBlock2d(value_dim, value_dim)
        self.use_checkpoint = False

    def forward(self, slices: Tensor, masks: Tensor, key_f16: Tensor) -> Tensor:
        self.trunk.use_checkpoint = self.use_checkpoint
        g16 = self.trunk(torch.cat([slices, masks], dim=1))[-1]
        y = self.block1(torch.cat([g16, key_f16], dim=1))
        return self.block2(y + self.attention(y))


class MaskDecoder(nn.Module):
    """Decoder: ``[readout, query value]`` at 1/16 -> 1/8 (query ``f8`` skip) -> 1/4 (skip =
    ``[query f4, fused FCM features]``) -> 3x3 conv to 1 logit channel -> bilinear to slice size."""

    def __init__(
        self,
        value_dim: int,
        f8_channels: int,
        f4_channels: int,
        fused_channels: int,
        widths: Sequence[int],
    ) -> None:
        super().__init__()
        if len(widths) != 3 or any(w < 1 for w in widths):
            raise ConfigError(f"decoder widths must be three positive ints, got {tuple(widths)}")
        d16, d8, d4 = widths
        self.fused_channels = fused_channels
        self.compress = PreActResBlock2d(2 * value_dim, d16)
        self.skip8 = nn.Conv2d(f8_channels, d16, 3, padding=1)
        self.block8 = PreActResBlock2d(d16, d8)
        self.skip4 = nn.Conv2d(f4_channels + fused_channels, d8, 3, padding=1)
        self.block4 = PreActResBlock2d(d8, d4)
        self.pred = nn.Conv2d(d4, 1, 3, padding=1)

    def forward(
        self,
        readout: Tensor,
        query: KeyFeatures,
        fused: Sequence[Tensor] | None,
        out_size: Sequence[int],
    ) -> Tensor:
        x = self.compress(torch.cat([readout, query.query_value], dim=1))
        x = F.interpolate(x, size=query.f8.shape[-2:], mode="bilinear", align_corners=False)
        x = self.block8(self.skip8(query.f8) + x)
        n_fused = sum(f.shape[1] for f in fused) if fused else 0
        if n_fused != self.fused_channels:
            raise ConfigError(
                f"decoder was built for {self.fused_channels} fused feature channels, got {n_fused}"
            )
        skip = torch.cat([query.f4, *fused], dim=1) if fused else query.f4
        x = F.interpolate(x, size=query.f4.shape[-2:], mode="bilinear", align_corners=False)
        x = self.block4(self.skip4(skip) + x)
        x = self.pred(F.relu(x))
        return F.interpolate(x, size=tuple(out_size), mode="bilinear", align_corners=False)


class MPFFM(nn.Module):
    """Memory-based slice propagation with 3D feature fusion.

    Args:
        key_block, key_layers, key_widths: key-encoder ResNet trunk (3 stages).
        value_block, value_layers, value_widths: value-encoder ResNet trunk (3 stages).
        key_dim: affinity key channels (64 in the paper preset).
        value_dim: memory/query value channels (512 in the paper preset).
        decoder_widths: decoder channels at 1/16, 1/8, 1/4.
        fused_channels: channels of the FCM features concatenated at 1/4 (0: no fusion).
        top_k: top-k affinity (``None``: plain softmax over all memory positions).
        use_affinity: ``False`` replaces the affinity read by the position-wise mean of the memory
            values over the ``T`` frames (the keys are then unused).
        norm: ``"group"`` or ``"instance"`` for the ResNet trunks.
    """

    def __init__(
        self,
        *,
        key_block: str = "bottleneck",
        key_layers: Sequence[int] = (3, 4, 6),
        key_widths: Sequence[int] = (64, 128, 256),
        value_block: str = "basic",
        value_layers: Sequence[int] = (2, 2, 2),
        value_widths: Sequence[int] = (64, 128, 256),
        key_dim: int = 64,
        value_dim: int = 512,
        decoder_widths: Sequence[int] = (512, 256, 256),
        fused_channels: int = 0,
        top_k: int | None = 20,
        use_affinity: bool = True,
        norm: str = "group",
    ) -> None:
        super().__init__()
        if key_dim < 1 or value_dim < 1 or fused_channels < 0:
            raise ConfigError("MPFFM key/value dims must be positive and fused_channels >= 0")
        if top_k is not None and top_k < 1:
            raise ConfigError(f"top_k must be >= 1 or None, got {top_k}")
        self.key_dim, self.value_dim = key_dim, value_dim
        self.top_k = top_k
        self.use_affinity = use_affinity
        self.key_encoder = KeyEncoder(key_block, key_layers, key_widths, key_dim, value_dim, norm)
        c4, c8, c16 = self.key_encoder.out_channels
        self.value_encoder = ValueEncoder(
            value_block, value_layers, value_widths, c16, value_dim, norm
        )
        self.decoder = MaskDecoder(value_dim, c8, c4, fused_channels, decoder_widths)
        self.use_checkpoint = False

    def encode_key(self, slices: Tensor) -> KeyFeatures:
        """``slices (N, 1, H, W)`` -> :class:`KeyFeatures` (H, W multiples of 16 recommended)."""
        if slices.dim() != 4 or slices.shape[1] != 1:
            raise DimensionalityError(f"encode_key expects (N, 1, H, W), got {tuple(slices.shape)}")
        self.key_encoder.trunk.use_checkpoint = self.use_checkpoint
        return self.key_encoder(slices)

    def encode_value(
        self, slices: Tensor, mask_prob: Tensor, key_feats: KeyFeatures | Tensor
    ) -> Tensor:
        """Memory value of ``N`` slices.

        Args:
            slices: ``(N, 1, H, W)`` images.
            mask_prob: ``(N, 1, H, W)`` mask probabilities in [0, 1] (soft: gradients flow).
            key_feats: the same slices' :class:`KeyFeatures` (or just their ``f16``).

        Returns:
            ``(N, value_dim, H/16, W/16)``.
        """
        f16 = key_feats.f16 if isinstance(key_feats, KeyFeatures) else key_feats
        if slices.shape != mask_prob.shape or slices.dim() != 4 or slices.shape[1] != 1:
            raise DimensionalityError(
                f"encode_value expects matching (N, 1, H, W) slices and masks, got "
                f"{tuple(slices.shape)} and {tuple(mask_prob.shape)}"
            )
        if f16.shape[0] != slices.shape[0]:
            raise DimensionalityError("key features and slices differ in batch size")
        self.value_encoder.use_checkpoint = self.use_checkpoint
        return self.value_encoder(slices, mask_prob, f16)

    def read_memory(self, mem_keys: Tensor, mem_values: Tensor, query_key: Tensor) -> Tensor:
        """Memory readout for ``B`` queries.

        Args:
            mem_keys: ``(B or 1, T, key_dim, h, w)`` keys of ``T`` memory frames.
            mem_values: ``(B or 1, T, value_dim, h, w)`` their values.
            query_key: ``(B, key_dim, h, w)``.

        Returns:
            ``(B, value_dim, h, w)``: ``V_mem @ A`` (or the frame-mean of the values when
            ``use_affinity`` is off).
        """
        if query_key.dim() != 4:
            raise DimensionalityError(
                f"query key must be (B, C, h, w), got {tuple(query_key.shape)}"
            )
        n, _, h, w = query_key.shape
        if mem_values.dim() != 5 or mem_values.shape[-2:] != (h, w):
            raise DimensionalityError(
                f"memory values {tuple(mem_values.shape)} do not match query grid {(h, w)}"
            )
        if not self.use_affinity:
            if mem_values.shape[0] not in (1, n):
                raise DimensionalityError("memory batch does not match query batch")
            return mem_values.mean(dim=1).expand(n, -1, -1, -1)
        if mem_keys.shape[:2] != mem_values.shape[:2] or mem_keys.shape[-2:] != (h, w):
            raise DimensionalityError(
                f"memory keys {tuple(mem_keys.shape)} and values {tuple(mem_values.shape)} disagree"
            )
        mk = _flatten_memory(mem_keys, n)
        mv = _flatten_memory(mem_values, n)
        aff = compute_affinity(mk, query_key.reshape(n, query_key.shape[1], h * w), self.top_k)
        out = torch.bmm(mv, aff.to(mv.dtype))
        return out.reshape(n, mv.shape[1], h, w)

    def decode(
        self,
        readout: Tensor,
        query: KeyFeatures,
        fcm_feats: Sequence[Tensor] | None,
        out_size: Sequence[int],
    ) -> Tensor:
        """Mask logits ``(N, 1, *out_size)`` from the readout ``(N, value_dim, h, w)``, the query
        key features and the FCM features (each ``(N, C_l, H/4, W/4)``; ``None`` without fusion)."""
        return self.decoder(readout, query, fcm_feats, out_size)

    def forward(
        self,
        mem_keys: Tensor,
        mem_values: Tensor,
        query: KeyFeatures,
        fcm_feats: Sequence[Tensor] | None,
        out_size: Sequence[int],
    ) -> Tensor:
        """Read memory for ``query`` and decode: logits ``(N, 1, *out_size)``."""
        readout = self.read_memory(mem_keys, mem_values, query.key)
        return self.decode(readout, query, fcm_feats, out_size)


__all__ = [
    "MPFFM",
    "KeyEncoder",
    "KeyFeatures",
    "MaskDecoder",
    "ValueEncoder",
    "compute_affinity",
]
