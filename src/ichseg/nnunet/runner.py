"""Train and predict with nnU-Net v2 through its own API.

* :func:`plan_and_preprocess` / :func:`train`: nnU-Net's fingerprint + dataset check, planner,
  preprocessor and ``run_training`` in a child process (:mod:`ichseg.nnunet._worker`) with
  nnU-Net's folders under one work folder. On CPU the default is ichseg's budget trainer
  (``nnUNetTrainerIchsegBudget``: nnU-Net's default trainer with ``epochs`` x
  ``iters_per_epoch`` iterations); on GPUs pass ``trainer="nnUNetTrainer"`` (nnU-Net's full
  1000 x 250 schedule), ``device="cuda"`` and ``num_gpus`` for nnU-Net's own DDP.
* :func:`predict_volumes` / :func:`predict_files`: nnU-Net's ``nnUNetPredictor`` (its
  preprocessing, sliding window and resampling back) on ichseg volumes. Each scan is given to
  nnU-Net as the export wrote training cases (LPS voxel order, HU); the mask is mapped back to
  the scan's own grid and checked to have its shape and affine. Checkpoints are read with
  :func:`ichseg.models.registry.safe_torch_load` (weights only, numpy scalars and arrays allowed:
  stock ``nnUNetTrainer`` checkpoints load too); the network comes from the
  trainer class's ``build_network_architecture`` and the run's ``plans.json``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ichseg.errors import ConfigError, GeometryError, IchsegError, InputFileError
from ichseg.io.volume import Volume
from ichseg.nnunet.compat import install_primus_standin, nnunet_env, require_nnunet, with_env
from ichseg.nnunet.export import ct_for_nnunet

BUDGET_TRAINER = "nnUNetTrainerIchsegBudget"
DEFAULT_TRAINER = "nnUNetTrainer"
PLANS = "nnUNetPlans"
CONFIGURATIONS = ("3d_fullres", "2d", "3d_lowres")


class NnunetRunError(IchsegError):
    """An nnU-Net step (planning, preprocessing, training) exited with an error."""


@dataclass(frozen=True)
class Budget:
    """Training schedule of the budget trainer (ignored by other trainers). The defaults are
    nnU-Net's own schedule; :meth:`cpu` is the small one for CPU runs."""

    epochs: int = 1000
    iters_per_epoch: int = 250
    val_iters: int = 50
    final_validation: bool = True

    @classmethod
    def cpu(cls, epochs: int = 1, iters_per_epoch: int = 20, val_iters: int = 2) -> Budget:
        """A CPU-sized schedule: a few iterations, no final full-case validation."""
        return cls(epochs, iters_per_epoch, val_iters, final_validation=False)

    def __post_init__(self) -> None:
        for name in ("epochs", "iters_per_epoch", "val_iters"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def iterations(self) -> int:
        return self.epochs * self.iters_per_epoch

    def env(self) -> dict[str, str]:
        return {
            "ICHSEG_NNUNET_EPOCHS": str(self.epochs),
            "ICHSEG_NNUNET_ITERS": str(self.iters_per_epoch),
            "ICHSEG_NNUNET_VAL_ITERS": str(self.val_iters),
            "ICHSEG_NNUNET_FINAL_VALIDATION": "1" if self.final_validation else "0",
        }


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    model_dir: Path  #: nnU-Net's results folder (dataset.json, plans.json, fold_N/)
    checkpoint: Path  #: ``fold_N/checkpoint_final.pth``
    plan_seconds: float
    train_seconds: float


def dataset_name(work_dir: str | Path, dataset_id: int) -> str:
    """``DatasetNNN_Name`` of an exported dataset in ``work_dir/nnUNet_raw``."""
    raw = Path(work_dir) / "nnUNet_raw"
    found = sorted(raw.glob(f"Dataset{int(dataset_id):03d}_*")) if raw.is_dir() else []
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise ConfigError(
            f"{raw}: {what} exported dataset with id {dataset_id} (run `ichseg nnunet export`)"
        )
    return found[0].name


def model_dir_for(
    work_dir: str | Path,
    dataset_id: int,
    trainer: str = BUDGET_TRAINER,
    configuration: str = "3d_fullres",
) -> Path:
    """nnU-Net's results folder of a training run."""
    name = dataset_name(work_dir, dataset_id)
    return Path(work_dir) / "nnUNet_results" / name / f"{trainer}__{PLANS}__{configuration}"


def _run_worker(step: str, spec: dict[str, Any], env: dict[str, str], nice: int) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(spec, fh)
    cmd = [sys.executable, "-m", "ichseg.nnunet._worker", step, fh.name]
    try:
        proc = subprocess.run(cmd, env=with_env(env), check=False, preexec_fn=_niceness(nice))
    finally:
        Path(fh.name).unlink(missing_ok=True)
    if proc.returncode != 0:
        raise NnunetRunError(f"nnU-Net {step} failed (exit code {proc.returncode}); see its output")


def _niceness(nice: int) -> Any:
    if nice <= 0:
        return None
    return lambda: os.nice(nice)


def _check_common(configuration: str, threads: int, device: str) -> None:
    if configuration not in CONFIGURATIONS:
        raise ConfigError(f"configuration must be one of {', '.join(CONFIGURATIONS)}")
    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    if device not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device must be cpu, cuda or mps, got {device!r}")


def plan_and_preprocess(
    work_dir: str | Path,
    dataset_id: int,
    *,
    configuration: str = "3d_fullres",
    threads: int = 2,
    gpu_memory_gb: float | None = None,
    nice: int = 0,
) -> float:
    """nnU-Net's fingerprint extraction (with ``verify_dataset_integrity``), experiment planning
    and preprocessing of ``configuration``; returns the seconds it took."""
    require_nnunet()
    _check_common(configuration, threads, "cpu")
    dataset_name(work_dir, dataset_id)
    # nnU-Net's planner sets torch's thread count from nnUNet_n_proc_DA
    env = nnunet_env(work_dir, threads=threads, da_workers=threads)
    spec = {
        "dataset_id": int(dataset_id),
        "configuration": configuration,
        "threads": int(threads),
        "gpu_memory_gb": gpu_memory_gb,
    }
    t0 = time.perf_counter()
    _run_worker("plan", spec, env, nice)
    return time.perf_counter() - t0


def train(
    work_dir: str | Path,
    dataset_id: int,
    *,
    fold: int = 0,
    configuration: str = "3d_fullres",
    trainer: str = BUDGET_TRAINER,
    budget: Budget | None = None,
    device: str = "cpu",
    num_gpus: int = 1,
    threads: int = 2,
    da_workers: int = 0,
    replan: bool = False,
    gpu_memory_gb: float | None = None,
    resume: bool = False,
    nice: int = 0,
) -> TrainResult:
    """Plan + preprocess (unless already done and not ``replan``) and train one fold with
    nnU-Net's ``run_training``. ``budget`` sets the budget trainer's schedule (default:
    :meth:`Budget.cpu` on CPU, nnU-Net's own schedule otherwise)."""
    require_nnunet()
    _check_common(configuration, threads, device)
    if fold < 0:
        raise ConfigError(f"fold must be >= 0, got {fold}")
    if num_gpus < 1 or (num_gpus > 1 and device != "cuda"):
        raise ConfigError("num_gpus > 1 needs device cuda (nnU-Net's DDP is CUDA-only)")
    if budget is None:
        budget = Budget.cpu() if device == "cpu" else Budget()
    name = dataset_name(work_dir, dataset_id)
    plans = Path(work_dir) / "nnUNet_preprocessed" / name / f"{PLANS}.json"
    plan_s = 0.0
    if replan or not plans.is_file():
        plan_s = plan_and_preprocess(
            work_dir,
            dataset_id,
            configuration=configuration,
            threads=threads,
            gpu_memory_gb=gpu_memory_gb,
            nice=nice,
        )
    env = {**nnunet_env(work_dir, threads=threads, da_workers=da_workers), **budget.env()}
    spec = {
        "dataset_id": int(dataset_id),
        "configuration": configuration,
        "fold": int(fold),
        "trainer": trainer,
        "num_gpus": int(num_gpus),
        "resume": bool(resume),
        "device": device,
        "threads": int(threads),
    }
    t0 = time.perf_counter()
    _run_worker("train", spec, env, nice)
    seconds = time.perf_counter() - t0
    model_dir = model_dir_for(work_dir, dataset_id, trainer, configuration)
    ckpt = model_dir / f"fold_{fold}" / "checkpoint_final.pth"
    if not ckpt.is_file():
        raise NnunetRunError(f"nnU-Net training finished without writing {ckpt}")
    return TrainResult(model_dir, ckpt, plan_s, seconds)


# --------------------------------------------------------------------------------------------
# prediction
# --------------------------------------------------------------------------------------------
def _trainer_class(name: str) -> Any:
    install_primus_standin()
    from ichseg.nnunet.compat import EXT_TRAINER_DIR

    os.environ.setdefault("nnUNet_extTrainer", str(EXT_TRAINER_DIR))
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    with contextlib.redirect_stdout(io.StringIO()):
        try:
            return recursive_find_trainer_class_by_name(name)
        except RuntimeError as exc:
            raise ConfigError(f"nnU-Net trainer {name!r} not found ({exc})") from None


def load_predictor(
    model_dir: str | Path,
    *,
    fold: int | str = 0,
    checkpoint: str = "checkpoint_final.pth",
    device: str = "cpu",
    use_mirroring: bool = False,
    tile_step_size: float = 0.5,
) -> Any:
    """An initialised ``nnUNetPredictor`` for ``model_dir/fold_<fold>/<checkpoint>``.

    The trainer class named in the checkpoint is looked up with nnU-Net's own lookup (the Primus
    stand-in installed, ``nnUNet_extTrainer`` defaulted to ichseg's trainers in ``os.environ``)
    only to call its ``build_network_architecture``; the weights are loaded weights-only."""
    require_nnunet()
    import torch

    from ichseg.models.registry import check_finite_state_dict, safe_torch_load

    model_dir = Path(model_dir)
    for f in ("dataset.json", "plans.json"):
        if not (model_dir / f).is_file():
            raise InputFileError(f"{model_dir}: not an nnU-Net results folder (no {f})")
    if not 0 < tile_step_size <= 1:
        raise ConfigError(f"tile_step_size must be in (0, 1], got {tile_step_size}")
    ckpt_path = model_dir / f"fold_{fold}" / checkpoint
    # stock nnU-Net checkpoints hold numpy scalars in their log: data, allowed; nothing else
    ckpt = safe_torch_load(ckpt_path, map_location="cpu", allow_numpy=True)
    try:
        weights = ckpt["network_weights"]
        trainer_name = str(ckpt["trainer_name"])
        configuration = str(ckpt["init_args"]["configuration"])
    except (KeyError, TypeError) as exc:
        raise InputFileError(f"{ckpt_path}: not an nnU-Net checkpoint (missing {exc})") from None
    check_finite_state_dict(weights, ckpt_path)
    mirror = ckpt.get("inference_allowed_mirroring_axes")

    with contextlib.redirect_stdout(io.StringIO()):
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
        from nnunetv2.utilities.label_handling.label_handling import (
            determine_num_input_channels,
        )
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    dataset_json = json.loads((model_dir / "dataset.json").read_text())
    plans_manager = PlansManager(json.loads((model_dir / "plans.json").read_text()))
    conf = plans_manager.get_configuration(configuration)
    n_in = determine_num_input_channels(plans_manager, conf, dataset_json)
    n_out = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    network = _trainer_class(trainer_name).build_network_architecture(
        plans_manager, conf, n_in, n_out, enable_deep_supervision=False
    )
    try:
        network.load_state_dict(weights)
    except RuntimeError as exc:
        raise InputFileError(f"{ckpt_path}: weights do not fit the planned network") from exc
    dev = torch.device(device)
    predictor = nnUNetPredictor(
        tile_step_size=tile_step_size,
        use_gaussian=True,
        use_mirroring=use_mirroring,
        perform_everything_on_device=dev.type == "cuda",
        device=dev,
        verbose=False,
        verbose_preprocessing=False,
        allow_tqdm=False,
    )
    predictor.manual_initialization(
        network,
        plans_manager,
        conf,
        [weights],
        dataset_json,
        trainer_name,
        tuple(mirror) if mirror is not None else None,
    )
    return predictor


def _threaded_predictor(
    model_dir: Any,
    fold: Any,
    checkpoint: str,
    device: str,
    use_mirroring: bool,
    tile_step_size: float,
    threads: int | None,
) -> Any:
    """:func:`load_predictor` after setting torch's CPU threads (``None``: leave them)."""
    import torch

    if threads is not None:
        torch.set_num_threads(int(threads))
    return load_predictor(
        model_dir,
        fold=fold,
        checkpoint=checkpoint,
        device=device,
        use_mirroring=use_mirroring,
        tile_step_size=tile_step_size,
    )


def predict_volumes(
    model_dir: str | Path,
    volumes: Sequence[Volume],
    *,
    fold: int | str = 0,
    device: str = "cpu",
    checkpoint: str = "checkpoint_final.pth",
    use_mirroring: bool = False,
    tile_step_size: float = 0.5,
    threads: int | None = None,
    progress: bool = True,
) -> list[Volume]:
    """Binary hemorrhage masks (uint8 0/1 label volumes) on each input volume's own grid.

    ``use_mirroring`` is nnU-Net's test-time augmentation (8x slower; off by default on CPU).
    Raises :class:`GeometryError` if a mask does not come back with its scan's shape and affine.
    """
    predictor = _threaded_predictor(
        model_dir, fold, checkpoint, device, use_mirroring, tile_step_size, threads
    )
    items: Any = list(volumes)
    if progress and len(items) > 1:
        from rich.progress import track

        items = track(items, description="nnU-Net predicting", transient=True)
    return [_predict_one(predictor, vol, model_dir, fold) for vol in items]


def _predict_one(predictor: Any, vol: Volume, model_dir: str | Path, fold: int | str) -> Volume:
    """One scan through an initialised predictor; the mask on the scan's own grid."""
    ct, reo = ct_for_nnunet(vol)
    sx, sy, sz = ct.spacing
    data = np.ascontiguousarray(ct.zyx()[None], dtype=np.float32)
    with contextlib.redirect_stdout(io.StringIO()):
        seg = predictor.predict_single_npy_array(data, {"spacing": [sz, sy, sx]}, None, None)
    seg = np.asarray(seg)
    if seg.shape != data.shape[1:]:
        raise GeometryError(f"nnU-Net returned shape {seg.shape}, expected {data.shape[1:]}")
    mask = reo.undo_volume(ct.as_label(np.ascontiguousarray((seg > 0).transpose(2, 1, 0))))
    if not (mask.shape == vol.shape and np.array_equal(mask.affine, vol.affine)):
        raise GeometryError("nnU-Net mask did not come back in the source scan's geometry")
    mask.meta = {"source": str(vol.meta.get("path", "")), "model": str(model_dir), "fold": fold}
    return mask


def predict_files(
    model_dir: str | Path,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    fold: int | str = 0,
    device: str = "cpu",
    checkpoint: str = "checkpoint_final.pth",
    use_mirroring: bool = False,
    tile_step_size: float = 0.5,
    threads: int | None = None,
    suffix: str = ".nii.gz",
    overwrite: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Predict each scan (NIfTI/NRRD/MHA file or DICOM folder) and write
    ``out_dir/<name><suffix>`` masks on the scan's grid; returns the written paths."""
    from ichseg.data.dataset import strip_image_suffix
    from ichseg.io.reader import load_volume, save_mask

    out = Path(out_dir)
    paths = [Path(p) for p in inputs]
    if not paths:
        raise InputFileError("no input scans given")
    targets: list[Path] = []
    for p in paths:
        stem = strip_image_suffix(p.name) if p.is_file() else p.name
        targets.append(out / f"{stem or p.name}{suffix}")
    if len(set(targets)) != len(targets):
        raise InputFileError("two inputs would write the same mask name")
    if not overwrite:
        for t in targets:
            if t.exists():
                raise InputFileError(f"{t}: exists; pass overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    items: Any = list(zip(paths, targets, strict=True))
    if progress and len(items) > 1:
        from rich.progress import track

        items = track(items, description="nnU-Net predicting", transient=True)
    predictor = _threaded_predictor(
        model_dir, fold, checkpoint, device, use_mirroring, tile_step_size, threads
    )
    for src, dst in items:
        mask = _predict_one(predictor, load_volume(src), model_dir, fold)
        written.append(save_mask(mask, dst, overwrite=overwrite))
    return written
