"""The ICH-HPINet training loop: fold-aware, resumable, logged, optionally distributed.

* Checkpoints (``last.pt``) are written atomically every ``ckpt_every`` steps; a killed run resumes
  from the last one and continues exactly as the uninterrupted run (every step's sample and
  dropout draw depend only on ``(seed, step, rank)``).
* ``best.pt`` keeps the weights with the best validation Dice on the fold's **inner validation**
  split (never the test fold); ``log.csv`` has one row per logged step and per validation.
* Checkpoints hold only tensors, numbers, strings, lists and dicts (optimizer, AMP scaler and the
  torch / numpy / python RNG states included) and are read back with ``weights_only=True``
  (:func:`ichseg.models.registry.safe_torch_load`): a ``last.pt`` or ``--init`` file with
  anything else in its pickle is refused with :class:`~ichseg.errors.InputFileError`.
* Multi-GPU: launch with ``torchrun --nproc_per_node N -m ichseg.cli train ...``; each rank draws
  its own samples, gradients are averaged by DistributedDataParallel, rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ichseg.data.dataset import open_dataset
from ichseg.data.splits import make_splits
from ichseg.errors import ConfigError, EmptyMaskError
from ichseg.models.registry import build_model
from ichseg.training.common import (
    DistInfo,
    RunBase,
    capture_rng_state,
    dice_score,
    init_distributed,
    read_training_checkpoint,
    resolve_device,
    restore_rng_state,
    resume_errors,
)
from ichseg.training.config import TrainConfig
from ichseg.training.data import (
    PreparedCase,
    SampleStream,
    build_sample,
    prepare_case,
    sample_rng,
    shifted_validation_cases,
)
from ichseg.training.losses import hpinet_loss

LOG_FIELDS = (
    "step",
    "kind",
    "loss",
    "vsl",
    "ssl",
    "fcl",
    "val_dice",
    "val_vim_dice",
    "val_dice_final",
    "val_noc85",
    "lr",
    "seconds",
    "val_dice_clean",
    "val_dice_shifted",
)
#: moved to :mod:`ichseg.training.common`; still importable from here
__all__ = [
    "LOG_FIELDS",
    "DistInfo",
    "Trainer",
    "capture_rng_state",
    "cross_validate",
    "dice_score",
    "init_distributed",
    "resolve_device",
    "restore_rng_state",
    "train",
]


class Trainer(RunBase):
    """Train one model on one fold of a dataset (see module docstring)."""

    log_fields = LOG_FIELDS

    # ------------------------------------------------------------------ set-up
    def setup(self) -> None:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        dataset = open_dataset(cfg.data)
        if cfg.min_hemorrhage_slices > 0:
            dataset = dataset.filter_min_hemorrhage_slices(cfg.min_hemorrhage_slices)
        self.dataset = dataset
        fold = self._splits(dataset).fold(cfg.fold)
        torch.manual_seed(cfg.seed)  # identical initial weights for a given seed
        self.model = build_model(cfg.model, cfg.preset, **cfg.model_overrides)
        if cfg.grad_checkpointing and hasattr(self.model, "set_checkpointing"):
            self.model.set_checkpointing(True)
        self.model.to(self.device)
        slice_size = int(self.model.config.slice_size)
        cache = Path(cfg.cache_dir) if cfg.cache_dir else self.out / "cache"
        by_id = self._cases_by_id(dataset, (*fold.train, *fold.val))
        self.train_cases = self._prepare([by_id[i] for i in fold.train], slice_size, cache, "train")
        val_ids = list(fold.val)[: cfg.val_cases] if cfg.val_cases else list(fold.val)
        self.val_cases = [
            c
            for c in self._prepare([by_id[i] for i in val_ids], slice_size, cache, "val")
            if c.positive_slices.size > 0
        ]
        self.val_shifted_cases: list[PreparedCase] = []
        if cfg.val_shifted is not None and self.val_cases:
            self.val_shifted_cases, applied = shifted_validation_cases(
                self.val_cases, cfg.val_shifted, cfg.seed, cfg.window
            )
            if self.dist.is_main:
                (self.out / "val_shifted.json").write_text(json.dumps(applied, indent=1) + "\n")
        self.stream = SampleStream(self.train_cases, cfg.sampler, cfg.seed, self.dist.rank)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        use_cuda_amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_cuda_amp)
        self.train_model: nn.Module = self.model
        if self.dist.world > 1:
            self.train_model = nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        self._resume_or_init()

    def _prepare(self, cases: list, slice_size: int, cache: Path, label: str) -> list[PreparedCase]:
        from rich.progress import track

        items = track(cases, description=f"preparing {label} cases") if self.progress else cases
        with_hu = self.cfg.sampler.domain_randomization is not None or (
            label == "val" and self.cfg.val_shifted is not None
        )
        return [prepare_case(c, slice_size, self.cfg.window, cache, with_hu=with_hu) for c in items]

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        return self._run_state({"optimizer": self.optimizer, "scaler": self.scaler})

    def load_checkpoint(self, path: Path) -> None:
        """Resume from ``path`` (read with ``weights_only=True``); a file that is unsafe to
        unpickle, not a training checkpoint or made for another model raises
        :class:`InputFileError`."""
        needed = {"state_dict", "optimizer", "scaler", "step", "best_val"}
        state = read_training_checkpoint(path, self.device, needed, "an ichseg training checkpoint")
        with resume_errors(path):
            self._restore_run_state(state, {"optimizer": self.optimizer, "scaler": self.scaler})

    def init_weights(self, path: str | Path) -> dict[str, int]:
        """Warm start: copy every parameter whose name and shape match from a checkpoint or
        weights file (e.g. a full model into an ablation variant that lacks some modules; first
        convolutions of a model with more input channels are widened).

        Optimizer state and step count start fresh. Returns ``{"loaded", "skipped", "new"}``.
        """
        return self._warm_start(path, f"model ({self.cfg.preset})", widen=_widen_input_channels)

    # ------------------------------------------------------------------ steps
    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.cfg.amp:
            return contextlib.nullcontext()
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    def _to_device(self, sample: dict[str, Any]) -> dict[str, Any]:
        return {
            k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in sample.items()
        }

    def _next_sample(self, step: int) -> dict[str, Any]:
        for attempt in range(16):
            key = step * 16 + attempt if attempt else step
            if self.cfg.iterative.enabled:
                sample = self._iterative_sample(key, step)
            else:
                sample = self.stream(key)
            if sample is not None and sample["k_indices"]:
                return sample
        raise EmptyMaskError("could not draw a training sample with propagation targets")

    def _iterative_sample(self, key: int, step: int) -> dict[str, Any] | None:
        from ichseg.training.iterative import build_iterative_sample

        rng = sample_rng(self.cfg.seed, key, self.dist.rank)
        cases = self.stream.cases
        case = cases[int(rng.integers(len(cases)))]
        try:
            return build_iterative_sample(
                self.model, case, self.cfg.sampler, self.cfg.iterative, rng, step
            )
        except (ConfigError, EmptyMaskError):  # e.g. a crop left no hemorrhage: draw again
            return None

    def train_step(self, step: int) -> dict[str, float]:
        """One optimisation step on the sample of ``step`` (deterministic per step)."""
        self.model.train()
        torch.manual_seed(int(sample_rng(self.cfg.seed, step, self.dist.rank, 1).integers(2**31)))
        s = self._to_device(self._next_sample(step))
        extra = {}
        if "new_hints" in s:
            memory = s.get("memory")
            if memory is not None:
                memory = tuple(m.to(self.device) for m in memory)
            extra = {"new_hints": s["new_hints"], "memory": memory}
        with self._autocast():
            outputs = self.train_model(
                s["volume"], s["hints"], s["prev_mask"], s["r_index"], s["k_indices"], **extra
            )
        losses = hpinet_loss(
            outputs,
            s["gt"],
            s["r_index"],
            s["k_indices"],
            self.cfg.loss,
            voxel_weight=s.get("loss_weight"),
        )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses.total).backward()
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return losses.as_floats()

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Selection metric ``val_dice``: with ``val_rounds`` > 0 the mean Dice over that many
        rounds of full simulated sessions (:func:`~ichseg.training.iterative.interactive_validation`,
        which rewards following corrections), else the mean slice Dice (SIM + propagated
        targets) of one fixed sample per validation case; ``val_vim_dice`` is always the VIM's
        3D Dice on those samples."""
        slice_val = self._validate_slices()
        if self.cfg.val_rounds > 0:
            from ichseg.training.iterative import interactive_validation

            inter = interactive_validation(
                self.model, self.val_cases, self.cfg.val_rounds, self.cfg.seed
            )
            out = {**inter, "val_vim_dice": slice_val["val_vim_dice"]}
            if self.val_shifted_cases:
                shifted = interactive_validation(
                    self.model, self.val_shifted_cases, self.cfg.val_rounds, self.cfg.seed
                )
                out["val_dice_clean"] = inter["val_dice"]
                out["val_dice_shifted"] = shifted["val_dice"]
                out["val_dice"] = 0.5 * (inter["val_dice"] + shifted["val_dice"])
            return out
        return slice_val

    def _validate_slices(self) -> dict[str, float]:
        self.model.eval()
        slice_scores, vim_scores = [], []
        for idx, case in enumerate(self.val_cases):
            rng = sample_rng(self.cfg.seed + 7919, idx)
            sample = build_sample(case, self.cfg.sampler, rng, step=10**9)
            if not sample["k_indices"]:
                continue
            s = self._to_device(sample)
            with self._autocast():
                out = self.model(
                    s["volume"], s["hints"], s["prev_mask"], s["r_index"], s["k_indices"]
                )
            gt = s["gt"]
            scores = [dice_score(out["sim_logits"] > 0, gt[:, :, s["r_index"]])]
            scores += [
                dice_score(lg > 0, gt[:, :, k])
                for k, lg in zip(s["k_indices"], out["mpffm_logits"], strict=False)
            ]
            slice_scores.append(float(np.mean(scores)))
            if out.get("vim_logits") is not None:
                vl = out["vim_logits"]
                g = torch.nn.functional.adaptive_avg_pool3d(gt.float(), vl.shape[2:]) >= 0.5
                vim_scores.append(dice_score(vl > 0, g))
        return {
            "val_dice": float(np.mean(slice_scores)) if slice_scores else float("nan"),
            "val_vim_dice": float(np.mean(vim_scores)) if vim_scores else float("nan"),
        }

    # ------------------------------------------------------------------ loop
    def _validate_and_select(self) -> None:
        val = self.validate() if self.val_cases else {"val_dice": float("nan")}
        self._log(
            {"step": self.step, "kind": "val", **val, "seconds": round(self.elapsed_now(), 2)}
        )
        self._select(val["val_dice"])

    def run(self) -> dict[str, Any]:
        """Train until ``max_steps`` (or early stopping); returns a summary."""
        if not hasattr(self, "model"):
            self.setup()
        cfg = self.cfg
        t0 = self._t0 = time.perf_counter()
        window: list[dict[str, float]] = []
        stopped_early = False
        if cfg.val_at_start and self.step == 0 and self.val_cases:
            self._validate_and_select()
        for step in self._steps():
            window.append(self.train_step(step))
            self.step = step + 1
            if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                self._log(
                    {
                        "step": self.step,
                        "kind": "train",
                        **mean,
                        "lr": cfg.lr,
                        "seconds": round(self.elapsed_now(), 2),
                    }
                )
                window = []
            if self.step % cfg.val_every == 0 or self.step == cfg.max_steps:
                self._validate_and_select()
                if cfg.patience and self.validations_without_improvement >= cfg.patience:
                    stopped_early = True
            if self.step % cfg.ckpt_every == 0 or self.step == cfg.max_steps or stopped_early:
                self.save_checkpoint(self.out / "last.pt")
            if stopped_early:
                break
        return {
            "steps": self.step,
            "best_val_dice": self.best_val,
            "stopped_early": stopped_early,
            "seconds": time.perf_counter() - t0,
            "out": str(self.out),
        }


def train(cfg: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Train one fold (see :class:`Trainer`)."""
    return Trainer(cfg, progress=progress).run()


def cross_validate(cfg: TrainConfig, folds: list[int] | None = None) -> list[dict[str, Any]]:
    """Five-fold cross-validation driver: one run directory per fold, shared splits file."""
    results = []
    base = Path(cfg.out)
    splits_file = cfg.splits_file or str(base / "splits.json")
    for fold in folds if folds is not None else range(cfg.folds):
        fold_cfg = TrainConfig.from_dict(
            {
                **cfg.to_dict(),
                "fold": fold,
                "out": str(base / f"fold{fold}"),
                "splits_file": splits_file,
            }
        )
        if not Path(splits_file).exists():
            Path(splits_file).parent.mkdir(parents=True, exist_ok=True)
            ds = open_dataset(cfg.data)
            if cfg.min_hemorrhage_slices > 0:
                ds = ds.filter_min_hemorrhage_slices(cfg.min_hemorrhage_slices)
            make_splits(
                ds, k=cfg.folds, seed=cfg.split_seed, val_fraction=cfg.val_fraction
            ).to_json(splits_file)
        results.append({"fold": fold, **train(fold_cfg)})
    return results


def _widen_input_channels(source: torch.Tensor, own: torch.Tensor) -> torch.Tensor | None:
    """A convolution weight ``source`` for a model whose same layer takes more input channels
    (``own``): the old channels are copied, the new ones start at zero, so the widened model
    computes exactly what the source did until it learns to use them. ``None`` if the shapes
    differ in any other way."""
    if source.ndim < 3 or source.ndim != own.ndim or source.shape[1] >= own.shape[1]:
        return None
    if source.shape[0] != own.shape[0] or source.shape[2:] != own.shape[2:]:
        return None
    out = torch.zeros_like(own)
    out[:, : source.shape[1]] = source.to(own.dtype)
    return out
