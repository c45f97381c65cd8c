"""A tiny exported nnU-Net dataset and a 1-iteration nnU-Net model trained on it (shared)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("nnunetv2", reason="the nnunet extra is not installed")

from ichseg.data.dataset import Dataset, open_dataset
from ichseg.data.splits import Splits, make_splits

TINY_ID = 901


@pytest.fixture(scope="session")
def tiny_set(tiny_physionet: Path) -> tuple[Dataset, Splits]:
    """tests/conftest.py's 6-case PhysioNet-layout set (48x48x12) with 3 patient folds."""
    ds = open_dataset(tiny_physionet)
    return ds, make_splits(ds, k=3, seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_set: tuple[Dataset, Splits], tmp_path_factory: pytest.TempPathFactory):
    """nnU-Net's plan + preprocess + ONE training iteration (1 epoch x 1 iteration, 1
    validation iteration, no final validation) on 4 cases of 48x48x12: an untrained but
    genuine nnU-Net results folder made by ``ichseg.nnunet.runner.train``."""
    from ichseg.nnunet.export import export_dataset
    from ichseg.nnunet.runner import Budget, train

    ds, sp = tiny_set
    work = tmp_path_factory.mktemp("nnunet_work")
    export_dataset(
        ds, sp, work / "nnUNet_raw", dataset_id=TINY_ID, name="Tiny", fold=0, progress=False
    )
    return train(work, TINY_ID, fold=0, budget=Budget.cpu(1, 1, 1), threads=1)
