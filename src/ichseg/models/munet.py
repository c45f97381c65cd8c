"""MUNet (IHSNet, Sci. Rep. 2025): multi-task 2D hemorrhage segmentation and subtype classification.

Architecture (``docs/munet.md`` lists every choice made where the paper is vague):

* **Encoder** — five CBL stages C1..C5 (Conv-BatchNorm-LeakyReLU). Each stage starts with a
  stride-2 3x3 CBL in place of max-pooling (the paper's "special convolution layer") followed by
  ``blocks_per_stage - 1`` stride-1 3x3 CBLs. A 256x256 input gives C1..C5 at 128, 64, 32, 16
  and 8 pixels with ``widths`` channels (paper: 64, 128, 256, 512, 1024). Padding is 1 (the
  paper's "padding 0" would not halve 256 exactly).
* **Decoder** — with ``fpn=True`` (the paper's feature pyramid), top-down: the coarser decoder
  map is upsampled (bilinear, no transposed convolution), concatenated with the encoder map of
  that level, fused by a 1x1 CBL and refined by a 3x3 CBL (X5 = C5 reduced, then X4..X1). With
  ``fpn=False`` (the ablation "MUNet + SMOTE" of Table 8) the same decoder runs without the
  lateral encoder features: plain progressive upsampling of C5.
* **Segmentation head** — a 1x1 convolution over ``num_seg_classes`` (background + EDH, IPH,
  IVH, SAH, SDH, labels of :class:`ichseg.data.subtypes.Subtype`) on X1, upsampled to the input
  size; with ``deep_supervision`` also on X2..X4 (the paper's "four segmentation mask branches"
  X2-X5), returned as auxiliary logits for the loss.
* **Classification head** — global average pooling of C5 and (FPN on) of every decoder level,
  concatenated, then FC -> LeakyReLU -> dropout -> FC over EDH, IPH, IVH, SAH, SDH and "none".
  Multi-label with one sigmoid per output (the paper's conclusion names the sigmoid; a slice
  may hold several subtypes, so a softmax over mutually exclusive classes would be wrong).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ichseg.data.subtypes import SUBTYPE_NAMES
from ichseg.errors import ConfigError
from ichseg.models.registry import register_model

#: Outputs of the classification head, in order (the five subtypes, then "none").
CLASS_NAMES: tuple[str, ...] = (*SUBTYPE_NAMES, "none")
#: Channels of the segmentation head: background, then Subtype labels 1..5.
SEG_CLASS_NAMES: tuple[str, ...] = ("background", *SUBTYPE_NAMES)


@dataclass
class MUNetConfig:
    """Architecture and the preprocessing the weights expect (read back by inference)."""

    in_channels: int = 1
    slice_size: int = 256  #: nominal input side (inputs must be multiples of 32)
    widths: list[int] = field(default_factory=lambda: [64, 128, 256, 512, 1024])
    blocks_per_stage: int = 2  #: CBLs per encoder stage (the first has stride 2)
    decoder_channels: int = 128
    fpn: bool = True
    deep_supervision: bool = True
    num_seg_classes: int = 6
    num_classes: int = 6
    cls_hidden: int = 256
    dropout: float = 0.3
    negative_slope: float = 0.01
    #: preprocessing of the slices the weights were trained on
    window: str = "brain"
    clahe_clip_limit: float = 0.01

    def __post_init__(self) -> None:
        if len(self.widths) != 5 or any(int(w) < 1 for w in self.widths):
            raise ConfigError(f"MUNet needs five positive encoder widths, got {self.widths}")
        self.widths = [int(w) for w in self.widths]
        if self.blocks_per_stage < 1:
            raise ConfigError("blocks_per_stage must be >= 1")
        if self.slice_size % 32:
            raise ConfigError(f"slice_size must be a multiple of 32, got {self.slice_size}")
        if self.num_seg_classes < 2 or self.num_classes < 1:
            raise ConfigError("num_seg_classes must be >= 2 and num_classes >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> MUNetConfig:
        """``"paper"`` (64..1024 channels) or ``"lite"`` (16..256, CPU-trainable) + overrides."""
        if name not in PRESETS:
            raise ConfigError(f"unknown MUNet preset {name!r}; available: {sorted(PRESETS)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown MUNet option(s): {', '.join(unknown)}")
        return cls(**{**PRESETS[name]().to_dict(), **overrides})


def paper_config() -> MUNetConfig:
    return MUNetConfig()


def lite_config() -> MUNetConfig:
    return MUNetConfig(widths=[16, 32, 64, 128, 256], decoder_channels=32, cls_hidden=128)


PRESETS: dict[str, Callable[[], MUNetConfig]] = {"paper": paper_config, "lite": lite_config}


class CBL(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> LeakyReLU."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, slope: float = 0.01):
        super().__init__(
            nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
            nn.BatchNorm2d(cout),
            nn.LeakyReLU(slope, inplace=True),
        )


class MUNet(nn.Module):
    """Forward: ``x (B, C, H, W)`` -> ``{"seg_logits" (B, S, H, W), "cls_logits" (B, K),
    "aux_seg_logits": [...] (training with deep supervision), "embedding" (B, E)}``."""

    def __init__(self, config: MUNetConfig) -> None:
        super().__init__()
        self.config = config
        self.in_channels = config.in_channels
        c, s = config, config.negative_slope
        stages = []
        cin = c.in_channels
        for w in c.widths:
            blocks = [CBL(cin, w, 3, 2, s)] + [
                CBL(w, w, 3, 1, s) for _ in range(c.blocks_per_stage - 1)
            ]
            stages.append(nn.Sequential(*blocks))
            cin = w
        self.encoder = nn.ModuleList(stages)
        d = c.decoder_channels
        self.top = CBL(c.widths[4], d, 1, 1, s)  # X5
        self.fuse = nn.ModuleList()
        self.refine = nn.ModuleList()
        for level in (3, 2, 1, 0):  # X4, X3, X2, X1
            lateral = c.widths[level] if c.fpn else 0
            self.fuse.append(CBL(d + lateral, d, 1, 1, s))
            self.refine.append(CBL(d, d, 3, 1, s))
        self.seg_head = nn.Conv2d(d, c.num_seg_classes, 1)
        self.aux_heads = nn.ModuleList(
            [nn.Conv2d(d, c.num_seg_classes, 1) for _ in range(3)] if c.deep_supervision else []
        )
        self.embedding_dim = c.widths[4] + (4 * d if c.fpn else 0)
        self.cls_head = nn.Sequential(
            nn.Linear(self.embedding_dim, c.cls_hidden),
            nn.LeakyReLU(s, inplace=True),
            nn.Dropout(c.dropout),
            nn.Linear(c.cls_hidden, c.num_classes),
        )

    def example_input_shape(
        self, dhw: tuple[int, int, int] | None = None
    ) -> tuple[int, int, int, int]:
        """Input tensor shape for parameter/FLOP counts (:mod:`ichseg.models.flops` hook): one
        nominal slice ``(1, C, S, S)``, or the ``D`` slices of a ``D x H x W`` scan."""
        c = self.config
        if dhw is None:
            return (1, c.in_channels, c.slice_size, c.slice_size)
        return (int(dhw[0]), c.in_channels, int(dhw[1]), int(dhw[2]))

    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Encoder maps C1..C5 and decoder maps X4..X1 (coarse to fine)."""
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ConfigError(
                f"MUNet expects (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}"
            )
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ConfigError(f"MUNet input sides must be multiples of 32, got {tuple(x.shape)}")
        enc = []
        h = x
        for stage in self.encoder:
            h = stage(h)
            enc.append(h)
        dec = []
        y = self.top(enc[4])
        for i, level in enumerate((3, 2, 1, 0)):
            y = F.interpolate(y, size=enc[level].shape[-2:], mode="bilinear", align_corners=False)
            if self.config.fpn:
                y = torch.cat([y, enc[level]], dim=1)
            y = self.refine[i](self.fuse[i](y))
            dec.append(y)
        return enc, dec

    def embed(self, enc: list[torch.Tensor], dec: list[torch.Tensor]) -> torch.Tensor:
        """The classification head's input: pooled C5 (+ pooled decoder levels with FPN)."""
        pooled = [F.adaptive_avg_pool2d(enc[4], 1).flatten(1)]
        if self.config.fpn:
            pooled += [F.adaptive_avg_pool2d(t, 1).flatten(1) for t in dec]
        return torch.cat(pooled, dim=1)

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.cls_head(embedding)

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        enc, dec = self.features(x)
        size = x.shape[-2:]
        seg = F.interpolate(self.seg_head(dec[-1]), size=size, mode="bilinear", align_corners=False)
        emb = self.embed(enc, dec)
        out: dict[str, Any] = {
            "seg_logits": seg,
            "cls_logits": self.classify(emb),
            "embedding": emb,
        }
        if self.aux_heads and self.training:
            out["aux_seg_logits"] = [
                F.interpolate(head(t), size=size, mode="bilinear", align_corners=False)
                for head, t in zip(self.aux_heads, dec[:3], strict=True)
            ]
        return out


@register_model("munet")
def build_munet(preset: str | None = None, **overrides: Any) -> MUNet:
    """Registry builder: ``preset`` (default ``"lite"``) plus :class:`MUNetConfig` overrides."""
    return MUNet(MUNetConfig.preset(preset or "lite", **overrides))
