"""Hemorrhage subtypes and their label values in multi-class subtype masks.

Binary masks use 1 = hemorrhage. Multi-class subtype masks (written by the synthetic generator as
``masks_subtype/NNN.nii`` and used by IHSNet) use the label values below; perihematomal edema is
*not* hemorrhage and never appears in a hemorrhage mask.
"""

from __future__ import annotations

from enum import IntEnum


class Subtype(IntEnum):
    """Label value of each hemorrhage subtype in a subtype mask (0 = background)."""

    EDH = 1  #: epidural hematoma
    IPH = 2  #: intraparenchymal hemorrhage
    IVH = 3  #: intraventricular hemorrhage
    SAH = 4  #: subarachnoid hemorrhage
    SDH = 5  #: subdural hematoma


SUBTYPE_NAMES: tuple[str, ...] = tuple(s.name for s in Subtype)

#: Column names of the PhysioNet CT-ICH per-slice CSV (``hemorrhage_diagnosis_raw_ct.csv``).
PHYSIONET_SUBTYPE_COLUMNS: dict[Subtype, str] = {
    Subtype.IVH: "Intraventricular",
    Subtype.IPH: "Intraparenchymal",
    Subtype.SAH: "Subarachnoid",
    Subtype.EDH: "Epidural",
    Subtype.SDH: "Subdural",
}

PHYSIONET_CSV_COLUMNS: tuple[str, ...] = (
    "PatientNumber",
    "SliceNumber",
    "Intraventricular",
    "Intraparenchymal",
    "Subarachnoid",
    "Epidural",
    "Subdural",
    "No_Hemorrhage",
    "Fracture_Yes_No",
)
