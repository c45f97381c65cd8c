"""Shared fixtures: tiny synthetic datasets written in the PhysioNet CT-ICH layout."""

from __future__ import annotations

import csv
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
