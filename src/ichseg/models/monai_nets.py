"""The six MONAI baselines of the HemSeg-200 benchmark, registered as ichseg models.

``unet``, ``vnet``, ``segresnet``, ``attention_unet``, ``unetr`` and ``swin_unetr`` build MONAI's
own classes (:mod:`monai.networks.nets`) inside :class:`MonaiSegNet`, a thin wrapper that carries
the configuration inference needs. Presets:

* ``paper``: the arguments of the HemSeg-200 repository (reference notes §7.3): patch 256x256x16
  (SwinUNETR 128x128x32) at 0.48828 x 0.48828 x 4.6494 mm, HemSeg-200 intensity statistics;
* ``lite``: sized for 2 CPU cores: fewer channels / smaller feature sizes and a 128x128x16 patch
  (VNet 96x96x16, SwinUNETR 96x96x32) at 0.9766 mm in-plane, so a 512x512 scan at 0.49 mm becomes ~256x256.

The configuration is a flat dict: ``preset_name`` (the preset the other values start from), the
inference keys of :data:`INFERENCE_KEYS` plus the MONAI
constructor arguments (``spatial_dims``, ``in_channels`` and ``out_channels`` are fixed at 3, 1
and 1). ``builder(None, **model.config)`` rebuilds the same architecture (the registry contract).
Arrays are fed in ichseg's canonical ``(i, j, k)`` order after :mod:`ichseg.preprocess.hemseg`,
i.e. ``(B, 1, H, W, D)`` with ``D`` the slice axis; ``patch_size`` is given in that order.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ichseg.errors import ConfigError
from ichseg.models.registry import register_model
from ichseg.preprocess.hemseg import HEMSEG_CLIP, HEMSEG_MEAN, HEMSEG_SPACING, HEMSEG_STD

#: Registry names of the MONAI baselines, in the paper's table order.
MONAI_MODELS: tuple[str, ...] = (
    "unet",
    "vnet",
    "segresnet",
    "attention_unet",
    "unetr",
    "swin_unetr",
)
PRESETS: tuple[str, ...] = ("paper", "lite")

#: Configuration keys that are not MONAI constructor arguments.
INFERENCE_KEYS: tuple[str, ...] = (
    "preset_name",
    "patch_size",
    "target_spacing",
    "clip",
    "mean",
    "std",
    "threshold",
)
LITE_SPACING: tuple[float, float, float] = (0.9766, 0.9766, HEMSEG_SPACING[2])

#: Network arguments per model and preset (besides spatial_dims/in_channels/out_channels).
_NET_ARGS: dict[str, dict[str, dict[str, Any]]] = {
    "unet": {
        "paper": {"channels": [32, 64, 128, 256, 512], "strides": [2, 2, 2, 2], "num_res_units": 2},
        "lite": {"channels": [16, 32, 64, 128], "strides": [2, 2, 2], "num_res_units": 1},
    },
    "vnet": {"paper": {}, "lite": {}},  # MONAI's VNet has a fixed width (16 base channels)
    "segresnet": {
        "paper": {"dropout_prob": 0.2},
        "lite": {"dropout_prob": 0.2, "init_filters": 8, "blocks_down": [1, 1, 2, 2]},
    },
    "attention_unet": {
        "paper": {"channels": [32, 64, 128, 256, 512], "strides": [2, 2, 2, 2], "kernel_size": 3},
        "lite": {"channels": [16, 32, 64, 128], "strides": [2, 2, 2], "kernel_size": 3},
    },
    "unetr": {
        "paper": {
            "feature_size": 16,
            "hidden_size": 768,
            "mlp_dim": 3072,
            "num_heads": 12,
            "proj_type": "conv",
            "norm_name": "instance",
            "dropout_rate": 0.0,
        },
        "lite": {
            "feature_size": 8,
            "hidden_size": 192,
            "mlp_dim": 768,
            "num_heads": 4,
            "proj_type": "conv",
            "norm_name": "instance",
            "dropout_rate": 0.0,
        },
    },
    "swin_unetr": {"paper": {"feature_size": 48}, "lite": {"feature_size": 12}},
}


def _patch(name: str, preset: str) -> list[int]:
    if name == "swin_unetr":  # SwinUNETR needs every side divisible by 32
        return [128, 128, 32] if preset == "paper" else [96, 96, 32]
    if preset == "paper":
        return [256, 256, 16]
    # MONAI's VNet has a fixed width (45.6 M parameters): a smaller lite patch keeps a CPU step
    # affordable
    return [96, 96, 16] if name == "vnet" else [128, 128, 16]


def _monai_class(name: str) -> Callable[..., nn.Module]:
    from monai.networks import nets

    return {
        "unet": nets.UNet,
        "vnet": nets.VNet,
        "segresnet": nets.SegResNet,
        "attention_unet": nets.AttentionUnet,
        "unetr": nets.UNETR,
        "swin_unetr": nets.SwinUNETR,
    }[name]


def preset_config(name: str, preset: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The full flat configuration of model ``name`` for ``preset`` (default ``"lite"``) with
    ``overrides`` applied, without building the network."""
    if name not in _NET_ARGS:
        raise ConfigError(f"unknown MONAI baseline {name!r}; available: {', '.join(MONAI_MODELS)}")
    preset = preset or str(overrides.get("preset_name") or "lite")
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r} for {name}; available: {', '.join(PRESETS)}")
    cfg: dict[str, Any] = {
        "preset_name": preset,
        "patch_size": _patch(name, preset),
        "target_spacing": list(HEMSEG_SPACING if preset == "paper" else LITE_SPACING),
        "clip": list(HEMSEG_CLIP),
        "mean": HEMSEG_MEAN,
        "std": HEMSEG_STD,
        "threshold": 0.5,
        **copy.deepcopy(_NET_ARGS[name][preset]),
    }
    cfg.update({k: _plain(v) for k, v in overrides.items()})
    cfg["preset_name"] = preset
    _check(name, cfg)
    return cfg


def _plain(v: Any) -> Any:
    """Tuples as lists (configs are YAML/JSON and checkpoint friendly)."""
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


def _check(name: str, cfg: dict[str, Any]) -> None:
    patch = cfg["patch_size"]
    if not (isinstance(patch, list) and len(patch) == 3 and all(int(p) >= 1 for p in patch)):
        raise ConfigError(f"{name}: patch_size must be 3 positive integers, got {patch!r}")
    sp = cfg["target_spacing"]
    if not (isinstance(sp, list) and len(sp) == 3 and all(float(s) > 0 for s in sp)):
        raise ConfigError(f"{name}: target_spacing must be 3 positive numbers, got {sp!r}")
    clip = cfg["clip"]
    if not (isinstance(clip, list) and len(clip) == 2 and float(clip[0]) < float(clip[1])):
        raise ConfigError(f"{name}: clip must be [lo, hi] with lo < hi, got {clip!r}")
    if not float(cfg["std"]) > 0:
        raise ConfigError(f"{name}: std must be positive, got {cfg['std']!r}")
    if not 0.0 < float(cfg["threshold"]) < 1.0:
        raise ConfigError(f"{name}: threshold must be in (0, 1), got {cfg['threshold']!r}")
    need = {"vnet": 16, "segresnet": 2 ** (len(cfg.get("blocks_down", [1, 2, 2, 4])) - 1)}
    if name in ("unet", "attention_unet"):
        need[name] = 2 ** len(cfg.get("strides", []))
    need["unetr"] = 16
    need["swin_unetr"] = 32
    div = need.get(name, 1)
    if any(int(p) % div for p in patch):
        raise ConfigError(f"{name}: every patch_size side must be divisible by {div}, got {patch}")


class MonaiSegNet(nn.Module):
    """A MONAI network (``self.net``) with its ichseg configuration; ``forward`` returns one
    channel of hemorrhage logits for ``(B, 1, H, W, D)`` input."""

    in_channels = 1

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        super().__init__()
        self.arch = name
        self.config = dict(config)
        kwargs = {k: v for k, v in config.items() if k not in INFERENCE_KEYS}
        fixed: dict[str, Any] = {"spatial_dims": 3, "in_channels": 1, "out_channels": 1}
        if name == "unetr":
            fixed["img_size"] = tuple(int(p) for p in config["patch_size"])
        clash = sorted(set(kwargs) & {"in_channels", "out_channels", "spatial_dims", "img_size"})
        if clash:
            raise ConfigError(f"{name}: {', '.join(clash)} cannot be overridden")
        try:
            self.net = _monai_class(name)(**fixed, **kwargs)
        except (TypeError, ValueError, AssertionError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(f"{name}: invalid network arguments ({first})") from None

    @property
    def patch_size(self) -> tuple[int, int, int]:
        p = self.config["patch_size"]
        return (int(p[0]), int(p[1]), int(p[2]))

    def example_input_shape(self, dhw: tuple[int, int, int] | None = None) -> tuple[int, ...]:
        """Input tensor shape for ``ichseg info``: one patch, or ``D`` slices of ``H x W``."""
        if dhw is None:
            return (1, 1, *self.patch_size)
        d, h, w = dhw
        return (1, 1, h, w, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_monai_net(name: str, preset: str | None = None, **overrides: Any) -> MonaiSegNet:
    """Build baseline ``name`` from ``preset`` (default ``"lite"``) with config ``overrides``."""
    return MonaiSegNet(name, preset_config(name, preset, **overrides))


def _register(name: str) -> None:
    def builder(preset: str | None = None, **overrides: Any) -> MonaiSegNet:
        return build_monai_net(name, preset, **overrides)

    builder.__name__ = builder.__qualname__ = f"build_{name}"
    builder.__doc__ = f"Registry builder of MONAI baseline ``{name}`` (see module docstring)."
    register_model(name)(builder)


for _name in MONAI_MODELS:
    _register(_name)
