"""Datasets (PhysioNet CT-ICH, HemSeg, manifests, paired folders), subtypes and patient-wise splits."""

from ichseg.data.dataset import Case, Dataset, open_dataset
from ichseg.data.hemseg import open_hemseg
from ichseg.data.manifest import open_manifest, open_paired_dirs, open_paired_folder
from ichseg.data.physionet import open_physionet, parse_demographics_csv, parse_diagnosis_csv
from ichseg.data.splits import Fold, Splits, make_splits
from ichseg.data.subtypes import PHYSIONET_CSV_COLUMNS, PHYSIONET_SUBTYPE_COLUMNS, Subtype

__all__ = [
    "PHYSIONET_CSV_COLUMNS",
    "PHYSIONET_SUBTYPE_COLUMNS",
    "Case",
    "Dataset",
    "Fold",
    "Splits",
    "Subtype",
    "make_splits",
    "open_dataset",
    "open_hemseg",
    "open_manifest",
    "open_paired_dirs",
    "open_paired_folder",
    "open_physionet",
    "parse_demographics_csv",
    "parse_diagnosis_csv",
]
