"""``nnUNetTrainerIchsegBudget``: nnU-Net's default trainer with a stated training budget and
checkpoints that load with ``torch.load(weights_only=True)``.

Only the schedule changes (epochs, iterations per epoch, validation iterations, whether the
final full-case validation runs); network, losses, augmentation, sampling and learning-rate
schedule are nnU-Net's own. Without the variables below the schedule *is* nnU-Net's default
(1000 epochs x 250 iterations, 50 validation iterations, final validation on). The budget comes
from environment variables because nnU-Net instantiates trainers itself with a fixed signature:

* ``ICHSEG_NNUNET_EPOCHS``, ``ICHSEG_NNUNET_ITERS`` (training iterations per epoch),
  ``ICHSEG_NNUNET_VAL_ITERS``;
* ``ICHSEG_NNUNET_FINAL_VALIDATION`` ``1``/``0``: nnU-Net's sliding-window prediction of every
  validation case after training (with mirroring; slow on CPU).

nnU-Net's own checkpoints keep numpy scalars in their training log, which a weights-only load
refuses; this trainer stores those as plain Python numbers (nothing else differs).

nnU-Net imports this file by name from ``nnUNet_extTrainer`` (set by :mod:`ichseg.nnunet`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


def _env_int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name, "").strip()
    value = int(raw) if raw else default
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def plain(value: Any) -> Any:
    """``value`` with numpy scalars/arrays turned into Python numbers/lists (recursively)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    return value


class nnUNetTrainerIchsegBudget(nnUNetTrainer):
    """nnU-Net's default trainer with epochs and iterations from ``ICHSEG_NNUNET_*``."""

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = _env_int("ICHSEG_NNUNET_EPOCHS", self.num_epochs, 1)
        self.num_iterations_per_epoch = _env_int(
            "ICHSEG_NNUNET_ITERS", self.num_iterations_per_epoch, 1
        )
        self.num_val_iterations_per_epoch = _env_int(
            "ICHSEG_NNUNET_VAL_ITERS", self.num_val_iterations_per_epoch, 1
        )
        self.final_validation = os.environ.get("ICHSEG_NNUNET_FINAL_VALIDATION", "1") != "0"

    def save_checkpoint(self, filename: str) -> None:
        log = self.logger.get_checkpoint()  # the logger's own dict: cleaned in place
        for key in list(log):
            log[key] = plain(log[key])
        self._best_ema = plain(self._best_ema)
        self.inference_allowed_mirroring_axes = plain(self.inference_allowed_mirroring_axes)
        super().save_checkpoint(filename)

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        if not self.final_validation:
            self.print_to_log_file("final validation skipped (ICHSEG_NNUNET_FINAL_VALIDATION=0)")
            return
        super().perform_actual_validation(save_probabilities)
