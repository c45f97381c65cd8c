"""Tiny synthetic CT volumes shared by the I/O tests (not a test module)."""

from __future__ import annotations

import numpy as np

from ichseg.io.volume import Volume, make_affine


def head_phantom(
    shape: tuple[int, int, int] = (24, 28, 6),
    spacing: tuple[float, float, float] = (0.5, 0.625, 2.5),
    axcodes: str = "LPS",
    origin: tuple[float, float, float] = (12.0, -20.0, -30.0),
) -> Volume:
    """Air, a skull ring, brain and a bright blood blob in raw HU (int16)."""
    ni, nj, nk = shape
    i, j = np.meshgrid(np.linspace(-1, 1, ni), np.linspace(-1, 1, nj), indexing="ij")
    r = np.sqrt(i**2 + j**2)
    sl = np.full((ni, nj), -1000, dtype=np.int16)
    sl[r < 0.9] = 900
    sl[r < 0.75] = 32
    arr = np.repeat(sl[:, :, None], nk, axis=2)
    arr[ni // 3 : ni // 3 + 3, nj // 2 : nj // 2 + 4, 1 : max(2, nk - 1)] = 70
    arr += np.arange(nk, dtype=np.int16)[None, None, :]  # make every slice different
    return Volume(arr, make_affine(spacing, axcodes, origin))
