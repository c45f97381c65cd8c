"""MUNet training: focal (classification) + lambda * Dice (segmentation) on CLAHE slices.

Protocol shared with ``ichseg train`` (``--model munet``): :class:`Config` (YAML ``load`` /
``save``, ``from_dict`` / ``to_dict``), :func:`train` and :func:`cross_validate`.

* Adam (lr 1e-4, the paper's) with ``ReduceLROnPlateau`` (factor 0.5) on the validation loss;
  patient-level splits (:mod:`ichseg.data.splits`), model selection on the fold's inner
  validation cases only.
* Class imbalance, selectable: ``smote: true`` — SMOTE (imbalanced-learn) on the classification
  head's input embeddings: every step the batch's pooled features join a bank of recent
  (detached) embeddings, SMOTE balances the bank over label combinations and up to
  ``smote_max_synthetic`` synthetic embeddings are added to the head's focal loss (they train
  the head only; see ``docs/munet.md`` for why not image-level SMOTE). ``sampling:
  class_weighted`` — draw slices with probability inversely proportional to the frequency of
  their label combination. Both can be combined or switched off.
* Resumable: ``last.pt`` (model in the registry format + optimizer, scheduler, RNG states, SMOTE
  bank; plain tensors/numbers only, read with ``weights_only=True``) is written atomically every
  ``ckpt_every`` steps; every step's batch depends only on ``(seed, step)``, so a resumed run
  continues as the uninterrupted one. ``best.pt`` holds the best validation Dice; ``log.csv``
  one row per logged step and per validation. ``max_minutes`` caps the training wall clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ichseg.data.dataset import open_dataset
from ichseg.data.slices import (
    IGNORE,
    NONE_INDEX,
    SliceSet,
    label_combination_keys,
    prepare_case_slices,
)
from ichseg.data.splits import make_splits
from ichseg.errors import ConfigError
from ichseg.models.registry import build_model
from ichseg.training.common import (
    RunBase,
    YamlConfig,
    read_training_checkpoint,
    resume_errors,
)

LOG_FIELDS = (
    "step",
    "kind",
    "loss",
    "focal",
    "dice",
    "smote_samples",
    "val_loss",
    "val_dice",
    "val_auc",
    "val_f1",
    "lr",
    "seconds",
)
SAMPLING = ("uniform", "class_weighted")


@dataclass
class Config(YamlConfig):
    """A MUNet training run; stored next to its checkpoints as ``config.yaml``."""

    config_label: ClassVar[str] = "MUNet training"

    data: str = ""  #: dataset folder (subtype masks, or binary masks + the per-slice CSV)
    out: str = "runs/munet-lite"
    model: str = "munet"
    preset: str = "lite"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    fpn: bool = True  #: feature-pyramid decoder (off: the Table 8 ablation)
    fold: int = 0
    folds: int = 5
    split_seed: int = 0
    val_fraction: float = 0.2
    splits_file: str | None = None  #: reuse a splits JSON (default ``<out>/splits.json``)
    max_steps: int = 3000
    max_minutes: float | None = None  #: stop after this much training wall-clock time
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    lr_factor: float = 0.5  #: ReduceLROnPlateau factor (paper: 0.5)
    lr_patience: int = 2  #: validations without a lower validation loss before the LR drops
    lambda_dice: float = 1.0  #: L = focal + lambda * Dice
    #: weight of an extra pixel-wise cross-entropy on the segmentation (0 = the paper's loss;
    #: the Dice alone never trains the background channel, so an under-trained net can label
    #: whole scans with some subtype)
    seg_ce_weight: float = 0.0
    aux_weight: float = 0.5  #: weight of the deep-supervision branches' Dice (0: off)
    #: count the background class in the Dice loss: without it nothing trains the background
    #: channel, and subtypes absent from a batch give a saturated Dice with no gradient, so the
    #: rare subtypes' channels can win the argmax anywhere (the over-labelling of the first runs)
    dice_include_background: bool = False
    focal_gamma: float = 2.0
    focal_alpha: float | None = None
    smote: bool = True
    smote_k: int = 5
    smote_bank: int = 1024  #: embeddings kept for SMOTE
    smote_max_synthetic: int = 32  #: synthetic embeddings added per step
    sampling: str = "uniform"  #: "uniform" or "class_weighted"
    positive_fraction: float | None = 0.5  #: uniform sampling: share of hemorrhage slices
    flip_prob: float = 0.5
    val_every: int = 60
    val_slices: int = 256  #: fixed validation slices (half with hemorrhage where possible)
    patience: int | None = None  #: early stop after this many validations without improvement
    log_every: int = 10
    ckpt_every: int = 25
    device: str = "auto"
    num_threads: int | None = None
    seed: int = 0
    init_from: str | None = None
    cache_dir: str | None = None  #: prepared-slice cache (default ``<out>/cache``)

    def validate(self) -> None:
        if not self.data:
            raise ConfigError("training needs --data (a dataset folder)")
        if not 0 <= self.fold < self.folds:
            raise ConfigError(f"fold {self.fold} is outside 0..{self.folds - 1}")
        if self.max_steps < 1 or self.lr <= 0 or self.batch_size < 1:
            raise ConfigError("max_steps and batch_size must be >= 1 and lr > 0")
        if self.sampling not in SAMPLING:
            raise ConfigError(
                f"sampling must be one of {', '.join(SAMPLING)}, got {self.sampling!r}"
            )
        if self.positive_fraction is not None and not 0.0 <= self.positive_fraction <= 1.0:
            raise ConfigError("positive_fraction must be in [0, 1] (or null)")
        if self.smote_k < 1 or self.smote_bank < 2:
            raise ConfigError("smote_k must be >= 1 and smote_bank >= 2")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ConfigError("max_minutes must be > 0")
        if self.seg_ce_weight < 0:
            raise ConfigError(f"seg_ce_weight must be >= 0, got {self.seg_ce_weight}")
        if "fpn" in self.model_overrides and bool(self.model_overrides["fpn"]) != self.fpn:
            raise ConfigError("fpn is set both in model_overrides and as fpn: keep one")


# ------------------------------------------------------------------------------------ losses
def focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float, alpha: float | None):
    """Mean sigmoid focal loss over all (slice, class) entries (MONAI :class:`FocalLoss`)."""
    from monai.losses import FocalLoss

    return FocalLoss(gamma=gamma, alpha=alpha, use_softmax=False, reduction="mean")(
        logits, targets.float()
    )


def dice_loss(
    seg_logits: torch.Tensor, seg: torch.Tensor, include_background: bool = False
) -> torch.Tensor:
    """Soft Dice loss (1 - Dice) of the softmax over the subtype classes (background excluded
    unless ``include_background``), over the whole batch per class, averaged over classes;
    :data:`IGNORE` pixels are masked out (MONAI :class:`MaskedDiceLoss`)."""
    from monai.losses import MaskedDiceLoss

    known = seg != IGNORE
    target = F.one_hot(torch.where(known, seg, 0).long(), seg_logits.shape[1])
    target = target.permute(0, 3, 1, 2).float()
    loss = MaskedDiceLoss(include_background=include_background, softmax=True, batch=True)
    return loss(seg_logits, target, mask=known[:, None].float())


def munet_loss(
    out: dict[str, Any],
    seg: torch.Tensor,
    labels: torch.Tensor,
    cfg: Config,
    extra_cls: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """``{"total", "focal", "dice"}``; ``extra_cls = (logits, labels)`` of SMOTE embeddings."""
    logits, targets = out["cls_logits"], labels
    if extra_cls is not None and extra_cls[0].shape[0]:
        logits = torch.cat([logits, extra_cls[0]])
        targets = torch.cat([targets, extra_cls[1]])
    focal = focal_loss(logits, targets, cfg.focal_gamma, cfg.focal_alpha)
    bg = cfg.dice_include_background
    dice = dice_loss(out["seg_logits"], seg, bg)
    aux = out.get("aux_seg_logits") or []
    if aux and cfg.aux_weight > 0:
        dice = (dice + cfg.aux_weight * sum(dice_loss(a, seg, bg) for a in aux) / len(aux)) / (
            1.0 + cfg.aux_weight
        )
    total = focal + cfg.lambda_dice * dice
    if cfg.seg_ce_weight > 0:
        target = torch.where(seg == IGNORE, torch.full_like(seg, -100), seg).long()
        total = total + cfg.seg_ce_weight * F.cross_entropy(
            out["seg_logits"], target, ignore_index=-100
        )
    return {"total": total, "focal": focal, "dice": dice}


# ------------------------------------------------------------------------------------ imbalance
def smote_balance(
    features: np.ndarray, labels: np.ndarray, k: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """SMOTE (imbalanced-learn) over label combinations: returns ``(features, labels)`` with the
    originals first, then synthetic samples, so that every combination with at least two members
    has as many samples as the largest one (combinations seen once cannot be interpolated and
    keep their count). ``k`` is reduced to fit the smallest oversampled combination."""
    from imblearn.over_sampling import SMOTE

    x = np.asarray(features, np.float64)
    lab = np.asarray(labels, np.uint8)
    keys = label_combination_keys(lab)
    uniq, counts = np.unique(keys, return_counts=True)
    top = int(counts.max()) if counts.size else 0
    grow = {int(u): top for u, c in zip(uniq, counts, strict=True) if 2 <= c < top}
    if not grow:
        return x.astype(np.float32), lab
    kk = min(k, min(int(counts[uniq == u][0]) for u in grow) - 1)
    sm = SMOTE(sampling_strategy=grow, k_neighbors=kk, random_state=seed)
    x_res, keys_res = sm.fit_resample(x, keys)
    bits = (keys_res[:, None] >> np.arange(lab.shape[1])) & 1
    return x_res.astype(np.float32), bits.astype(np.uint8)


def sampling_weights(labels: np.ndarray, mode: str, positive_fraction: float | None) -> np.ndarray:
    """Per-slice draw probabilities: ``class_weighted`` = inverse frequency of the slice's label
    combination; ``uniform`` = equal, or ``positive_fraction`` of the mass on hemorrhage slices."""
    n = labels.shape[0]
    if mode == "class_weighted":
        keys = label_combination_keys(labels)
        _, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
        w = 1.0 / counts[inv]
    else:
        w = np.ones(n)
        pos = labels[:, NONE_INDEX] == 0
        if positive_fraction is not None and pos.any() and (~pos).any():
            w = np.where(pos, positive_fraction / pos.sum(), (1 - positive_fraction) / (~pos).sum())
    return w / w.sum()


# ------------------------------------------------------------------------------------ trainer
class Trainer(RunBase):
    """Train MUNet on one fold (see module docstring)."""

    log_fields = LOG_FIELDS
    distributed = False  # one process

    def __init__(self, cfg: Config, progress: bool = True) -> None:
        super().__init__(cfg, progress)
        self.bank_x = torch.zeros(0)
        self.bank_y = torch.zeros(0, dtype=torch.uint8)

    def _prepare(self, cases: list, label: str) -> SliceSet:
        c = self.model.config
        cache = Path(self.cfg.cache_dir) if self.cfg.cache_dir else self.out / "cache"
        items = cases
        if self.progress:
            from rich.progress import track

            items = track(cases, description=f"preparing {label} slices")
        return SliceSet(
            [
                prepare_case_slices(x, c.slice_size, c.window, c.clahe_clip_limit, cache)
                for x in items
            ]
        )

    def setup(self) -> None:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        dataset = open_dataset(cfg.data)
        fold = self._splits(dataset).fold(cfg.fold)
        by_id = self._cases_by_id(dataset, (*fold.train, *fold.val))
        torch.manual_seed(cfg.seed)
        overrides = {"fpn": cfg.fpn, **cfg.model_overrides}
        self.model = build_model(cfg.model, cfg.preset, **overrides).to(self.device)
        if not hasattr(self.model, "embed"):
            raise ConfigError(f"model {cfg.model!r} is not a MUNet")
        self.train_set = self._prepare([by_id[i] for i in fold.train], "train")
        self.val_set = self._prepare([by_id[i] for i in fold.val], "val")
        if not len(self.train_set):
            raise ConfigError("the training split holds no slices")
        self.weights = sampling_weights(self.train_set.labels, cfg.sampling, cfg.positive_fraction)
        self.val_ids = self._val_ids()
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience
        )
        self._resume_or_init()

    def _val_ids(self) -> np.ndarray:
        n = len(self.val_set)
        rng = np.random.default_rng([self.cfg.seed, 104729])
        if n <= self.cfg.val_slices:
            return np.arange(n)
        pos = rng.permutation(self.val_set.positive)
        neg = rng.permutation(np.setdiff1d(np.arange(n), pos))
        n_pos = min(pos.size, self.cfg.val_slices // 2)
        return np.sort(np.concatenate([pos[:n_pos], neg[: self.cfg.val_slices - n_pos]]))

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        return self._run_state(
            {"optimizer": self.optimizer, "scheduler": self.scheduler},
            extra={"smote_bank": {"x": self.bank_x.cpu(), "y": self.bank_y.cpu()}},
        )

    def load_checkpoint(self, path: Path) -> None:
        needed = {"state_dict", "optimizer", "scheduler", "step", "best_val"}
        state = read_training_checkpoint(path, self.device, needed, "a MUNet training checkpoint")
        with resume_errors(path):
            self._restore_run_state(
                state, {"optimizer": self.optimizer, "scheduler": self.scheduler}, strict=True
            )
            bank = state.get("smote_bank") or {}
            self.bank_x = bank.get("x", torch.zeros(0)).cpu()
            self.bank_y = bank.get("y", torch.zeros(0, dtype=torch.uint8)).cpu()

    def init_weights(self, path: str | Path) -> dict[str, int]:
        """Warm start from every parameter of a checkpoint whose name and shape match."""
        facts = self._warm_start(path, "model", record=False)
        return {"loaded": facts["loaded"], "skipped": facts["skipped"]}

    # ------------------------------------------------------------------ steps
    def _batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.cfg.seed, step, 17])
        ids = rng.choice(len(self.train_set), size=self.cfg.batch_size, p=self.weights)
        x, seg, lab = self.train_set.batch(ids)
        flip = rng.random(len(ids)) < self.cfg.flip_prob
        x[flip] = x[flip][..., ::-1]
        seg[flip] = seg[flip][..., ::-1]
        d = self.device
        return (
            torch.from_numpy(np.ascontiguousarray(x)).to(d),
            torch.from_numpy(np.ascontiguousarray(seg)).to(d),
            torch.from_numpy(lab.astype(np.float32)).to(d),
        )

    def _smote_extra(
        self, emb: torch.Tensor, labels: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Update the embedding bank; SMOTE-balance it; the head's logits of (at most
        ``smote_max_synthetic``) synthetic embeddings and their labels."""
        cfg = self.cfg
        new_x, new_y = emb.detach().cpu().float(), labels.detach().cpu().to(torch.uint8)
        self.bank_x = torch.cat([self.bank_x.reshape(-1, new_x.shape[1]), new_x])[-cfg.smote_bank :]
        self.bank_y = torch.cat([self.bank_y.reshape(-1, new_y.shape[1]), new_y])[-cfg.smote_bank :]
        rng = np.random.default_rng([cfg.seed, step, 23])
        n0 = self.bank_x.shape[0]
        xs, ys = smote_balance(
            self.bank_x.numpy(), self.bank_y.numpy(), cfg.smote_k, int(rng.integers(2**31))
        )
        xs, ys = xs[n0:], ys[n0:]
        if xs.shape[0] == 0:
            return None
        if xs.shape[0] > cfg.smote_max_synthetic:
            pick = rng.choice(xs.shape[0], size=cfg.smote_max_synthetic, replace=False)
            xs, ys = xs[pick], ys[pick]
        synth = torch.from_numpy(xs).to(self.device)
        return self.model.classify(synth), torch.from_numpy(ys.astype(np.float32)).to(self.device)

    def train_step(self, step: int) -> dict[str, float]:
        """One optimisation step on the batch of ``step`` (deterministic per step)."""
        self.model.train()
        torch.manual_seed(int(np.random.default_rng([self.cfg.seed, step, 29]).integers(2**31)))
        x, seg, labels = self._batch(step)
        out = self.model(x)
        extra = self._smote_extra(out["embedding"], labels, step) if self.cfg.smote else None
        losses = munet_loss(out, seg, labels, self.cfg, extra)
        self.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        self.optimizer.step()
        return {
            "loss": losses["total"].item(),
            "focal": losses["focal"].item(),
            "dice": losses["dice"].item(),
            "smote_samples": float(0 if extra is None else extra[0].shape[0]),
        }

    @torch.no_grad()
    def predict_set(self, slices: SliceSet, ids: np.ndarray, batch: int = 16) -> dict[str, Any]:
        """Predicted labels, class probabilities and mean loss on the slices ``ids``."""
        from ichseg.evaluation.classification import SegCounts

        self.model.eval()
        counts = SegCounts(self.model.config.num_seg_classes)
        probs, truth, losses = [], [], []
        for start in range(0, len(ids), batch):
            x, seg, lab = slices.batch(ids[start : start + batch])
            xt = torch.from_numpy(x).to(self.device)
            st = torch.from_numpy(seg).to(self.device)
            lt = torch.from_numpy(lab.astype(np.float32)).to(self.device)
            out = self.model(xt)
            losses.append(float(munet_loss(out, st, lt, self.cfg)["total"]) * len(x))
            counts.update(out["seg_logits"].argmax(1).cpu().numpy(), seg)
            probs.append(torch.sigmoid(out["cls_logits"]).cpu().numpy())
            truth.append(lab)
        return {
            "counts": counts,
            "probs": np.concatenate(probs),
            "truth": np.concatenate(truth),
            "loss": float(np.sum(losses) / max(len(ids), 1)),
        }

    def validate(self) -> dict[str, float]:
        """``val_dice``: mean Dice over the subtypes present in the validation slices;
        ``val_auc``: macro one-vs-rest AUC; ``val_f1``: macro F1 at 0.5; ``val_loss``."""
        from ichseg.evaluation.classification import classification_metrics

        r = self.predict_set(self.val_set, self.val_ids)
        seg = r["counts"].scores()
        present = [s for s in seg.values() if s["support_pixels"] > 0]
        cls = classification_metrics(r["truth"], r["probs"])
        return {
            "val_loss": r["loss"],
            "val_dice": float(np.mean([s["dice"] for s in present])) if present else float("nan"),
            "val_auc": cls["macro"]["auc"],
            "val_f1": cls["macro"]["f1"],
        }

    # ------------------------------------------------------------------ loop
    def _validate_and_select(self) -> bool:
        """Validate, step the LR schedule, keep ``best.pt``; True when patience ran out."""
        val = self.validate() if len(self.val_ids) else {"val_dice": float("nan"), "val_loss": 0.0}
        self.scheduler.step(val["val_loss"])
        self._log(
            {
                "step": self.step,
                "kind": "val",
                **val,
                "lr": self._lr(),
                "seconds": round(self.elapsed_now(), 2),
            }
        )
        self._select(val["val_dice"])
        if not (self.out / "best.pt").exists():
            self.save_checkpoint(self.out / "best.pt")
        return bool(self.cfg.patience and self.validations_without_improvement >= self.cfg.patience)

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def run(self) -> dict[str, Any]:
        """Train until ``max_steps``, ``max_minutes`` or early stopping; returns a summary."""
        if not hasattr(self, "model"):
            self.setup()
        cfg = self.cfg
        self._t0 = time.perf_counter()
        limit = None if cfg.max_minutes is None else cfg.max_minutes * 60.0
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.max_steps, initial=self.step, desc="training munet")
        window: list[dict[str, float]] = []
        stop_reason = "max_steps"
        try:
            while self.step < cfg.max_steps:
                window.append(self.train_step(self.step))
                self.step += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{window[-1]['loss']:.3f}")
                timed_out = limit is not None and self.elapsed_now() >= limit
                last = self.step == cfg.max_steps or timed_out
                if self.step % cfg.log_every == 0 or last:
                    mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                    self._log(
                        {
                            "step": self.step,
                            "kind": "train",
                            **mean,
                            "lr": self._lr(),
                            "seconds": round(self.elapsed_now(), 2),
                        }
                    )
                    window = []
                stop = False
                if self.step % cfg.val_every == 0 or last:
                    stop = self._validate_and_select()
                if self.step % cfg.ckpt_every == 0 or last or stop:
                    self.save_checkpoint(self.out / "last.pt")
                if stop or timed_out:
                    stop_reason = "patience" if stop else "max_minutes"
                    break
        finally:
            if bar is not None:
                bar.close()
        if not (self.out / "last.pt").exists():  # resumed at max_steps: nothing left to do
            self.save_checkpoint(self.out / "last.pt")
        return {
            "steps": self.step,
            "seconds": self.elapsed_now(),
            "best_val_dice": self.best_val,
            "stopped": stop_reason,
            "out": str(self.out),
        }


def train(cfg: Config, progress: bool = True) -> dict[str, Any]:
    """Train one fold (see :class:`Trainer`)."""
    return Trainer(cfg, progress=progress).run()


def cross_validate(cfg: Config, folds: list[int] | None = None) -> list[dict[str, Any]]:
    """One run per fold under ``<out>/fold<k>``, all sharing one splits file."""
    base = Path(cfg.out)
    splits_file = cfg.splits_file or str(base / "splits.json")
    if not Path(splits_file).exists():
        ds = open_dataset(cfg.data)
        make_splits(ds, k=cfg.folds, seed=cfg.split_seed, val_fraction=cfg.val_fraction).to_json(
            splits_file
        )
    results = []
    for fold in folds if folds is not None else range(cfg.folds):
        fold_cfg = Config.from_dict(
            {
                **cfg.to_dict(),
                "fold": fold,
                "out": str(base / f"fold{fold}"),
                "splits_file": splits_file,
            }
        )
        results.append({"fold": fold, **train(fold_cfg)})
    return results
