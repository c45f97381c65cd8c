"""Making the installed ``nnunetv2`` usable from ichseg: presence check, folders, primus stand-in.

* ``nnunetv2`` is an optional extra (``ichseg[nnunet]``) installed with ``--no-deps`` (see
  docs/nnunet.md): its declared dependencies pull a CUDA build of torch through
  ``dynamic_network_architectures -> timm -> torchvision``. :func:`require_nnunet` turns its
  absence into one :class:`NnunetMissingError` line that says how to install it.
* nnU-Net's trainer lookup imports every module under ``nnunetv2.training.nnUNetTrainer``,
  including ``primus.primus_trainers``, which needs ``timm``. :func:`install_primus_standin` puts an
  empty module under that name in ``sys.modules`` (only when the real one cannot be imported), so
  the lookup skips the Primus trainers instead of failing.
* nnU-Net reads its three folders from environment variables *when it is first imported*;
  :func:`nnunet_env` builds them under one work folder. Planning, preprocessing and training run
  in a child process (:mod:`ichseg.nnunet._worker`) that gets these variables from the start.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

from ichseg.errors import ConfigError

PRIMUS_MODULE = "nnunetv2.training.nnUNetTrainer.primus.primus_trainers"
#: the pinned version this integration is tested with (constraints.txt)
NNUNET_VERSION = "2.8.1"
INSTALL_HINT = (
    "install the nnunet extra: pip install --no-deps -c constraints.txt nnunetv2==2.8.1 "
    "dynamic-network-architectures batchgenerators, then pip install -c constraints.txt "
    "acvl-utils batchgeneratorsv2 blosc2 connected-components-3d einops graphviz imagecodecs "
    "seaborn requests (or run `make install`; see docs/nnunet.md)"
)
#: folder (inside ichseg) that nnU-Net searches for ichseg's trainers (``nnUNet_extTrainer``)
EXT_TRAINER_DIR = Path(__file__).resolve().parent / "ext_trainers"


class NnunetMissingError(ConfigError):
    """``nnunetv2`` (the optional ``nnunet`` extra) is not installed."""


def nnunet_available() -> bool:
    """Whether ``nnunetv2`` can be imported (without importing it)."""
    return importlib.util.find_spec("nnunetv2") is not None


def require_nnunet() -> None:
    """Raise :class:`NnunetMissingError` (one line, with the install command) without nnunetv2."""
    if not nnunet_available():
        raise NnunetMissingError(f"nnU-Net v2 (nnunetv2) is not installed; {INSTALL_HINT}")


def install_primus_standin() -> bool:
    """Register an empty stand-in for nnU-Net's Primus trainers module when the real one cannot
    be imported (it needs timm, which is left out). Returns whether a stand-in was installed."""
    if PRIMUS_MODULE in sys.modules:
        return bool(getattr(sys.modules[PRIMUS_MODULE], "__ichseg_standin__", False))
    try:
        importlib.import_module(PRIMUS_MODULE)
        return False
    except ImportError:
        sys.modules.pop(PRIMUS_MODULE, None)
    stub = types.ModuleType(PRIMUS_MODULE)
    stub.__doc__ = "ichseg stand-in: nnU-Net's Primus trainers need timm, which is not installed."
    stub.__ichseg_standin__ = True  # type: ignore[attr-defined]
    sys.modules[PRIMUS_MODULE] = stub
    return True


def nnunet_env(work_dir: str | Path, threads: int = 2, da_workers: int = 0) -> dict[str, str]:
    """Environment variables for nnU-Net with its folders under ``work_dir`` (created):
    ``nnUNet_raw``, ``nnUNet_preprocessed``, ``nnUNet_results``, ichseg's trainer folder in
    ``nnUNet_extTrainer``, and CPU limits (threads, data-augmentation worker processes)."""
    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    if da_workers < 0:
        raise ConfigError(f"data-augmentation workers must be >= 0, got {da_workers}")
    root = Path(work_dir).resolve()
    env = {
        "nnUNet_raw": str(root / "nnUNet_raw"),
        "nnUNet_preprocessed": str(root / "nnUNet_preprocessed"),
        "nnUNet_results": str(root / "nnUNet_results"),
        "nnUNet_extTrainer": str(EXT_TRAINER_DIR),
        "nnUNet_n_proc_DA": str(da_workers),
        "nnUNet_def_n_proc": str(threads),
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    return env


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """nnU-Net's folder name ``DatasetNNN_Name`` (:class:`ConfigError` for a bad id or name)."""
    if not 1 <= int(dataset_id) <= 999:
        raise ConfigError(f"nnU-Net dataset ids are 1..999, got {dataset_id}")
    if not name or not all(c.isalnum() or c in "-" for c in name):
        raise ConfigError(f"dataset name must be letters, digits or '-', got {name!r}")
    return f"Dataset{int(dataset_id):03d}_{name}"


def with_env(env: dict[str, str]) -> dict[str, str]:
    """``os.environ`` updated with ``env`` (for a child process)."""
    out = dict(os.environ)
    out.update(env)
    return out
