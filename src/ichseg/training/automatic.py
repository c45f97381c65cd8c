"""Trainer of the automatic 3D baselines (the MONAI networks of the HemSeg-200 benchmark).

The HemSeg-200 recipe (reference notes §7), on ichseg's splits, checkpoints and logs:

* **Preprocessing**: canonical orientation and resampling to the model's ``target_spacing``
  (:func:`ichseg.preprocess.hemseg.hemseg_preprocess`); the resampled HU image (float16) and mask
  (uint8) of every case are cached once as ``.npy`` files under ``cache_dir`` and memory-mapped,
  so epochs never re-read NIfTI. Intensities are clipped to the 0.5/99.5 percentiles of the
  **training split's** foreground voxels and z-scored with that split's foreground mean/std
  (:func:`~ichseg.preprocess.hemseg.foreground_intensity_stats`, nnU-Net style); these numbers
  are stored in the model config, so inference applies exactly the same normalisation.
* **Samples**: our own numpy sampler (deterministic per ``(seed, step, rank)``, so a resumed run
  sees the samples of the uninterrupted one): each step takes ``batch_cases`` random training
  cases and ``crops_per_case`` patches of ``patch_size`` from each, centred on a random
  hemorrhage voxel with probability ``pos_fraction`` (MONAI's pos:neg = 1:1 is 0.5) and else on a
  random head voxel (HU above the lower clip bound); scans smaller than a patch are padded with
  clipped air. Random flips with probability ``flip_prob`` on each of the three axes.
* **Loss / optimiser**: MONAI ``DiceLoss(sigmoid=True)``; AdamW; StepLR every ``lr_step_epochs``
  epochs (an epoch = ``ceil(n_train / batch_cases)`` steps) with factor ``lr_gamma``.
* **Validation**: sliding-window inference (:mod:`ichseg.inference.automatic`) on the inner
  validation split, sigmoid > threshold, mean 3D Dice on the resampled grid; ``best.pt`` keeps the
  best; early stop after ``patience`` validations without improvement; ``max_minutes`` ends the
  run after that much training time (a final validation and ``last.pt`` follow).
* **Checkpoints**: ``last.pt`` (atomic, resumable) and ``best.pt`` hold
  :func:`~ichseg.models.registry.model_to_state` plus optimizer, scheduler, RNG states, step,
  elapsed seconds and the training config: plain tensors and values, read back with
  ``weights_only=True``. ``log.csv`` has the columns of the HPINet trainer that
  ``ichseg training-curves`` reads (``step, kind, loss, val_dice, lr, seconds``).
* **DDP**: ``torchrun --nproc_per_node N -m ichseg.cli train --model unet ...`` (as the HPINet
  trainer: each rank draws its own samples, DistributedDataParallel averages gradients, rank 0
  writes files; the ``max_minutes`` stop is agreed between ranks).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ichseg.data.dataset import Case, open_dataset
from ichseg.data.splits import make_splits
from ichseg.errors import ConfigError, EmptyMaskError, InputFileError
from ichseg.io.volume import Intensity, Volume
from ichseg.models.registry import build_model
from ichseg.preprocess.hemseg import HemSegConfig, foreground_intensity_stats, hemseg_preprocess
from ichseg.training.common import (
    FoldConfig,
    RunBase,
    dice_score,
    read_training_checkpoint,
    resume_errors,
)

#: losses of :func:`segmentation_loss` (``dice`` = the HemSeg-200 recipe)
SEGMENTATION_LOSSES: tuple[str, ...] = ("dice", "dice_ce")
LOG_FIELDS = ("step", "kind", "loss", "val_dice", "lr", "seconds")
CACHE_VERSION = 1


@dataclass
class Config(FoldConfig):
    """Training options of an automatic baseline; saved beside the run as ``config.yaml``."""

    #: the fields of :class:`FoldConfig` first (data, out, model, ... splits_file)
    out: str = "runs/unet-lite"
    model: str = "unet"
    min_hemorrhage_slices: int = 1  #: HemSeg-200 has only hemorrhage scans; 0 keeps all
    max_steps: int = 2000
    max_minutes: float | None = None  #: wall-clock training budget (None: no limit)
    lr: float | None = None  #: None: the preset's (paper 0.01, lite 0.001)
    weight_decay: float = 0.01
    lr_step_epochs: float = 10.0
    lr_gamma: float = 0.9
    batch_cases: int | None = None  #: volumes per step (None: paper 4 for unet else 2; lite 2)
    crops_per_case: int | None = None  #: patches per volume (None: paper 4, lite 1)
    pos_fraction: float = 0.5
    flip_prob: float = 0.5
    normalization: str = "dataset"  #: "dataset" (training-split stats) or "preset" (HemSeg-200)
    #: "dice" (HemSeg-200: MONAI DiceLoss, sigmoid) or "dice_ce" (DiceCELoss: Dice + binary CE,
    #: not in the paper; learns far sooner, which matters on a CPU budget)
    loss: str = "dice"
    log_every: int = 10
    val_every: int = 200
    val_cases: int | None = None  #: limit validation cases (None: all)
    val_overlap: float = 0.25
    ckpt_every: int = 50
    patience: int | None = None
    grad_clip: float | None = None
    device: str = "auto"
    num_threads: int | None = None
    seed: int = 0
    cache_dir: str | None = None  #: prepared cases (default ``<out>/cache``)
    init_from: str | None = None  #: warm start from matching weights of this checkpoint

    def validate(self) -> None:
        from ichseg.models.monai_nets import MONAI_MODELS

        if not self.data:
            raise ConfigError("training needs --data (a dataset folder)")
        if self.model not in MONAI_MODELS:
            raise ConfigError(
                f"the automatic trainer trains {', '.join(MONAI_MODELS)}, not {self.model!r}"
            )
        if not 0 <= self.fold < self.folds:
            raise ConfigError(f"fold {self.fold} is outside 0..{self.folds - 1}")
        if self.max_steps < 1 or (self.lr is not None and self.lr <= 0):
            raise ConfigError("max_steps must be >= 1 and lr > 0")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ConfigError(f"max_minutes must be positive, got {self.max_minutes}")
        if not 0.0 <= self.pos_fraction <= 1.0 or not 0.0 <= self.flip_prob <= 1.0:
            raise ConfigError("pos_fraction and flip_prob must be in [0, 1]")
        if self.normalization not in ("dataset", "preset"):
            raise ConfigError(
                f"normalization must be 'dataset' or 'preset', got {self.normalization!r}"
            )
        if self.loss not in SEGMENTATION_LOSSES:
            raise ConfigError(
                f"loss must be one of {', '.join(SEGMENTATION_LOSSES)}, got {self.loss!r}"
            )
        for name in ("batch_cases", "crops_per_case", "val_every", "log_every", "ckpt_every"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"{name} must be >= 1, got {v}")

    def resolved_lr(self) -> float:
        """The learning rate: paper 0.01 (HemSeg repo); lite 0.001 because its batch is 2
        patches instead of 8-16, and Adam at 0.01 on such noisy gradients is unstable."""
        if self.lr is not None:
            return float(self.lr)
        return 0.01 if self.preset == "paper" else 0.001

    def resolved_batch(self) -> tuple[int, int]:
        """``(batch_cases, crops_per_case)`` with the preset defaults filled in."""
        if self.preset == "paper":
            cases = self.batch_cases or (4 if self.model == "unet" else 2)
            return cases, self.crops_per_case or 4
        return self.batch_cases or 2, self.crops_per_case or 1


# --------------------------------------------------------------------------------------------
# prepared cases
# --------------------------------------------------------------------------------------------
@dataclass
class ResampledCase:
    """A case on the model's grid: HU image (float16, memory-mapped) and uint8 mask, ``(i,j,k)``."""

    case_id: str
    hu: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    foreground: np.ndarray  #: flat indices of the hemorrhage voxels

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.hu.shape)  # type: ignore[return-value]


def prepare_resampled(
    case: Case, spacing: tuple[float, float, float], cache_dir: Path | None
) -> ResampledCase:
    """Canonical + resampled HU image and mask of ``case`` (cached as ``.npy``)."""
    key = hashlib.sha1(
        f"{CACHE_VERSION}|{case.image_path}|{case.mask_path}|{tuple(spacing)}".encode()
    ).hexdigest()[:12]
    stem = None if cache_dir is None else Path(cache_dir) / f"{case.case_id}-{key}"
    if stem is not None and Path(f"{stem}.json").exists():
        meta = json.loads(Path(f"{stem}.json").read_text())
        hu = np.load(f"{stem}.image.npy", mmap_mode="r")
        mask = np.load(f"{stem}.mask.npy")
        affine = np.asarray(meta["affine"], dtype=np.float64)
        return ResampledCase(case.case_id, hu, mask, affine, np.flatnonzero(mask))
    volume = case.load_image()
    mask_vol = case.load_mask(volume)
    if mask_vol is None:
        raise EmptyMaskError(f"case {case.case_id} has no mask; training needs labelled cases")
    cfg = HemSegConfig(tuple(spacing), "none", mean=0.0, std=1.0)  # resample only, HU kept
    res = hemseg_preprocess(volume, mask_vol, cfg)
    hu = res.image.array.astype(np.float16)
    mask = np.asarray(res.mask.array, dtype=np.uint8)  # type: ignore[union-attr]
    affine = res.image.affine
    if stem is not None:
        stem.parent.mkdir(parents=True, exist_ok=True)
        tag = f".{os.getpid()}.tmp"  # DDP ranks may prepare the same case at once
        for suffix, arr in ((".image.npy", hu), (".mask.npy", mask)):
            tmp = Path(f"{stem}{suffix}{tag}")
            with tmp.open("wb") as fh:
                np.save(fh, arr)
            os.replace(tmp, f"{stem}{suffix}")
        tmp = Path(f"{stem}.json{tag}")
        tmp.write_text(json.dumps({"case_id": case.case_id, "affine": affine.tolist()}))
        os.replace(tmp, f"{stem}.json")
        hu = np.load(f"{stem}.image.npy", mmap_mode="r")
    return ResampledCase(case.case_id, hu, mask, affine, np.flatnonzero(mask))


def normalise(hu: np.ndarray, clip: tuple[float, float], mean: float, std: float) -> np.ndarray:
    """Clip HU to ``clip`` and z-score (float32), as :func:`hemseg_preprocess` does."""
    out = np.clip(np.asarray(hu, dtype=np.float32), clip[0], clip[1])
    return ((out - np.float32(mean)) / np.float32(std)).astype(np.float32)


def sample_rng(seed: int, step: int, rank: int = 0, stream: int = 0) -> np.random.Generator:
    """The random stream of one training step (independent of what ran before)."""
    return np.random.default_rng([seed, step, rank, stream, 7321])


def crop_patch(
    case: ResampledCase,
    center: tuple[int, int, int],
    patch: tuple[int, int, int],
    air_hu: float,
) -> tuple[np.ndarray, np.ndarray]:
    """HU and mask patches of size ``patch`` around ``center`` (kept inside the scan; sides
    larger than the scan are padded with ``air_hu`` / 0 around it)."""
    sl, pads = [], []
    for c, p, n in zip(center, patch, case.shape, strict=True):
        if n >= p:
            start = int(min(max(c - p // 2, 0), n - p))
            sl.append(slice(start, start + p))
            pads.append((0, 0))
        else:
            sl.append(slice(0, n))
            before = (p - n) // 2
            pads.append((before, p - n - before))
    hu = np.asarray(case.hu[tuple(sl)], dtype=np.float32)
    mask = case.mask[tuple(sl)]
    if any(a or b for a, b in pads):
        hu = np.pad(hu, pads, constant_values=air_hu)
        mask = np.pad(mask, pads, constant_values=0)
    return hu, mask


def draw_batch(
    cases: list[ResampledCase],
    rng: np.random.Generator,
    *,
    patch: tuple[int, int, int],
    batch_cases: int,
    crops_per_case: int,
    pos_fraction: float,
    flip_prob: float,
    clip: tuple[float, float],
    mean: float,
    std: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch ``(B, 1, *patch)`` of normalised images and float masks."""
    images, masks = [], []
    for _ in range(batch_cases):
        case = cases[int(rng.integers(len(cases)))]
        for _ in range(crops_per_case):
            if case.foreground.size and rng.random() < pos_fraction:
                flat = int(case.foreground[int(rng.integers(case.foreground.size))])
                center = tuple(int(v) for v in np.unravel_index(flat, case.shape))
            else:
                center = tuple(int(rng.integers(n)) for n in case.shape)
                for _ in range(10):  # prefer voxels inside the head (above the lower clip)
                    if float(case.hu[center]) > clip[0]:
                        break
                    center = tuple(int(rng.integers(n)) for n in case.shape)
            hu, mask = crop_patch(case, center, patch, air_hu=-1000.0)  # type: ignore[arg-type]
            for axis in range(3):
                if rng.random() < flip_prob:
                    hu, mask = np.flip(hu, axis), np.flip(mask, axis)
            images.append(normalise(hu, clip, mean, std))
            masks.append(np.ascontiguousarray(mask, dtype=np.float32))
    x = torch.from_numpy(np.stack(images)[:, None])
    y = torch.from_numpy(np.stack(masks)[:, None])
    return x, y


# --------------------------------------------------------------------------------------------
# trainer
# --------------------------------------------------------------------------------------------
class AutomaticTrainer(RunBase):
    """Train one automatic baseline on one fold (see module docstring)."""

    log_fields = LOG_FIELDS

    # ------------------------------------------------------------------ set-up
    def _open_dataset(self):  # type: ignore[no-untyped-def]
        dataset = open_dataset(self.cfg.data)
        if self.cfg.min_hemorrhage_slices > 0:
            dataset = dataset.filter_min_hemorrhage_slices(self.cfg.min_hemorrhage_slices)
        return dataset

    def _prepare(self, cases: list[Case], label: str) -> list[ResampledCase]:
        spacing = tuple(float(s) for s in self.model_cfg["target_spacing"])
        cache = Path(self.cfg.cache_dir) if self.cfg.cache_dir else self.out / "cache"
        items: Any = cases
        if self.progress and self.dist.is_main:
            from rich.progress import track

            items = track(cases, description=f"preparing {label} cases")
        return [prepare_resampled(c, spacing, cache) for c in items]  # type: ignore[arg-type]

    def _intensity(self) -> dict[str, Any]:
        """Clip bounds and mean/std: the training split's foreground statistics (cached in
        ``<out>/intensity_stats.json``) or the preset's."""
        if self.cfg.normalization == "preset":
            return {}
        path = self.out / "intensity_stats.json"
        if path.exists():
            stats = json.loads(path.read_text())
        else:
            pairs = (
                (
                    Volume(np.asarray(c.hu, dtype=np.float32), c.affine, Intensity.hu()),
                    Volume(c.mask, c.affine, Intensity.label()),
                )
                for c in self.train_cases
            )
            s = foreground_intensity_stats(pairs, (0.5, 99.5), seed=self.cfg.seed)
            stats = {"clip": [s.lo, s.hi], "mean": s.mean, "std": s.std, "n_voxels": s.n_voxels}
            if self.dist.is_main:
                path.write_text(json.dumps(stats, indent=1))
        return {"clip": list(stats["clip"]), "mean": stats["mean"], "std": stats["std"]}

    def setup(self) -> None:
        from ichseg.models.monai_nets import preset_config

        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        dataset = self._open_dataset()
        fold = self._splits(dataset).fold(cfg.fold)
        by_id = self._cases_by_id(dataset, (*fold.train, *fold.val))
        self.model_cfg = preset_config(cfg.model, cfg.preset, **cfg.model_overrides)
        self.train_cases = self._prepare([by_id[i] for i in fold.train], "train")
        if not self.train_cases:
            raise ConfigError(f"fold {cfg.fold} has no training cases")
        val_ids = list(fold.val)[: cfg.val_cases] if cfg.val_cases else list(fold.val)
        self.val_cases = [
            c for c in self._prepare([by_id[i] for i in val_ids], "val") if c.foreground.size
        ]
        if not any(c.foreground.size for c in self.train_cases):
            raise EmptyMaskError("no training case has hemorrhage voxels")
        self.model_cfg.update(self._intensity())
        torch.manual_seed(cfg.seed)  # identical initial weights for a given seed
        self.model = build_model(cfg.model, None, **self.model_cfg).to(self.device)
        self.loss_fn = segmentation_loss(cfg.loss)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.resolved_lr(), weight_decay=cfg.weight_decay
        )
        batch_cases, _ = cfg.resolved_batch()
        self.steps_per_epoch = max(1, math.ceil(len(self.train_cases) / batch_cases))
        step_size = max(1, round(cfg.lr_step_epochs * self.steps_per_epoch))
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=step_size, gamma=cfg.lr_gamma
        )
        self.train_model: nn.Module = self.model
        if self.dist.world > 1:
            self.train_model = nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
            )
        self._resume_or_init()

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        return self._run_state({"optimizer": self.optimizer, "scheduler": self.scheduler})

    def load_checkpoint(self, path: Path) -> None:
        """Resume from ``path`` (weights-only); a foreign or unsafe file raises
        :class:`InputFileError`."""
        needed = {"model", "state_dict", "optimizer", "scheduler", "step", "best_val"}
        state = read_training_checkpoint(
            path, self.device, needed, "an ichseg automatic-training checkpoint"
        )
        if state["model"] != self.cfg.model:
            raise InputFileError(
                f"{path}: a {state['model']} checkpoint, but this run trains {self.cfg.model}"
            )
        with resume_errors(path):
            self._restore_run_state(
                state, {"optimizer": self.optimizer, "scheduler": self.scheduler}
            )

    def init_weights(self, path: str | Path) -> dict[str, int]:
        """Warm start from every parameter of ``path`` whose name and shape match."""
        return self._warm_start(path, f"{self.cfg.model} model")

    # ------------------------------------------------------------------ steps
    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, mc = self.cfg, self.model_cfg
        batch_cases, crops = cfg.resolved_batch()
        return draw_batch(
            self.train_cases,
            sample_rng(cfg.seed, step, self.dist.rank),
            patch=tuple(int(p) for p in mc["patch_size"]),  # type: ignore[arg-type]
            batch_cases=batch_cases,
            crops_per_case=crops,
            pos_fraction=cfg.pos_fraction,
            flip_prob=cfg.flip_prob,
            clip=(float(mc["clip"][0]), float(mc["clip"][1])),
            mean=float(mc["mean"]),
            std=float(mc["std"]),
        )

    def train_step(self, step: int) -> float:
        """One optimisation step on the batch of ``step`` (deterministic per step)."""
        self.model.train()
        torch.manual_seed(int(sample_rng(self.cfg.seed, step, self.dist.rank, 1).integers(2**31)))
        x, y = self.batch(step)
        x, y = x.to(self.device), y.to(self.device)
        loss = self.loss_fn(self.train_model(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach())

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean 3D Dice (sigmoid > threshold) of sliding-window predictions on the inner
        validation cases, on the resampled grid."""
        from ichseg.inference.automatic import air_value, sliding_window_probabilities

        mc = self.model_cfg
        clip = (float(mc["clip"][0]), float(mc["clip"][1]))
        scores = []
        cases: Any = self.val_cases
        if self.progress and self.dist.is_main:
            from tqdm import tqdm

            cases = tqdm(cases, desc="validating", leave=False)
        for case in cases:
            image = normalise(case.hu, clip, float(mc["mean"]), float(mc["std"]))
            prob = sliding_window_probabilities(
                self.model,
                image,
                tuple(int(p) for p in mc["patch_size"]),  # type: ignore[arg-type]
                pad_value=air_value(mc),
                overlap=self.cfg.val_overlap,
                device=self.device,
            )
            pred = torch.from_numpy(prob > float(mc["threshold"]))
            scores.append(dice_score(pred, torch.from_numpy(case.mask)))
        return {"val_dice": float(np.mean(scores)) if scores else float("nan")}

    # ------------------------------------------------------------------ loop
    def _out_of_time(self) -> bool:
        """``max_minutes`` reached (agreed by all ranks under DDP)."""
        if self.cfg.max_minutes is None:
            return False
        flag = self.elapsed_now() >= 60.0 * self.cfg.max_minutes
        if self.dist.world > 1:
            import torch.distributed as dist

            t = torch.tensor([1.0 if flag else 0.0], device=self.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item() > 0)
        return flag

    def _log_train(self, losses: list[float]) -> None:
        """One ``train`` row: the mean loss of the steps since the last one."""
        self._log(
            {
                "step": self.step,
                "kind": "train",
                "loss": float(np.mean(losses)),
                "lr": self.optimizer.param_groups[0]["lr"],
                "seconds": round(self.elapsed_now(), 2),
            }
        )

    def _validate_and_select(self) -> None:
        val = self.validate() if self.val_cases else {"val_dice": float("nan")}
        self._log(
            {"step": self.step, "kind": "val", **val, "seconds": round(self.elapsed_now(), 2)}
        )
        self._select(val["val_dice"])

    def run(self) -> dict[str, Any]:
        """Train until ``max_steps``, early stopping or ``max_minutes``; returns a summary."""
        if not hasattr(self, "model"):
            self.setup()
        cfg = self.cfg
        t0 = self._t0 = time.perf_counter()
        window: list[float] = []
        stopped, last_val = "", -1
        for step in self._steps(cfg.model):
            if self._out_of_time():
                stopped = "max_minutes"
                break
            window.append(self.train_step(step))
            self.step = step + 1
            if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                self._log_train(window)
                window = []
            if self.step % cfg.val_every == 0 or self.step == cfg.max_steps:
                self._validate_and_select()
                last_val = self.step
                if cfg.patience and self.validations_without_improvement >= cfg.patience:
                    stopped = "patience"
            if self.step % cfg.ckpt_every == 0 or self.step == cfg.max_steps or stopped:
                self.save_checkpoint(self.out / "last.pt")
            if stopped:
                break
        if stopped == "max_minutes" or (self.step < cfg.max_steps and not stopped):
            if window:
                self._log_train(window)
            if last_val != self.step and self.step > 0:
                self._validate_and_select()
            self.save_checkpoint(self.out / "last.pt")
        return {
            "steps": self.step,
            "best_val_dice": self.best_val,
            "stopped": stopped or "max_steps",
            "stopped_early": bool(stopped),
            "seconds": time.perf_counter() - t0,
            "training_seconds": self.elapsed_now(),
            "out": str(self.out),
        }


def segmentation_loss(name: str) -> nn.Module:
    """The training loss ``name`` (:data:`SEGMENTATION_LOSSES`) on one-channel logits."""
    from monai.losses import DiceCELoss, DiceLoss

    if name == "dice_ce":
        return DiceCELoss(sigmoid=True)
    if name == "dice":
        return DiceLoss(sigmoid=True)
    raise ConfigError(f"loss must be one of {', '.join(SEGMENTATION_LOSSES)}, got {name!r}")


def train(cfg: Config, progress: bool = True) -> dict[str, Any]:
    """Train one fold (see :class:`AutomaticTrainer`)."""
    return AutomaticTrainer(cfg, progress=progress).run()


def cross_validate(cfg: Config, folds: list[int] | None = None) -> list[dict[str, Any]]:
    """k-fold cross-validation: one run folder per fold (``<out>/fold<k>``), shared splits file
    and prepared-case cache."""
    results = []
    base = Path(cfg.out)
    splits_file = cfg.splits_file or str(base / "splits.json")
    if not Path(splits_file).exists():
        ds = open_dataset(cfg.data)
        if cfg.min_hemorrhage_slices > 0:
            ds = ds.filter_min_hemorrhage_slices(cfg.min_hemorrhage_slices)
        make_splits(ds, k=cfg.folds, seed=cfg.split_seed, val_fraction=cfg.val_fraction).to_json(
            splits_file
        )
    for fold in folds if folds is not None else range(cfg.folds):
        fold_cfg = Config.from_dict(
            {
                **cfg.to_dict(),
                "fold": fold,
                "out": str(base / f"fold{fold}"),
                "splits_file": splits_file,
                "cache_dir": cfg.cache_dir or str(base / "cache"),
            }
        )
        results.append({"fold": fold, **train(fold_cfg)})
    return results
