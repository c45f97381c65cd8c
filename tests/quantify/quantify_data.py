"""Tiny head-like scans with labelled hemorrhage masks shared by the quantify tests."""

from __future__ import annotations

import numpy as np

from ichseg.io.volume import Intensity, Volume, make_affine, reorient

SPACING = (0.9, 0.9, 5.0)  #: voxel 4.05 mm³


def head_case(codes: str = "LPS", depth: int = 8) -> tuple[Volume, Volume]:
    """``(mask, scan)``: air, skull ring, brain 35 HU; IPH (label 2) box of 10 x 8 x 3 voxels
    with an IVH (label 3) part of 10 x 2 x 1 voxels touching it, and a one-voxel 400 HU speck
    (label 2). Reoriented to ``codes`` (same world geometry)."""
    shape = (48, 48, depth)
    ii, jj = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    r = np.hypot(ii - 23.5, jj - 23.5)
    sl = np.full(shape[:2], -1000, np.int16)
    sl[r < 22] = 1000
    sl[r < 19] = 35
    img = np.repeat(sl[:, :, None], depth, axis=2)
    lab = np.zeros(shape, np.uint8)
    lab[14:24, 16:24, 2:5] = 2  # 240 voxels
    lab[14:24, 24:26, 3] = 3  # 20 voxels
    lab[32, 30, 4] = 2  # 1 voxel speck
    img[lab > 0] = 68
    img[32, 30, 4] = 400
    rng = np.random.default_rng(0)
    img = (img + rng.normal(0, 2, shape) * (sl[:, :, None] == 35)).astype(np.int16)
    affine = make_affine(SPACING, "LPS", (30.0, -20.0, 10.0))
    mask = Volume(lab, affine, Intensity.label())
    scan = Volume(img, affine)
    if codes != "LPS":
        mask, scan = reorient(mask, codes)[0], reorient(scan, codes)[0]
    return mask, scan


N_VOXELS = 261
VOLUME_ML = N_VOXELS * 0.9 * 0.9 * 5.0 / 1000.0
