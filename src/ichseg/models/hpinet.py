"""ICH-HPINet: hybrid propagation of volume (VIM) and slice (SIM + MPFFM) interaction.

Tensor conventions (all torch, "slice resolution" = the in-plane size the 2D networks see):

* ``volume`` ``(B, 1, D, H, W)``: windowed CT in [0, 1].
* ``hints`` ``(B, 2, D, H, W)``: channel :data:`HINT_POSITIVE` (= 0) holds positive/hemorrhage
  prompts, channel :data:`HINT_NEGATIVE` (= 1) negative/background prompts (the constants live in
  :mod:`ichseg.interaction.hints`, the single place that defines them).
* ``prev_mask`` ``(B, 1, D, H, W)``: previous-round mask probability in [0, 1] (zeros in round 1).

The VIM runs on an in-plane downsampled grid (``H / vim_downsample``): volume and previous mask
are area-averaged, hints max-pooled (a 1-px stroke survives). Input channel order of VIM and SIM:
``[image, hint positive, hint negative, previous mask]``.

Ablations (:class:`HPINetConfig` fields, paper Table 2 and the MPFFM component ablation):

* ``propagation="hybrid"``: the full model.
* ``propagation="volume"`` (Volume-Pro): only the VIM is built; slice masks are the VIM's own
  logits, resized to slice resolution (``sim_logits`` = VIM slice ``r``, ``mpffm_logits`` = VIM
  slices ``k``); there is no SIM, FCM or MPFFM.
* ``propagation="slice"`` (Slice-Pro): no VIM and no FCM are built; the MPFFM decoder has no 3D
  feature input (SIM + memory propagation only); ``vim_logits`` is ``None``.
* ``use_memory=False`` (w/o Memory): the memory is cleared between slices: each target sees only
  the frame just before it (``S_r`` with ``M_r`` for the first target, the previous predicted
  target afterwards) instead of the persistent bank ``{S_r, previous target}``.
* ``use_affinity=False``: the memory readout is the position-wise mean of the memory values over
  the frames (identity alignment, no key matching; the key projection is unused).
* ``use_fusion=False``: the FCM features ``F_k`` are not fed to the MPFFM decoder (the FCM and its
  auxiliary heads are still built and trained through the FCM loss).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ichseg.errors import ConfigError, DimensionalityError, GeometryError, PromptError
from ichseg.interaction.hints import HINT_NEGATIVE, HINT_POSITIVE
from ichseg.models.blocks import NORM_KINDS, resize2d
from ichseg.models.fcm import FCM, FCMOutput
from ichseg.models.mpffm import MPFFM, KeyFeatures
from ichseg.models.registry import register_model
from ichseg.models.resnet2d import BLOCK_KINDS
from ichseg.models.sim import SIM
from ichseg.models.vim import SKIP_MODES, VIM, VIMFeatures, validate_pools

__all__ = [
    "HINT_NEGATIVE",
    "HINT_POSITIVE",
    "PRESETS",
    "PROPAGATION_MODES",
    "HPINet",
    "HPINetConfig",
    "MemoryBank",
    "build_hpinet",
]

PROPAGATION_MODES: tuple[str, ...] = ("hybrid", "volume", "slice")
#: Channel order of the VIM and SIM inputs.
INPUT_CHANNELS: tuple[str, ...] = ("image", "hint_positive", "hint_negative", "previous_mask")


@dataclass
class HPINetConfig:
    """Every size and switch of :class:`HPINet` (see the module docstring for the ablations).

    ``slice_size`` and ``default_depth`` are the preset's nominal input (used by ``ichseg info``
    and benchmarks); the model accepts any depth and any in-plane size.
    """

    # nominal input
    slice_size: int = 256
    default_depth: int = 32
    # VIM (3D residual U-Net) on the in-plane downsampled grid
    vim_downsample: int = 2
    vim_base: int = 8
    vim_levels: int = 4
    vim_pools: tuple[tuple[int, int, int], ...] = ((1, 2, 2), (2, 2, 2), (2, 2, 2))
    vim_dropout: float = 0.1
    vim_skip: str = "sum"
    # FCM output channels per level (d1, d2, d3); None = the VIM level widths
    fcm_channels: tuple[int, int, int] | None = None
    # SIM (DeepLabV3)
    sim_block: str = "basic"
    sim_layers: tuple[int, ...] = (2, 2, 2, 2)
    sim_widths: tuple[int, ...] = (32, 64, 128, 256)
    sim_aspp_channels: int = 64
    sim_aspp_rates: tuple[int, ...] = (3, 6, 9)
    sim_output_stride: int = 16
    # MPFFM
    key_block: str = "basic"
    key_layers: tuple[int, int, int] = (2, 2, 2)
    key_widths: tuple[int, int, int] = (32, 64, 128)
    value_block: str = "basic"
    value_layers: tuple[int, int, int] = (2, 2, 2)
    value_widths: tuple[int, int, int] = (16, 32, 64)
    key_dim: int = 64
    value_dim: int = 128
    decoder_widths: tuple[int, int, int] = (128, 64, 64)
    top_k: int | None = 20
    # shared
    norm: str = "group"
    # ablations
    propagation: str = "hybrid"
    use_memory: bool = True
    use_affinity: bool = True
    use_fusion: bool = True
    # prompt encoding (not in the paper): what the networks see of the rasterised strokes
    hint_sigma_px: float = 0.0  #: > 0 adds a Gaussian halo of this sigma to every stroke
    new_prompt_channel: bool = False  #: extra input channel: this round's prompts (+1 / -1)
    # memory/speed
    checkpointing: bool = False

    def __post_init__(self) -> None:
        self.vim_pools = tuple(tuple(int(v) for v in p) for p in self.vim_pools)  # type: ignore[misc]
        for name in ("sim_layers", "sim_widths", "sim_aspp_rates", "key_layers", "key_widths"):
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        for name in ("value_layers", "value_widths", "decoder_widths"):
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.fcm_channels is not None:
            self.fcm_channels = tuple(int(v) for v in self.fcm_channels)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(f"HPINetConfig: {msg}")

        need(self.slice_size >= 16, f"slice_size must be >= 16, got {self.slice_size}")
        need(self.default_depth >= 1, f"default_depth must be >= 1, got {self.default_depth}")
        need(self.vim_downsample >= 1, f"vim_downsample must be >= 1, got {self.vim_downsample}")
        need(self.vim_base >= 1, f"vim_base must be >= 1, got {self.vim_base}")
        need(self.vim_levels >= 3, f"vim_levels must be >= 3, got {self.vim_levels}")
        validate_pools(self.vim_pools, self.vim_levels)
        need(
            0.0 <= self.vim_dropout < 1.0, f"vim_dropout must be in [0, 1), got {self.vim_dropout}"
        )
        need(self.vim_skip in SKIP_MODES, f"vim_skip must be one of {SKIP_MODES}")
        need(
            self.fcm_channels is None
            or (len(self.fcm_channels) == 3 and min(self.fcm_channels) >= 1),
            "fcm_channels must be None or three positive ints",
        )
        for name in ("sim_block", "key_block", "value_block"):
            need(getattr(self, name) in BLOCK_KINDS, f"{name} must be one of {BLOCK_KINDS}")
        need(
            len(self.sim_layers) == len(self.sim_widths) and 1 <= len(self.sim_layers) <= 4,
            "sim_layers and sim_widths must have the same length (1-4)",
        )
        need(self.sim_output_stride in (8, 16, 32), "sim_output_stride must be 8, 16 or 32")
        need(self.sim_aspp_channels >= 1, "sim_aspp_channels must be positive")
        need(len(self.sim_aspp_rates) >= 1, "sim_aspp_rates must not be empty")
        for name in ("key_layers", "key_widths", "value_layers", "value_widths", "decoder_widths"):
            v = getattr(self, name)
            need(len(v) == 3 and min(v) >= 1, f"{name} must be three positive ints, got {v}")
        need(self.key_dim >= 1 and self.value_dim >= 1, "key_dim and value_dim must be positive")
        need(self.top_k is None or self.top_k >= 1, f"top_k must be None or >= 1, got {self.top_k}")
        need(self.norm in NORM_KINDS, f"norm must be one of {NORM_KINDS}, got {self.norm!r}")
        need(self.hint_sigma_px >= 0, f"hint_sigma_px must be >= 0, got {self.hint_sigma_px}")
        need(
            self.propagation in PROPAGATION_MODES,
            f"propagation must be one of {PROPAGATION_MODES}, got {self.propagation!r}",
        )

    @property
    def input_channels(self) -> tuple[str, ...]:
        """Channel order of the VIM and SIM inputs."""
        return INPUT_CHANNELS + (("new_prompts",) if self.new_prompt_channel else ())

    @property
    def vim_channels(self) -> tuple[int, int, int]:
        """Channels of the VIM decoder levels d1, d2, d3."""
        return (self.vim_base, 2 * self.vim_base, 4 * self.vim_base)

    @property
    def fcm_out_channels(self) -> tuple[int, int, int]:
        """Channels of the converted features F_k per level."""
        return self.fcm_channels if self.fcm_channels is not None else self.vim_channels

    @property
    def default_input(self) -> tuple[int, int, int]:
        """Nominal ``(D, H, W)`` input of the preset."""
        return (self.default_depth, self.slice_size, self.slice_size)

    def to_dict(self) -> dict[str, Any]:
        """Plain-python dict (JSON/YAML/``torch.load(weights_only=True)`` safe)."""
        d = dataclasses.asdict(self)
        return {k: (_listify(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HPINetConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown HPINetConfig field(s): {', '.join(unknown)}")
        try:
            return cls(**dict(data))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid HPINetConfig: {exc}") from exc

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> HPINetConfig:
        """A named preset (``"paper"`` or ``"lite"``) with field overrides."""
        if name not in PRESETS:
            raise ConfigError(f"unknown HPINet preset {name!r}; available: {sorted(PRESETS)}")
        base = PRESETS[name]().to_dict()
        unknown = sorted(set(overrides) - set(base))
        if unknown:
            raise ConfigError(f"unknown HPINetConfig field(s): {', '.join(unknown)}")
        base.update(overrides)
        return cls.from_dict(base)


def _listify(v: Any) -> Any:
    return [_listify(x) for x in v] if isinstance(v, tuple | list) else v


def paper_config() -> HPINetConfig:
    """Sizes of the paper / authors' code: VIM base 64, 5 isotropic levels (64..1024, skip sum,
    dropout 0.3) on 16x256x256; SIM DeepLabV3-ResNet-50 OS16, ASPP 256 (6, 12, 18); key encoder
    ResNet-50 to layer3 (1024 ch), key 64 / value 512, top-20; value encoder ResNet-18 to layer3;
    decoder 512/256/256; slices 512x512."""
    return HPINetConfig(
        slice_size=512,
        default_depth=16,
        vim_downsample=2,
        vim_base=64,
        vim_levels=5,
        vim_pools=((2, 2, 2),) * 4,
        vim_dropout=0.3,
        vim_skip="sum",
        sim_block="bottleneck",
        sim_layers=(3, 4, 6, 3),
        sim_widths=(64, 128, 256, 512),
        sim_aspp_channels=256,
        sim_aspp_rates=(6, 12, 18),
        key_block="bottleneck",
        key_layers=(3, 4, 6),
        key_widths=(64, 128, 256),
        value_block="basic",
        value_layers=(2, 2, 2),
        value_widths=(64, 128, 256),
        key_dim=64,
        value_dim=512,
        decoder_widths=(512, 256, 256),
        top_k=20,
    )


def lite_config() -> HPINetConfig:
    """CPU preset: 256x256 slices, VIM base 8 with 4 levels and anisotropic first pooling
    (1, 2, 2) on 128x128, half-width ResNet-18-like SIM/key encoder, quarter-width value
    encoder, key 64 / value 128."""
    return HPINetConfig()


PRESETS: dict[str, Callable[[], HPINetConfig]] = {"paper": paper_config, "lite": lite_config}


@dataclass
class MemoryBank:
    """Memory frames for the MPFFM read.

    Attributes:
        keys: ``(B, T, key_dim, h, w)``.
        values: ``(B, T, value_dim, h, w)``.
    """

    keys: Tensor
    values: Tensor
    frames: list[int] = field(default_factory=list)

    @classmethod
    def from_frame(cls, key: Tensor, value: Tensor, index: int = -1) -> MemoryBank:
        """Memory holding one frame: ``key (B, key_dim, h, w)``, ``value (B, value_dim, h, w)``;
        ``index`` optionally records the slice index (bookkeeping only)."""
        return cls(key.unsqueeze(1), value.unsqueeze(1), [index])

    def add(self, key: Tensor, value: Tensor, index: int = -1) -> MemoryBank:
        """A new bank with one more frame appended (the original is unchanged)."""
        return MemoryBank(
            torch.cat([self.keys, key.unsqueeze(1)], dim=1),
            torch.cat([self.values, value.unsqueeze(1)], dim=1),
            [*self.frames, index],
        )

    def select(self, positions: Sequence[int]) -> MemoryBank:
        """A bank with only the frames at ``positions`` (positions in the bank, not slices)."""
        pos = list(positions)
        return MemoryBank(self.keys[:, pos], self.values[:, pos], [self.frames[p] for p in pos])

    def __len__(self) -> int:
        return int(self.keys.shape[1])


def _quarter(n: int) -> int:
    """Size of the stride-4 ResNet map for an input of size ``n`` (stem conv + max-pool)."""
    return math.ceil(math.ceil(n / 2) / 2)


class HPINet(nn.Module):
    """The composed ICH-HPINet (see the module docstring for conventions and ablations).

    Submodules (``None`` when an ablation removes them): ``vim`` (:class:`VIM`), ``sim``
    (:class:`SIM`), ``fcm`` (:class:`FCM`), ``mpffm`` (:class:`MPFFM`).
    """

    def __init__(self, config: HPINetConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else HPINetConfig()
        cfg.validate()
        self.config = cfg
        self.vim: VIM | None = None
        self.fcm: FCM | None = None
        self.sim: SIM | None = None
        self.mpffm: MPFFM | None = None
        if cfg.propagation != "slice":
            self.vim = VIM(
                len(cfg.input_channels),
                cfg.vim_base,
                cfg.vim_levels,
                cfg.vim_pools,
                norm=cfg.norm,
                dropout=cfg.vim_dropout,
                skip=cfg.vim_skip,
            )
        if cfg.propagation == "hybrid":
            assert self.vim is not None
            self.fcm = FCM(cfg.vim_channels, cfg.fcm_out_channels, self.vim.depth_strides[:3])
        if cfg.propagation != "volume":
            self.sim = SIM(
                len(cfg.input_channels),
                block=cfg.sim_block,
                layers=cfg.sim_layers,
                widths=cfg.sim_widths,
                aspp_channels=cfg.sim_aspp_channels,
                aspp_rates=cfg.sim_aspp_rates,
                output_stride=cfg.sim_output_stride,
                norm=cfg.norm,
            )
            fused = sum(cfg.fcm_out_channels) if self.fuses_features else 0
            self.mpffm = MPFFM(
                key_block=cfg.key_block,
                key_layers=cfg.key_layers,
                key_widths=cfg.key_widths,
                value_block=cfg.value_block,
                value_layers=cfg.value_layers,
                value_widths=cfg.value_widths,
                key_dim=cfg.key_dim,
                value_dim=cfg.value_dim,
                decoder_widths=cfg.decoder_widths,
                fused_channels=fused,
                top_k=cfg.top_k,
                use_affinity=cfg.use_affinity,
                norm=cfg.norm,
            )
        self.set_checkpointing(cfg.checkpointing)

    # ------------------------------------------------------------------ properties / helpers
    @property
    def fuses_features(self) -> bool:
        """Whether FCM features reach the MPFFM decoder."""
        return self.config.propagation == "hybrid" and self.config.use_fusion

    def set_checkpointing(self, enabled: bool) -> None:
        """Switch activation checkpointing of the VIM, SIM and MPFFM encoders."""
        self.config.checkpointing = bool(enabled)
        for m in (self.vim, self.sim, self.mpffm):
            if m is not None:
                m.use_checkpoint = bool(enabled)

    def _need(self, module: nn.Module | None, what: str) -> nn.Module:
        if module is None:
            raise ConfigError(
                f"{what} is not available with propagation={self.config.propagation!r}"
            )
        return module

    @staticmethod
    def _check_volume_inputs(volume: Tensor, hints: Tensor, prev_mask: Tensor) -> None:
        if volume.dim() != 5 or volume.shape[1] != 1:
            raise DimensionalityError(f"volume must be (B, 1, D, H, W), got {tuple(volume.shape)}")
        b, _, d, h, w = volume.shape
        if hints.dim() != 5 or hints.shape[1] != 2:
            raise DimensionalityError(f"hints must be (B, 2, D, H, W), got {tuple(hints.shape)}")
        if prev_mask.dim() != 5 or prev_mask.shape[1] != 1:
            raise DimensionalityError(
                f"prev_mask must be (B, 1, D, H, W), got {tuple(prev_mask.shape)}"
            )
        for name, t in (("hints", hints), ("prev_mask", prev_mask)):
            if t.shape[0] != b or t.shape[2:] != (d, h, w):
                raise GeometryError(
                    f"{name} {tuple(t.shape)} does not match volume {tuple(volume.shape)}"
                )

    def encode_hints(self, hints: Tensor) -> Tensor:
        """What the networks see of binary hint maps ``(..., C, [D,] H, W)``: the strokes, plus
        a Gaussian halo of ``hint_sigma_px`` (peak 1 at a stroke, clamped to 1) when set."""
        sigma = float(self.config.hint_sigma_px)
        if sigma <= 0:
            return hints
        radius = max(1, math.ceil(3 * sigma))
        x = torch.arange(-radius, radius + 1, dtype=hints.dtype, device=hints.device)
        k = torch.exp(-(x**2) / (2 * sigma**2))
        shape = hints.shape
        flat = hints.reshape(-1, 1, shape[-2], shape[-1])
        drawn = flat.flatten(1).amax(dim=1) > 0  # only prompted slices have anything to blur
        if not bool(drawn.any()):
            return hints
        sel = flat[drawn]
        blur = F.conv2d(sel, k.view(1, 1, 1, -1), padding=(0, radius))
        blur = F.conv2d(blur, k.view(1, 1, -1, 1), padding=(radius, 0))
        out = flat.clone()
        out[drawn] = torch.maximum(sel, blur.clamp(max=1.0))
        return out.reshape(shape)

    def _new_channel(self, new_hints: Tensor | None, like: Tensor) -> list[Tensor]:
        """The signed new-prompt channel (``[]`` unless the model has it; zeros if not given)."""
        if not self.config.new_prompt_channel:
            return []
        if new_hints is None:
            return [torch.zeros_like(like[:, :1])]
        enc = self.encode_hints(new_hints)
        return [
            enc[:, HINT_POSITIVE : HINT_POSITIVE + 1] - enc[:, HINT_NEGATIVE : HINT_NEGATIVE + 1]
        ]

    def vim_input(
        self, volume: Tensor, hints: Tensor, prev_mask: Tensor, new_hints: Tensor | None = None
    ) -> Tensor:
        """Build the VIM input ``(B, C, D, ceil(H/ds), ceil(W/ds))`` from slice-resolution
        tensors: encode the hints, area-average the image and previous mask, max-pool the hints
        (``new_hints``: this round's prompts, used by models with ``new_prompt_channel``)."""
        self._check_volume_inputs(volume, hints, prev_mask)
        ds = self.config.vim_downsample
        d, h, w = volume.shape[-3:]
        hints = self.encode_hints(hints)
        new = self._new_channel(new_hints, hints)
        if ds > 1:
            size = (d, math.ceil(h / ds), math.ceil(w / ds))
            volume = F.adaptive_avg_pool3d(volume, size)
            prev_mask = F.adaptive_avg_pool3d(prev_mask, size)
            hints = F.adaptive_max_pool3d(hints, size)
            new = [
                F.adaptive_max_pool3d(n.clamp(min=0), size)
                - F.adaptive_max_pool3d((-n).clamp(min=0), size)
                for n in new
            ]
        return torch.cat([volume, hints, prev_mask, *new], dim=1)

    # ------------------------------------------------------------------ inference building blocks
    def vim_forward(
        self, volume: Tensor, hints: Tensor, prev_mask: Tensor, new_hints: Tensor | None = None
    ) -> tuple[Tensor, VIMFeatures]:
        """VIM logits ``(B, 1, D, ceil(H/ds), ceil(W/ds))`` and features, from slice-resolution
        ``volume (B,1,D,H,W)``, ``hints (B,2,D,H,W)``, ``prev_mask (B,1,D,H,W)``."""
        vim = self._need(self.vim, "the VIM")
        return vim(self.vim_input(volume, hints, prev_mask, new_hints))

    def run_vim(
        self, volume: Tensor, hints: Tensor, prev_mask: Tensor, new_hints: Tensor | None = None
    ) -> tuple[Tensor, VIMFeatures]:
        """Like :meth:`vim_forward` but returns the probability ``sigmoid(logits)`` on the VIM
        grid; use :meth:`vim_to_slices` to bring it to slice resolution."""
        logits, feats = self.vim_forward(volume, hints, prev_mask, new_hints)
        return torch.sigmoid(logits), feats

    @staticmethod
    def vim_to_slices(
        x: Tensor, size: Sequence[int], indices: Sequence[int] | None = None
    ) -> Tensor:
        """Resize VIM-grid maps ``(B, C, D, h, w)`` in-plane to ``size = (H, W)``.

        With ``indices`` only those slices are resized and returned stacked k-major as
        ``(len(indices) * B, C, H, W)``; without, the whole ``(B, C, D, H, W)`` volume.
        """
        if indices is not None:
            sel = torch.cat([x[:, :, k] for k in indices], dim=0)
            return resize2d(sel, size)
        b, c, d = x.shape[:3]
        flat = x.permute(0, 2, 1, 3, 4).reshape(b * d, c, *x.shape[-2:])
        flat = resize2d(flat, size)
        return flat.reshape(b, d, c, *flat.shape[-2:]).permute(0, 2, 1, 3, 4)

    def run_sim(
        self,
        slice_img: Tensor,
        slice_hints: Tensor,
        slice_prev: Tensor,
        slice_new: Tensor | None = None,
    ) -> Tensor:
        """SIM logits ``(N, 1, H, W)`` from ``slice_img (N,1,H,W)``, ``slice_hints (N,2,H,W)``
        (channel 0 positive, 1 negative), ``slice_prev (N,1,H,W)`` and, for models with
        ``new_prompt_channel``, this round's prompts ``slice_new (N,2,H,W)``."""
        sim = self._need(self.sim, "the SIM")
        if slice_img.dim() != 4 or slice_hints.dim() != 4 or slice_prev.dim() != 4:
            raise DimensionalityError("run_sim expects (N, C, H, W) tensors")
        if slice_hints.shape[1] != 2 or slice_img.shape[1] != 1 or slice_prev.shape[1] != 1:
            raise DimensionalityError(
                "run_sim expects 1-channel image, 2-channel hints, 1-channel previous mask"
            )
        if not (slice_img.shape[-2:] == slice_hints.shape[-2:] == slice_prev.shape[-2:]):
            raise GeometryError("run_sim inputs differ in size")
        new = self._new_channel(slice_new, slice_hints)
        return sim(torch.cat([slice_img, self.encode_hints(slice_hints), slice_prev, *new], dim=1))

    def fcm_features(
        self,
        vim_features: VIMFeatures,
        k: int | Sequence[int],
        slice_size: Sequence[int],
        *,
        with_aux: bool = False,
    ) -> FCMOutput:
        """Converted 3D features for target slice(s) ``k`` at the decoder's 1/4 grid of slices of
        size ``slice_size = (H, W)`` (k-major over several targets); with ``with_aux`` also the
        auxiliary logits at ``(H, W)``."""
        fcm = self._need(self.fcm, "the FCM")
        h, w = int(slice_size[0]), int(slice_size[1])
        q = (_quarter(h), _quarter(w))
        return fcm(vim_features, k, [q, q, q], (h, w) if with_aux else None)

    def encode_key(self, slices: Tensor) -> KeyFeatures:
        """:meth:`MPFFM.encode_key`: ``slices (N, 1, H, W)`` -> :class:`KeyFeatures`."""
        return self._need(self.mpffm, "the MPFFM").encode_key(slices)

    def encode_value(
        self, slices: Tensor, mask_prob: Tensor, key_feats: KeyFeatures | Tensor
    ) -> Tensor:
        """:meth:`MPFFM.encode_value`: memory value ``(N, value_dim, H/16, W/16)``."""
        return self._need(self.mpffm, "the MPFFM").encode_value(slices, mask_prob, key_feats)

    def read_memory(self, mem_keys: Tensor, mem_values: Tensor, query_key: Tensor) -> Tensor:
        """:meth:`MPFFM.read_memory`."""
        return self._need(self.mpffm, "the MPFFM").read_memory(mem_keys, mem_values, query_key)

    def decode(
        self,
        readout: Tensor,
        query: KeyFeatures,
        fcm: FCMOutput | Sequence[Tensor] | None,
        out_size: Sequence[int],
    ) -> Tensor:
        """Mask logits ``(N, 1, *out_size)``; FCM features are used only when the model fuses
        them (ignored with ``use_fusion=False``; required otherwise)."""
        mpffm = self._need(self.mpffm, "the MPFFM")
        feats: Sequence[Tensor] | None = None
        if self.fuses_features:
            if fcm is None:
                raise ConfigError(
                    "this model fuses FCM features: pass the FCM output of the target"
                )
            feats = fcm.features if isinstance(fcm, FCMOutput) else fcm
        return mpffm.decode(readout, query, feats, out_size)

    def propagate_step(
        self,
        memory: MemoryBank,
        query: KeyFeatures,
        fcm: FCMOutput | Sequence[Tensor] | None,
        out_size: Sequence[int],
    ) -> Tensor:
        """One propagation step: read ``memory`` for the query slice(s) and decode.

        Args:
            memory: frames with keys ``(B or 1, T, key_dim, h, w)`` and values.
            query: the target slices' :class:`KeyFeatures` (``N = B``).
            fcm: the targets' FCM output (hybrid with fusion), else ignored / ``None``.
            out_size: ``(H, W)`` of the slices.

        Returns:
            logits ``(N, 1, H, W)``.
        """
        readout = self.read_memory(memory.keys, memory.values, query.key)
        return self.decode(readout, query, fcm, out_size)

    # ------------------------------------------------------------------ training forward
    def forward_train(
        self,
        volume: Tensor,
        hints: Tensor,
        prev_mask: Tensor,
        r_index: int,
        k_indices: Sequence[int],
        new_hints: Tensor | None = None,
        memory: tuple[Tensor, Tensor] | None = None,
    ) -> dict[str, Any]:
        """Training forward pass.

        Args:
            volume, hints, prev_mask: slice-resolution tensors (see module docstring).
            r_index: the prompted slice ``S_r`` (segmented by the SIM).
            k_indices: target slices in propagation order, starting next to ``r``.
            new_hints: this round's prompts ``(B,2,D,H,W)`` (models with ``new_prompt_channel``).
            memory: earlier interaction frames ``(keys (B,F,kd,h,w), values (B,F,vd,h,w))``
                added to the memory bank before ``S_r`` (as at inference after several rounds).

        Returns:
            ``{"vim_logits": (B,1,D,h,w) on the VIM grid or None (slice mode),
            "sim_logits": (B,1,H,W), "fcm_aux_logits": [per target: [from d3, from d2], each
            (B,1,H,W)] (empty list without FCM), "mpffm_logits": [per target (B,1,H,W)]}``.
            Memory for the first target is ``{S_r, sigmoid(M_r)}``; afterwards ``{S_r, previous
            target}`` (or only the previous target with ``use_memory=False``). Gradients flow
            through the soft masks.
        """
        self._check_volume_inputs(volume, hints, prev_mask)
        b, _, d, h, w = volume.shape
        ks = [int(k) for k in k_indices]
        r = int(r_index)
        if not 0 <= r < d:
            raise PromptError(f"r_index {r} outside the volume (0..{d - 1})")
        if not ks:
            raise PromptError("k_indices must contain at least one target slice")
        for k in ks:
            if not 0 <= k < d:
                raise PromptError(f"target slice {k} outside the volume (0..{d - 1})")
            if k == r:
                raise PromptError(f"target slice {k} equals the prompted slice r")
        out: dict[str, Any] = {
            "vim_logits": None,
            "sim_logits": None,
            "fcm_aux_logits": [],
            "mpffm_logits": [],
        }
        feats: VIMFeatures | None = None
        if self.vim is not None:
            vim_logits, feats = self.vim_forward(volume, hints, prev_mask, new_hints)
            out["vim_logits"] = vim_logits
            if self.config.propagation == "volume":
                out["sim_logits"] = self.vim_to_slices(vim_logits, (h, w), [r])
                out["mpffm_logits"] = [self.vim_to_slices(vim_logits, (h, w), [k]) for k in ks]
                return out

        sim_logits = self.run_sim(
            volume[:, :, r],
            hints[:, :, r],
            prev_mask[:, :, r],
            None if new_hints is None else new_hints[:, :, r],
        )
        out["sim_logits"] = sim_logits

        order = [r, *ks]
        keys = self.encode_key(torch.cat([volume[:, :, i] for i in order], dim=0))
        frame_keys = [keys.index(slice(i * b, (i + 1) * b)) for i in range(len(order))]

        fcm_out: FCMOutput | None = None
        if self.fcm is not None and feats is not None:
            fcm_out = self.fcm_features(feats, ks, (h, w), with_aux=True)
            out["fcm_aux_logits"] = [
                [a[i * b : (i + 1) * b] for a in fcm_out.aux_logits] for i in range(len(ks))
            ]

        key_r = frame_keys[0]
        value_r = self.encode_value(volume[:, :, r], torch.sigmoid(sim_logits), key_r)
        bank_r = MemoryBank.from_frame(key_r.key, value_r, r)
        if memory is not None:
            mem_k, mem_v = memory
            bank_r = MemoryBank(
                torch.cat([mem_k, bank_r.keys], dim=1),
                torch.cat([mem_v, bank_r.values], dim=1),
                [-1] * int(mem_k.shape[1]) + bank_r.frames,
            )
        prev: tuple[Tensor, Tensor, int] | None = None
        for i, k in enumerate(ks):
            if prev is None:
                memory = bank_r
            elif self.config.use_memory:
                memory = bank_r.add(*prev)
            else:
                memory = MemoryBank.from_frame(*prev)
            query = frame_keys[i + 1]
            target_fcm = (
                [f[i * b : (i + 1) * b] for f in fcm_out.features] if fcm_out is not None else None
            )
            logits = self.propagate_step(memory, query, target_fcm, (h, w))
            out["mpffm_logits"].append(logits)
            if i < len(ks) - 1:
                value_k = self.encode_value(volume[:, :, k], torch.sigmoid(logits), query)
                prev = (query.key, value_k, k)
        return out

    def forward(
        self,
        volume: Tensor,
        hints: Tensor,
        prev_mask: Tensor,
        r_index: int,
        k_indices: Sequence[int],
        new_hints: Tensor | None = None,
        memory: tuple[Tensor, Tensor] | None = None,
    ) -> dict[str, Any]:
        """Alias of :meth:`forward_train` (so hooks and FLOP counters see a normal call)."""
        return self.forward_train(volume, hints, prev_mask, r_index, k_indices, new_hints, memory)


@register_model("hpinet")
def build_hpinet(preset: str | None = None, **overrides: Any) -> HPINet:
    """Registry builder: ``preset`` (default ``"lite"``) plus :class:`HPINetConfig` overrides."""
    return HPINet(HPINetConfig.preset(preset or "lite", **overrides))
