"""nnU-Net v2 as an ichseg baseline, through nnU-Net's own package (optional extra ``nnunet``).

* :func:`export_dataset` / :func:`verify_export` — an ichseg dataset and its folds as an nnU-Net
  raw dataset, checked by nnU-Net's ``verify_dataset_integrity`` (:mod:`ichseg.nnunet.export`);
* :func:`train` — nnU-Net's plan + preprocess + ``run_training`` for one fold with a stated
  :class:`Budget` (:mod:`ichseg.nnunet.runner`);
* :func:`predict_volumes` / :func:`predict_files` — nnU-Net's predictor, masks in each scan's
  own geometry.

Importing this package does not import nnunetv2 (the export needs only ichseg); functions that
call nnU-Net raise :class:`~ichseg.nnunet.compat.NnunetMissingError` without it. See
docs/nnunet.md.
"""

from __future__ import annotations

from ichseg.nnunet.export import ExportResult, export_dataset, verify_export
from ichseg.nnunet.runner import (
    Budget,
    TrainResult,
    load_predictor,
    model_dir_for,
    plan_and_preprocess,
    predict_files,
    predict_volumes,
    train,
)

__all__ = [
    "Budget",
    "ExportResult",
    "TrainResult",
    "export_dataset",
    "load_predictor",
    "model_dir_for",
    "plan_and_preprocess",
    "predict_files",
    "predict_volumes",
    "train",
    "verify_export",
]
