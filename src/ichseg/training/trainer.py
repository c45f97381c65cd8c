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
import csv
import json
import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ichseg.data.dataset import open_dataset
from ichseg.data.splits import Splits, make_splits
from ichseg.errors import ConfigError, EmptyMaskError, InputFileError
from ichseg.models.registry import (
    build_model,
    check_finite_state_dict,
    model_to_state,
    safe_torch_load,
)
from ichseg.training.config import TrainConfig
from ichseg.training.data import (
    PreparedCase,
    SampleStream,
    build_sample,
    prepare_case,
    sample_rng,
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
)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def dice_score(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """Hard Dice; both empty counts as 1 (see :mod:`ichseg.evaluation.metrics`)."""
    p, g = pred.bool(), gt.bool()
    denom = int(p.sum()) + int(g.sum())
    return 1.0 if denom == 0 else 2.0 * int((p & g).sum()) / denom


def capture_rng_state(cuda: bool = False) -> dict[str, Any]:
    """Global torch (and CUDA when ``cuda``), numpy and python ``random`` states as tensors,
    lists, ints, floats and strings only, so that ``torch.load(weights_only=True)`` reads them."""
    np_state = np.random.get_state(legacy=False)
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if cuda else [],
        "numpy": {
            "bit_generator": str(np_state["bit_generator"]),
            "key": [int(v) for v in np_state["state"]["key"]],
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": [int(py_version), [int(v) for v in py_internal], py_gauss],
    }


def restore_rng_state(rng: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states only when this process has as many
    devices as were saved)."""
    torch.set_rng_state(rng["torch"].cpu().to(torch.uint8))
    cuda_states = list(rng.get("cuda") or [])
    if cuda_states and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda_states):
        torch.cuda.set_rng_state_all([t.cpu().to(torch.uint8) for t in cuda_states])
    npr = rng["numpy"]
    np.random.set_state(
        {
            "bit_generator": str(npr["bit_generator"]),
            "state": {"key": np.asarray(npr["key"], dtype=np.uint32), "pos": int(npr["pos"])},
            "has_gauss": int(npr["has_gauss"]),
            "gauss": float(npr["gauss"]),
        }
    )
    version, internal, gauss = rng["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistInfo:
    """Initialise torch.distributed when launched by torchrun (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    return DistInfo(dist.get_rank(), world, local)


class Trainer:
    """Train one model on one fold of a dataset (see module docstring)."""

    def __init__(self, cfg: TrainConfig, progress: bool = True) -> None:
        cfg.validate()
        self.cfg = cfg
        self.progress = progress
        self.out = Path(cfg.out)
        self.dist = init_distributed()
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.device = resolve_device(cfg.device)
        if self.dist.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.step = 0
        self.elapsed = 0.0  #: training seconds before this process (restored on resume)
        self.best_val = -math.inf
        self.validations_without_improvement = 0
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ set-up
    def _splits(self) -> Splits:
        cfg = self.cfg
        path = Path(cfg.splits_file) if cfg.splits_file else self.out / "splits.json"
        if path.exists():
            return Splits.from_json(path)
        dataset = self.dataset
        splits = make_splits(
            dataset, k=cfg.folds, seed=cfg.split_seed, val_fraction=cfg.val_fraction
        )
        if self.dist.is_main:
            splits.to_json(path)
        return splits

    def setup(self) -> None:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        dataset = open_dataset(cfg.data)
        if cfg.min_hemorrhage_slices > 0:
            dataset = dataset.filter_min_hemorrhage_slices(cfg.min_hemorrhage_slices)
        self.dataset = dataset
        splits = self._splits()
        fold = splits.fold(cfg.fold)
        torch.manual_seed(cfg.seed)  # identical initial weights for a given seed
        self.model = build_model(cfg.model, cfg.preset, **cfg.model_overrides)
        if cfg.grad_checkpointing and hasattr(self.model, "set_checkpointing"):
            self.model.set_checkpointing(True)
        self.model.to(self.device)
        slice_size = int(self.model.config.slice_size)
        cache = Path(cfg.cache_dir) if cfg.cache_dir else self.out / "cache"
        by_id = {c.case_id: c for c in dataset.cases}
        missing = [i for i in (*fold.train, *fold.val) if i not in by_id]
        if missing:
            raise ConfigError(f"splits mention cases not in the dataset: {', '.join(missing[:5])}")
        self.train_cases = self._prepare([by_id[i] for i in fold.train], slice_size, cache, "train")
        val_ids = list(fold.val)[: cfg.val_cases] if cfg.val_cases else list(fold.val)
        self.val_cases = [
            c
            for c in self._prepare([by_id[i] for i in val_ids], slice_size, cache, "val")
            if c.positive_slices.size > 0
        ]
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
        if (self.out / "last.pt").exists():
            self.load_checkpoint(self.out / "last.pt")
            if self.dist.is_main:
                self._truncate_log(self.step)
        elif cfg.init_from:
            self.init_weights(cfg.init_from)
        if self.dist.is_main:
            cfg.save(self.out / "config.yaml")

    def _prepare(self, cases: list, slice_size: int, cache: Path, label: str) -> list[PreparedCase]:
        from rich.progress import track

        items = track(cases, description=f"preparing {label} cases") if self.progress else cases
        with_hu = self.cfg.sampler.domain_randomization is not None
        return [prepare_case(c, slice_size, self.cfg.window, cache, with_hu=with_hu) for c in items]

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        return {
            **model_to_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(cuda=self.device.type == "cuda"),
            "step": self.step,
            "elapsed_seconds": self.elapsed_now(),
            "best_val": self.best_val,
            "validations_without_improvement": self.validations_without_improvement,
            "train_config": self.cfg.to_dict(),
        }

    def save_checkpoint(self, path: Path) -> None:
        if not self.dist.is_main:
            return
        tmp = path.with_suffix(".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)

    def load_checkpoint(self, path: Path) -> None:
        """Resume from ``path`` (read with ``weights_only=True``); a file that is unsafe to
        unpickle, not a training checkpoint or made for another model raises
        :class:`InputFileError`."""
        state = safe_torch_load(path, map_location=self.device)
        needed = {"state_dict", "optimizer", "scaler", "step", "best_val"}
        if not isinstance(state, dict) or not needed <= set(state):
            raise InputFileError(
                f"{path}: not an ichseg training checkpoint (needs keys "
                f"{', '.join(sorted(needed))}); delete it or use another --out to start afresh"
            )
        try:
            self.model.load_state_dict(state["state_dict"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
            self.step = int(state["step"])
            self.elapsed = float(state.get("elapsed_seconds", 0.0))
            self.best_val = float(state["best_val"])
            self.validations_without_improvement = int(
                state.get("validations_without_improvement", 0)
            )
            if state.get("rng") is not None:  # checkpoints written before RNG states were kept
                restore_rng_state(state["rng"])
        except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputFileError(f"{path}: cannot resume from this checkpoint: {first}") from None

    def init_weights(self, path: str | Path) -> dict[str, int]:
        """Warm start: copy every parameter whose name and shape match from a checkpoint or
        weights file (e.g. a full model into an ablation variant that lacks some modules).

        Optimizer state and step count start fresh. Returns ``{"loaded", "skipped", "new"}``.
        """
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"--init {p}: file not found")
        state = safe_torch_load(p)
        source = state.get("state_dict") if isinstance(state, dict) else None
        if not isinstance(source, dict):
            raise ConfigError(f"--init {p}: not an ichseg checkpoint or weights file")
        check_finite_state_dict(source, p)
        own = self.model.state_dict()
        matched = {
            k: v.to(own[k].dtype)
            for k, v in source.items()
            if k in own and isinstance(v, torch.Tensor) and tuple(v.shape) == tuple(own[k].shape)
        }
        for k, v in source.items():  # first convolutions of a model with more input channels
            if k in own and k not in matched and isinstance(v, torch.Tensor):
                widened = _widen_input_channels(v, own[k])
                if widened is not None:
                    matched[k] = widened
        if not matched:
            raise ConfigError(f"--init {p}: no parameter matches this model ({self.cfg.preset})")
        self.model.load_state_dict(matched, strict=False)
        facts = {
            "loaded": len(matched),
            "skipped": len(source) - len(matched),
            "new": len(own) - len(matched),
        }
        if self.dist.is_main:
            (self.out / "init.json").write_text(json.dumps({"init_from": str(p), **facts}))
        return facts

    def elapsed_now(self) -> float:
        """Training seconds so far, including earlier (resumed) processes."""
        start = getattr(self, "_t0", None)
        return self.elapsed + (time.perf_counter() - start if start is not None else 0.0)

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
            return {**inter, "val_vim_dice": slice_val["val_vim_dice"]}
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
    def _truncate_log(self, step: int) -> None:
        """Drop log rows after ``step``: a killed run logged them after its last checkpoint and
        the resumed run logs those steps again."""
        path = self.out / "log.csv"
        if not path.exists():
            return
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        keep = [r for r in rows if not r.get("step") or int(r["step"]) <= step]
        if len(keep) == len(rows):
            return
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows({k: r.get(k, "") for k in LOG_FIELDS} for r in keep)
        os.replace(tmp, path)

    def _log(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if not self.dist.is_main:
            return
        path = self.out / "log.csv"
        new = not path.exists()
        with path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in LOG_FIELDS})

    def _steps(self) -> Iterator[int]:
        start, end = self.step, self.cfg.max_steps
        if self.progress and self.dist.is_main:
            from tqdm import tqdm

            yield from tqdm(range(start, end), initial=start, total=end, desc="training")
        else:
            yield from range(start, end)

    def run(self) -> dict[str, Any]:
        """Train until ``max_steps`` (or early stopping); returns a summary."""
        if not hasattr(self, "model"):
            self.setup()
        cfg = self.cfg
        t0 = self._t0 = time.perf_counter()
        window: list[dict[str, float]] = []
        stopped_early = False
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
                val = self.validate() if self.val_cases else {"val_dice": float("nan")}
                self._log(
                    {
                        "step": self.step,
                        "kind": "val",
                        **val,
                        "seconds": round(self.elapsed_now(), 2),
                    }
                )
                if val["val_dice"] > self.best_val:
                    self.best_val = val["val_dice"]
                    self.validations_without_improvement = 0
                    self.save_checkpoint(self.out / "best.pt")
                else:
                    self.validations_without_improvement += 1
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
