"""Automatic segmentation of a whole scan by sliding-window inference (the HemSeg recipe).

:class:`AutomaticPredictor` wraps a trained automatic model (any registry model whose ``config``
has ``patch_size``, ``target_spacing``, ``clip``, ``mean``, ``std`` and ``threshold``, e.g. the
MONAI baselines of :mod:`ichseg.models.monai_nets`):

1. :func:`ichseg.preprocess.hemseg.hemseg_preprocess` with the model's spacing and its fixed
   clip + z-score (canonical orientation, resampling);
2. MONAI :func:`~monai.inferers.sliding_window_inference` over ``patch_size`` windows (overlap
   0.25, constant blending; a scan smaller than a window is padded with the clipped air value);
3. sigmoid, then the probabilities are resampled (linear) and reoriented back onto the **source
   scan's grid**: the output has the input's shape and affine.

``segment`` thresholds those probabilities at the model's ``threshold`` (``> threshold``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ichseg.errors import ConfigError
from ichseg.io.volume import Intensity, IntensityKind, Volume
from ichseg.preprocess.hemseg import HemSegConfig, HemSegResult, hemseg_preprocess

REQUIRED_KEYS: tuple[str, ...] = ("patch_size", "target_spacing", "clip", "mean", "std")


def inference_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The preprocessing/inference parameters of an automatic model's config (checked)."""
    missing = [k for k in REQUIRED_KEYS if k not in config]
    if missing:
        raise ConfigError(
            f"model config lacks {', '.join(missing)}: not an automatic segmentation model"
        )
    patch = tuple(int(p) for p in config["patch_size"])
    lo, hi = (float(v) for v in config["clip"])
    return {
        "patch_size": patch,
        "target_spacing": tuple(float(s) for s in config["target_spacing"]),
        "clip": (lo, hi),
        "mean": float(config["mean"]),
        "std": float(config["std"]),
        "threshold": float(config.get("threshold", 0.5)),
    }


def hemseg_config_of(config: dict[str, Any]) -> HemSegConfig:
    """The :class:`HemSegConfig` (fixed clip + z-score) a model was trained with."""
    s = inference_settings(config)
    return HemSegConfig(
        s["target_spacing"], "fixed", fixed_clip=s["clip"], mean=s["mean"], std=s["std"]
    )


def air_value(config: dict[str, Any]) -> float:
    """The normalised value of clipped air: what windows outside the scan are padded with."""
    s = inference_settings(config)
    return (s["clip"][0] - s["mean"]) / s["std"]


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily use ``n`` torch CPU threads (``None``: leave as is)."""
    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


@torch.no_grad()
def sliding_window_probabilities(
    model: nn.Module,
    image: np.ndarray,
    patch_size: tuple[int, int, int],
    *,
    pad_value: float,
    overlap: float = 0.25,
    sw_batch_size: int = 4,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> np.ndarray:
    """Sigmoid probabilities (float32, same shape) of a normalised ``(i, j, k)`` array."""
    from monai.inferers import sliding_window_inference

    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None].to(device)
    was_training = model.training
    model.eval()
    try:
        logits = sliding_window_inference(
            x,
            roi_size=tuple(int(p) for p in patch_size),
            sw_batch_size=sw_batch_size,
            predictor=model,
            overlap=overlap,
            padding_mode="constant",
            cval=float(pad_value),
            progress=progress,
        )
    finally:
        model.train(was_training)
    return torch.sigmoid(torch.as_tensor(logits)).float()[0, 0].cpu().numpy()


class AutomaticPredictor:
    """Whole-scan automatic segmentation with a trained model (see module docstring).

    ``threads`` sets torch's CPU threads during prediction; ``progress`` shows MONAI's
    sliding-window progress bar. ``overlap``, ``sw_batch_size`` and ``device`` tune the
    sliding window."""

    def __init__(
        self,
        model: nn.Module,
        *,
        threads: int | None = None,
        progress: bool = False,
        overlap: float = 0.25,
        sw_batch_size: int = 4,
        device: str | torch.device = "cpu",
    ) -> None:
        from ichseg.models.registry import model_config_dict

        self.config = model_config_dict(model)
        self.settings = inference_settings(self.config)
        if not 0.0 <= overlap < 1.0:
            raise ConfigError(f"overlap must be in [0, 1), got {overlap}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.threads = threads
        self.progress = progress
        self.overlap = float(overlap)
        self.sw_batch_size = int(sw_batch_size)

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs: Any) -> AutomaticPredictor:
        """Load a checkpoint or exported weights file (weights-only) and wrap it."""
        from ichseg.models.registry import load_model

        model, _ = load_model(path)
        return cls(model, **kwargs)

    @property
    def threshold(self) -> float:
        return float(self.settings["threshold"])

    @property
    def patch_size(self) -> tuple[int, int, int]:
        return self.settings["patch_size"]

    def preprocess(self, volume: Volume) -> HemSegResult:
        """The HemSeg preprocessing of ``volume`` with this model's parameters."""
        return hemseg_preprocess(volume, None, hemseg_config_of(self.config))

    def predict(self, volume: Volume) -> Volume:
        """Hemorrhage probabilities (float32 in [0, 1]) on ``volume``'s own grid and affine."""
        prep = self.preprocess(volume)
        with torch_threads(self.threads):
            prob = sliding_window_probabilities(
                self.model,
                prep.image.array,
                self.patch_size,
                pad_value=air_value(self.config),
                overlap=self.overlap,
                sw_batch_size=self.sw_batch_size,
                device=self.device,
                progress=self.progress,
            )
        back = np.clip(prep.record.undo(prob, kind="prob"), 0.0, 1.0).astype(np.float32)
        meta = {**volume.meta, "automatic_model": getattr(self.model, "registry_name", "")}
        return Volume(back, volume.affine.copy(), Intensity(IntensityKind.UNKNOWN), meta)

    def segment(self, volume: Volume) -> Volume:
        """Binary uint8 mask (probability ``> threshold``) on ``volume``'s grid."""
        prob = self.predict(volume)
        mask = (prob.array > self.threshold).astype(np.uint8)
        return Volume(mask, volume.affine.copy(), Intensity.label(), dict(prob.meta))
