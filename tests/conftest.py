"""Shared fixtures: tiny synthetic datasets written in the PhysioNet CT-ICH layout; a runner
of trainers under torchrun with two CPU ranks."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ichseg.data.subtypes import PHYSIONET_CSV_COLUMNS
from ichseg.io.nifti import write_nifti
from ichseg.io.volume import Intensity, Volume, make_affine


def write_tiny_physionet(root: Path, n_cases: int = 6, shape=(48, 48, 12), seed: int = 0) -> Path:
    """Head-like phantoms (skull ring, brain ~35 HU, one ~70 HU ellipsoid bleed) in (i, j, k)."""
    rng = np.random.default_rng(seed)
    (root / "ct_scans").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    affine = make_affine((0.9, 0.9, 5.0), "LPS", (20.0, 20.0, 0.0))
    ii, jj, kk = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    c = (np.array(shape) - 1) / 2
    head = ((ii - c[0]) / (shape[0] * 0.45)) ** 2 + ((jj - c[1]) / (shape[1] * 0.45)) ** 2
    rows = []
    for n in range(1, n_cases + 1):
        img = np.full(shape, -1000.0)
        img[head < 1.0] = 1000.0
        img[head < 0.8] = 35.0
        img += rng.normal(0, 3, shape) * (head < 0.8)
        ctr = np.array([c[0] + rng.uniform(-6, 6), c[1] + rng.uniform(-6, 6), rng.uniform(4, 7)])
        rad = np.array([rng.uniform(4, 8), rng.uniform(4, 8), rng.uniform(1.5, 3)])
        bleed = (
            ((ii - ctr[0]) / rad[0]) ** 2
            + ((jj - ctr[1]) / rad[1]) ** 2
            + ((kk - ctr[2]) / rad[2]) ** 2
        ) < 1.0
        img[bleed] = 70.0 + rng.normal(0, 3, int(bleed.sum()))
        name = f"{n:03d}.nii"
        vol = Volume(img.astype(np.int16), affine, Intensity.hu())
        write_nifti(vol, root / "ct_scans" / name)
        write_nifti(vol.as_label(bleed), root / "masks" / name)
        for k in range(shape[2]):
            has = int(bleed[:, :, k].any())
            rows.append([n, k + 1, 0, has, 0, 0, 0, 1 - has, 0])
    with (root / "hemorrhage_diagnosis_raw_ct.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(PHYSIONET_CSV_COLUMNS)
        w.writerows(rows)
    return root


@pytest.fixture(scope="session")
def tiny_physionet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_physionet(tmp_path_factory.mktemp("tiny_physionet"))


#: run by torchrun: ``Config.from_dict(cfg)`` -> ``Trainer(cfg).run()``, then rank 0 prints
#: ``RESULT [[rank, sum of the weights, steps], ...]`` of every rank
TORCHRUN_RUNNER = textwrap.dedent(
    """
    import importlib, json, sys
    import torch.distributed as dist

    def attr(spec):
        module, name = spec.split(":")
        return getattr(importlib.import_module(module), name)

    config_cls, trainer_cls = attr(sys.argv[1]), attr(sys.argv[2])
    tr = trainer_cls(config_cls.from_dict(json.loads(sys.argv[3])), progress=False)
    tr.run()
    total = sum(float(p.double().sum()) for p in tr.model.parameters())
    out = [None] * tr.dist.world
    dist.all_gather_object(out, (tr.dist.rank, total, tr.step))
    if tr.dist.is_main:
        print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture
def torchrun_two_ranks(tmp_path: Path) -> Callable[[str, str, dict], list]:
    """``run(config, trainer, cfg)``: train ``cfg`` with the classes ``config`` / ``trainer``
    (``"module:Name"``) under ``torchrun --nproc_per_node=2`` on CPU (gloo); returns the
    ``[rank, weight sum, steps]`` of each rank, after asserting that both ranks ran as many
    steps and ended with the same weights."""

    def run(config: str, trainer: str, cfg: dict) -> list:
        script = tmp_path / "torchrun_runner.py"
        script.write_text(TORCHRUN_RUNNER)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(script),
            config,
            trainer,
            json.dumps(cfg),
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
        line = next(x for x in res.stdout.splitlines() if x.startswith("RESULT "))
        ranks = json.loads(line[len("RESULT ") :])
        assert sorted(r[0] for r in ranks) == [0, 1]
        assert ranks[0][2] == ranks[1][2]
        assert abs(ranks[0][1] - ranks[1][1]) < 1e-6 * max(1.0, abs(ranks[0][1]))  # same weights
        return ranks

    return run
