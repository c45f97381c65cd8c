"""Statistics of hemorrhage masks and CT intensities, to compare phantoms with real scans.

The definitions follow ``/work/shared/data/calibration.md`` (real statistics of 525 masks):
per-scan lesion volume, connected components (26-connectivity), slices containing hemorrhage,
largest cross-section on one slice, extent (lesion voxels / bounding-box voxels), and HU of
brain, hematoma and local noise (std over 5x5 in-plane patches).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ichseg.data.synthetic_fields import local_std


@dataclass(frozen=True)
class MaskStats:
    """Per-scan statistics of a binary hemorrhage mask ``(i, j, k)``."""

    volume_ml: float
    components: int  #: all 26-connected components
    components_over_0_1ml: int  #: components of at least 0.1 mL
    slices: int  #: slices (k) containing hemorrhage
    max_cross_section_mm2: float
    extent: float  #: lesion voxels / voxels of the lesion's bounding box


def mask_stats(mask: np.ndarray, spacing: tuple[float, float, float]) -> MaskStats | None:
    """Statistics of a non-empty binary mask (``None`` when it is empty)."""
    m = np.asarray(mask) > 0
    n = int(m.sum())
    if n == 0:
        return None
    vox_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0
    lab, n_comp = ndi.label(m, structure=np.ones((3, 3, 3), dtype=bool))
    sizes = np.bincount(lab.ravel())[1:] * vox_ml
    per_slice = m.sum(axis=(0, 1))
    idx = np.argwhere(m)
    bbox = np.prod(idx.max(axis=0) - idx.min(axis=0) + 1)
    return MaskStats(
        volume_ml=n * vox_ml,
        components=int(n_comp),
        components_over_0_1ml=int((sizes >= 0.1).sum()),
        slices=int((per_slice > 0).sum()),
        max_cross_section_mm2=float(per_slice.max() * spacing[0] * spacing[1]),
        extent=float(n / bbox),
    )


def median_local_noise(image: np.ndarray, region: np.ndarray, size: int = 5) -> float:
    """Median over ``region`` voxels of the std in ``size x size`` in-plane patches (HU).

    ``image`` and ``region`` are ``(i, j, k)``; only patches entirely inside ``region`` count.
    """
    vals = []
    inner = ndi.binary_erosion(region, structure=np.ones((size, size, 1), dtype=bool))
    for k in np.flatnonzero(inner.any(axis=(0, 1))):
        sd = local_std(np.asarray(image[:, :, k], dtype=np.float64), size)
        vals.append(sd[inner[:, :, k]])
    if not vals:
        return float("nan")
    return float(np.median(np.concatenate(vals)))
