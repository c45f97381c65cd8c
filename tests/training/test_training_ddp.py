"""DistributedDataParallel path of the trainer: two CPU processes (gloo) under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

RUNNER = textwrap.dedent(
    """
    import json, sys
    import torch
    import torch.distributed as dist
    from ichseg.training.config import TrainConfig
    from ichseg.training.trainer import Trainer

    cfg = TrainConfig.from_dict(json.loads(sys.argv[1]))
    tr = Trainer(cfg, progress=False)
    tr.run()
    total = sum(float(p.double().sum()) for p in tr.model.parameters())
    out = [None] * tr.dist.world
    dist.all_gather_object(out, (tr.dist.rank, total, tr.step))
    if tr.dist.is_main:
        print("RESULT " + json.dumps(out))
    """
)


TINY = {
    "slice_size": 32,
    "vim_base": 4,
    "sim_widths": [8, 8, 16, 16],
    "sim_aspp_channels": 8,
    "key_widths": [8, 8, 16],
    "value_widths": [8, 8, 16],
    "key_dim": 8,
    "value_dim": 16,
    "decoder_widths": [16, 8, 8],
}


def test_torchrun_two_cpu_ranks_stay_in_sync(tiny_physionet, tmp_path):
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    cfg = {
        "data": str(tiny_physionet),
        "out": str(tmp_path / "run"),
        "model_overrides": TINY,
        "lr": 1e-3,
        "max_steps": 2,
        "val_every": 2,
        "log_every": 1,
        "num_threads": 1,
        "seed": 3,
        "device": "cpu",
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        json.dumps(cfg),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    line = next(x for x in res.stdout.splitlines() if x.startswith("RESULT "))
    ranks = json.loads(line[len("RESULT ") :])
    assert sorted(r[0] for r in ranks) == [0, 1]
    assert all(r[2] == 2 for r in ranks)
    assert abs(ranks[0][1] - ranks[1][1]) < 1e-6 * max(1.0, abs(ranks[0][1]))  # same weights
    assert (tmp_path / "run" / "last.pt").exists()
