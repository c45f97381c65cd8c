"""Child process that calls nnU-Net's own planning, preprocessing and training functions.

Run as ``python -m ichseg.nnunet._worker plan|train SPEC.json`` by :mod:`ichseg.nnunet.runner`,
with nnU-Net's folder variables already in the environment. nnU-Net starts ``spawn`` process
pools, which re-import this module; all work happens under ``__main__``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ichseg.nnunet.compat import install_primus_standin

# at import time, so that spawned children (DDP training, nnU-Net's pools) get it too
install_primus_standin()


def plan(spec: dict[str, Any]) -> None:
    """nnU-Net fingerprint extraction (with its dataset check), planning and preprocessing."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )

    ids = [int(spec["dataset_id"])]
    n = int(spec["threads"])
    extract_fingerprints(ids, num_processes=n, check_dataset_integrity=True)
    plan_experiments(ids, gpu_memory_target_in_gb=spec.get("gpu_memory_gb"))
    preprocess(ids, configurations=(spec["configuration"],), num_processes=(n,))


def train(spec: dict[str, Any]) -> None:
    """nnU-Net's ``run_training`` for one fold."""
    import torch
    from nnunetv2.run.run_training import run_training

    if spec["device"] == "cpu":
        torch.set_num_threads(int(spec["threads"]))
        torch.set_num_interop_threads(1)
    run_training(
        str(spec["dataset_id"]),
        spec["configuration"],
        spec["fold"],
        trainer_class_name=spec["trainer"],
        num_gpus=int(spec["num_gpus"]),
        continue_training=bool(spec["resume"]),
        device=torch.device(spec["device"]),
    )


def main(argv: list[str]) -> int:
    step, spec_path = argv
    spec = json.loads(Path(spec_path).read_text())
    {"plan": plan, "train": train}[step](spec)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
