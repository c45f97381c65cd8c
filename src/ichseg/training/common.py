"""What the three trainers (HPINet, MONAI baselines, MUNet) share: YAML configs, ``log.csv``,
the progress bar over steps, checkpoint files, RNG states, warm starts, device and DDP set-up.

Each trainer keeps its own ``LOG_FIELDS``, checkpoint keys and messages; this module only holds
the code that was the same in all of them.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
import yaml

from ichseg.data.splits import Splits, make_splits
from ichseg.errors import ConfigError, InputFileError
from ichseg.models.registry import check_finite_state_dict, model_to_state, safe_torch_load

C = TypeVar("C", bound="YamlConfig")


# --------------------------------------------------------------------------------------------
# configs
# --------------------------------------------------------------------------------------------
class YamlConfig:
    """Mixin for a training-config dataclass: ``to_dict`` / ``from_dict`` (unknown keys refused
    with :class:`ConfigError`) and YAML ``save`` / ``load``."""

    #: how messages name this config ("unknown <label> option(s)", "<label> config: ...")
    config_label: ClassVar[str] = "training"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def _nested(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Turn nested mappings of ``data`` (a copy) into their config objects (default: none)."""
        return data

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.config_label} option(s): {', '.join(unknown)}")
        data = cls._nested(dict(data))
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"{cls.config_label} config: {exc}") from None

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return p

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{p}: cannot read training config ({exc})") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: a training config must be a YAML mapping")
        return cls.from_dict(data)


@dataclass
class FoldConfig(YamlConfig):
    """The leading fields of the HPINet and automatic trainers' configs: data, model, fold.

    A subclass redeclares a field to change its default; the field keeps its place (and so the
    order of ``config.yaml``)."""

    data: str = ""  #: dataset folder (any layout :func:`ichseg.data.open_dataset` knows)
    out: str = "runs/run"
    model: str = ""
    preset: str = "lite"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    fold: int = 0
    folds: int = 5
    split_seed: int = 0
    val_fraction: float = 0.2
    splits_file: str | None = None  #: reuse a splits JSON (default: ``<out>/splits.json``)


# --------------------------------------------------------------------------------------------
# device, distributed, metrics
# --------------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def dice_score(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """Hard Dice; both empty counts as 1 (see :mod:`ichseg.evaluation.metrics`)."""
    p, g = pred.bool(), gt.bool()
    denom = int(p.sum()) + int(g.sum())
    return 1.0 if denom == 0 else 2.0 * int((p & g).sum()) / denom


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


# --------------------------------------------------------------------------------------------
# RNG states
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# log.csv
# --------------------------------------------------------------------------------------------
def append_log_row(path: Path, fields: Sequence[str], row: dict[str, Any]) -> None:
    """Append ``row`` (only the columns ``fields``) to the CSV ``path``, header first if new."""
    new = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: row.get(k, "") for k in fields})


def truncate_log(path: Path, fields: Sequence[str], step: int) -> None:
    """Drop the rows of the CSV ``path`` after ``step``: a killed run logged them after its last
    checkpoint and the resumed run logs those steps again (rewritten atomically)."""
    if not path.exists():
        return
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    keep = [r for r in rows if not r.get("step") or int(r["step"]) <= step]
    if len(keep) == len(rows):
        return
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: r.get(k, "") for k in fields} for r in keep)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------
def save_atomic(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file, then rename it over ``path``."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def read_training_checkpoint(
    path: Path, device: torch.device, needed: set[str], what: str
) -> dict[str, Any]:
    """A checkpoint read with ``weights_only=True`` that holds the keys ``needed``; otherwise
    :class:`InputFileError` saying it is not ``what`` (e.g. "an ichseg training checkpoint")."""
    state = safe_torch_load(path, map_location=device)
    if not isinstance(state, dict) or not needed <= set(state):
        raise InputFileError(
            f"{path}: not {what} (needs keys {', '.join(sorted(needed))}); "
            "delete it or use another --out to start afresh"
        )
    return state


@contextlib.contextmanager
def resume_errors(path: Path) -> Iterator[None]:
    """Turn what a mismatching checkpoint raises while it is loaded into :class:`InputFileError`."""
    try:
        yield
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputFileError(f"{path}: cannot resume from this checkpoint: {first}") from None


Widen = Callable[[torch.Tensor, torch.Tensor], torch.Tensor | None]


def matching_parameters(
    path: str | Path, model: torch.nn.Module, widen: Widen | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(source, own, matched)`` for a warm start of ``model`` from the checkpoint or weights
    file ``path``: its state dict, the model's, and the source tensors whose name and shape match
    (cast to the model's dtypes; ``widen(source, own)`` may adapt the others)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--init {p}: file not found")
    state = safe_torch_load(p)
    source = state.get("state_dict") if isinstance(state, dict) else None
    if not isinstance(source, dict):
        raise ConfigError(f"--init {p}: not an ichseg checkpoint or weights file")
    check_finite_state_dict(source, p)
    own = model.state_dict()
    matched = {
        k: v.to(own[k].dtype)
        for k, v in source.items()
        if k in own and isinstance(v, torch.Tensor) and tuple(v.shape) == tuple(own[k].shape)
    }
    if widen is not None:
        for k, v in source.items():
            if k in own and k not in matched and isinstance(v, torch.Tensor):
                widened = widen(v, own[k])
                if widened is not None:
                    matched[k] = widened
    return source, own, matched


# --------------------------------------------------------------------------------------------
# the trainers' common part
# --------------------------------------------------------------------------------------------
class RunBase:
    """Run-folder bookkeeping of a trainer: ``log.csv``, progress, elapsed time, checkpoints.

    A subclass sets ``log_fields``, defines ``state()`` (usually through :meth:`_run_state`),
    ``load_checkpoint(path)`` and ``init_weights(path)``, and sets ``model`` in its set-up; ``distributed = False`` keeps it to one process even
    under torchrun.
    """

    log_fields: ClassVar[Sequence[str]] = ()
    distributed: ClassVar[bool] = True
    cfg: Any
    out: Path
    progress: bool
    dist: DistInfo
    device: torch.device
    model: torch.nn.Module
    step: int
    elapsed: float
    best_val: float
    validations_without_improvement: int
    history: list[dict[str, Any]]

    def __init__(self, cfg: Any, progress: bool = True) -> None:
        cfg.validate()
        self.cfg = cfg
        self.progress = progress
        self.out = Path(cfg.out)
        self.dist = init_distributed() if self.distributed else DistInfo()
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.device = resolve_device(cfg.device)
        if self.dist.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.step = 0
        self.elapsed = 0.0  #: training seconds before this process (restored on resume)
        self.best_val = -math.inf
        self.validations_without_improvement = 0
        self.history = []

    # ------------------------------------------------------------------ data
    def _splits(self, dataset: Any) -> Splits:
        """The run's splits: ``splits_file`` (default ``<out>/splits.json``), made and written
        (by rank 0) if it does not exist yet."""
        cfg = self.cfg
        path = Path(cfg.splits_file) if cfg.splits_file else self.out / "splits.json"
        if path.exists():
            return Splits.from_json(path)
        splits = make_splits(
            dataset, k=cfg.folds, seed=cfg.split_seed, val_fraction=cfg.val_fraction
        )
        if self.dist.is_main:
            splits.to_json(path)
        return splits

    @staticmethod
    def _cases_by_id(dataset: Any, ids: Sequence[str]) -> dict[str, Any]:
        """The dataset's cases by id; :class:`ConfigError` if one of ``ids`` is not there."""
        by_id = {c.case_id: c for c in dataset.cases}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise ConfigError(f"splits mention cases not in the dataset: {', '.join(missing[:5])}")
        return by_id

    def _resume_or_init(self) -> None:
        """End of set-up: resume from ``<out>/last.pt`` (dropping log rows after its step) or
        warm start from ``init_from``; then write ``<out>/config.yaml``."""
        last = self.out / "last.pt"
        if last.exists():
            self.load_checkpoint(last)  # type: ignore[attr-defined]
            if self.dist.is_main:
                self._truncate_log(self.step)
        elif self.cfg.init_from:
            self.init_weights(self.cfg.init_from)  # type: ignore[attr-defined]
        if self.dist.is_main:
            self.cfg.save(self.out / "config.yaml")

    # ------------------------------------------------------------------ log and progress
    def _log(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if self.dist.is_main:
            append_log_row(self.out / "log.csv", self.log_fields, row)

    def _truncate_log(self, step: int) -> None:
        """Drop log rows after ``step`` (see :func:`truncate_log`)."""
        truncate_log(self.out / "log.csv", self.log_fields, step)

    def _steps(self, desc: str = "training") -> Iterator[int]:
        start, end = self.step, self.cfg.max_steps
        if self.progress and self.dist.is_main:
            from tqdm import tqdm

            yield from tqdm(range(start, end), initial=start, total=end, desc=desc)
        else:
            yield from range(start, end)

    def elapsed_now(self) -> float:
        """Training seconds so far, including earlier (resumed) processes."""
        start = getattr(self, "_t0", None)
        return self.elapsed + (time.perf_counter() - start if start is not None else 0.0)

    # ------------------------------------------------------------------ checkpoints
    def _run_state(
        self, stateful: dict[str, Any], extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The checkpoint: model (registry format), ``state_dict()`` of each of ``stateful``
        (optimizer, scheduler / scaler), RNG states, counters, ``extra``, the training config."""
        return {
            **model_to_state(self.model),
            **{name: obj.state_dict() for name, obj in stateful.items()},
            "rng": capture_rng_state(cuda=self.device.type == "cuda"),
            "step": self.step,
            "elapsed_seconds": self.elapsed_now(),
            "best_val": self.best_val,
            "validations_without_improvement": self.validations_without_improvement,
            **(extra or {}),
            "train_config": self.cfg.to_dict(),
        }

    def save_checkpoint(self, path: Path) -> None:
        """Write the subclass's ``state()`` atomically to ``path`` (rank 0 only)."""
        if self.dist.is_main:
            save_atomic(self.state(), path)  # type: ignore[attr-defined]

    def _restore_run_state(
        self, state: dict[str, Any], stateful: dict[str, Any], strict: bool = False
    ) -> None:
        """Inverse of :meth:`_run_state` (call inside :func:`resume_errors`); with ``strict``
        the counter of validations without improvement and the RNG states must be present."""
        self.model.load_state_dict(state["state_dict"])
        for name, obj in stateful.items():
            obj.load_state_dict(state[name])
        self.step = int(state["step"])
        self.elapsed = float(state.get("elapsed_seconds", 0.0))
        self.best_val = float(state["best_val"])
        if strict:
            self.validations_without_improvement = int(state["validations_without_improvement"])
            restore_rng_state(state["rng"])
            return
        self.validations_without_improvement = int(state.get("validations_without_improvement", 0))
        if state.get("rng") is not None:  # checkpoints written before RNG states were kept
            restore_rng_state(state["rng"])

    def _select(self, score: float) -> None:
        """Model selection after a validation: a better ``score`` than any before is kept as
        ``<out>/best.pt``, otherwise it counts as one more validation without improvement."""
        if score > self.best_val:
            self.best_val = score
            self.validations_without_improvement = 0
            self.save_checkpoint(self.out / "best.pt")
        else:
            self.validations_without_improvement += 1

    def _warm_start(
        self, path: str | Path, model_name: str, widen: Widen | None = None, record: bool = True
    ) -> dict[str, int]:
        """Load every matching parameter of ``path`` (:func:`matching_parameters`) into the
        model; ``{"loaded", "skipped", "new"}``, with ``record`` also written to
        ``<out>/init.json``."""
        p = Path(path)
        source, own, matched = matching_parameters(p, self.model, widen)
        if not matched:
            raise ConfigError(f"--init {p}: no parameter matches this {model_name}")
        self.model.load_state_dict(matched, strict=False)
        facts = {
            "loaded": len(matched),
            "skipped": len(source) - len(matched),
            "new": len(own) - len(matched),
        }
        if record and self.dist.is_main:
            (self.out / "init.json").write_text(json.dumps({"init_from": str(p), **facts}))
        return facts
