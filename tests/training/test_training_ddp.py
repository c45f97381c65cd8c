"""DistributedDataParallel path of the trainer: two CPU processes (gloo) under torchrun."""

from __future__ import annotations

from models_tiny import TINY32


def test_torchrun_two_cpu_ranks_stay_in_sync(tiny_physionet, tmp_path, torchrun_two_ranks):
    cfg = {
        "data": str(tiny_physionet),
        "out": str(tmp_path / "run"),
        "model_overrides": TINY32,
        "lr": 1e-3,
        "max_steps": 2,
        "val_every": 2,
        "log_every": 1,
        "num_threads": 1,
        "seed": 3,
        "device": "cpu",
    }
    ranks = torchrun_two_ranks(
        "ichseg.training.config:TrainConfig", "ichseg.training.trainer:Trainer", cfg
    )
    assert all(r[2] == 2 for r in ranks)
    assert (tmp_path / "run" / "last.pt").exists()
