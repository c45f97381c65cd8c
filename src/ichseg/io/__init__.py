"""Medical image I/O: volumes with geometry, NIfTI/DICOM/NRRD/MHA readers and writers.

The readers and writers (pydicom, SimpleITK, scipy) are imported on first use so that
``from ichseg.io import Volume`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from ichseg.io.dicom import (
        SeriesInfo,
        list_dicom_series,
        read_dicom_series,
        write_dicom_series,
    )
    from ichseg.io.intensity import (
        IntensityStats,
        detect_intensity,
        intensity_stats,
        plausibility_problems,
        validate_ct,
    )
    from ichseg.io.nifti import read_nifti, write_nifti
    from ichseg.io.reader import (
        DEFAULT_MAX_BYTES,
        DEFAULT_MAX_VOXELS,
        image_format,
        load_mask,
        load_volume,
        save_mask,
        save_volume,
    )
    from ichseg.io.sitk_io import read_sitk, write_sitk

_LAZY: dict[str, str] = {
    "SeriesInfo": "ichseg.io.dicom",
    "list_dicom_series": "ichseg.io.dicom",
    "read_dicom_series": "ichseg.io.dicom",
    "write_dicom_series": "ichseg.io.dicom",
    "IntensityStats": "ichseg.io.intensity",
    "detect_intensity": "ichseg.io.intensity",
    "intensity_stats": "ichseg.io.intensity",
    "plausibility_problems": "ichseg.io.intensity",
    "validate_ct": "ichseg.io.intensity",
    "read_nifti": "ichseg.io.nifti",
    "write_nifti": "ichseg.io.nifti",
    "DEFAULT_MAX_BYTES": "ichseg.io.reader",
    "DEFAULT_MAX_VOXELS": "ichseg.io.reader",
    "image_format": "ichseg.io.reader",
    "load_mask": "ichseg.io.reader",
    "load_volume": "ichseg.io.reader",
    "save_mask": "ichseg.io.reader",
    "save_volume": "ichseg.io.reader",
    "read_sitk": "ichseg.io.sitk_io",
    "write_sitk": "ichseg.io.sitk_io",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ichseg.io' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CANONICAL_AXCODES",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_VOXELS",
    "Intensity",
    "IntensityKind",
    "IntensityStats",
    "Reorientation",
    "SeriesInfo",
    "Volume",
    "Window",
    "check_same_grid",
    "detect_intensity",
    "image_format",
    "intensity_stats",
    "list_dicom_series",
    "load_mask",
    "load_volume",
    "make_affine",
    "plausibility_problems",
    "read_dicom_series",
    "read_nifti",
    "read_sitk",
    "reorient",
    "save_mask",
    "save_volume",
    "to_canonical",
    "validate_ct",
    "write_dicom_series",
    "write_nifti",
    "write_sitk",
]
