"""Medical image I/O: volumes with geometry, NIfTI/DICOM/NRRD/MHA readers and writers."""

from ichseg.io.volume import (
    CANONICAL_AXCODES,
    Intensity,
    IntensityKind,
    Reorientation,
    Volume,
    Window,
    check_same_grid,
    make_affine,
    reorient,
    to_canonical,
)

__all__ = [
    "CANONICAL_AXCODES",
    "Intensity",
    "IntensityKind",
    "Reorientation",
    "Volume",
    "Window",
    "check_same_grid",
    "make_affine",
    "reorient",
    "to_canonical",
]
