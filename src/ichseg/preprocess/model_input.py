"""From a loaded scan to the network's input grid, and back, exactly.

``prepare_image`` does: reorient to canonical LPS -> HU window to [0, 1] -> ``(Z, Y, X)`` ->
pad in-plane to a square (air = 0) -> resize in-plane to ``slice_size`` (area averaging).
:class:`ModelGrid` remembers every step so probability maps / masks predicted on the network grid
map back onto the original voxel grid and affine (:meth:`ModelGrid.to_original`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ichseg.io.volume import Intensity, Reorientation, Volume, Window, to_canonical
from ichseg.preprocess.spatial import center_pad_or_crop, resize
from ichseg.preprocess.windowing import window_volume


@dataclass
class ModelGrid:
    """The network grid of one scan and how to get back to the original grid."""

    reorientation: Reorientation
    canonical: Volume  #: the canonical (LPS) volume, original intensities
    square_shape: tuple[int, int, int]  #: (Z, S0, S0) after in-plane square padding
    model_shape: tuple[int, int, int]  #: (Z, S, S) network grid

    @property
    def scale_yx(self) -> float:
        """Network pixels per original pixel in-plane (e.g. 0.5 for 512 -> 256)."""
        return self.model_shape[1] / self.square_shape[1]

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """Voxel size of the network grid in mm (Z, Y, X)."""
        sx, sy, sz = self.canonical.spacing
        return (sz, sy / self.scale_yx, sx / self.scale_yx)

    def to_canonical_zyx(self, array_zyx: np.ndarray, order: str = "linear") -> np.ndarray:
        """Network-grid ``(Z, S, S)`` array -> canonical ``(Z, Y, X)`` grid."""
        arr = np.asarray(array_zyx)
        if arr.shape != self.model_shape:
            raise ValueError(f"expected an array of shape {self.model_shape}, got {arr.shape}")
        up, _ = resize(arr, (None, self.square_shape[1], self.square_shape[2]), order=order)
        zyx = self.canonical.zyx().shape
        out, _ = center_pad_or_crop(up, (None, zyx[1], zyx[2]))
        return out

    def to_original(self, array_zyx: np.ndarray, order: str = "linear") -> np.ndarray:
        """Network-grid ``(Z, S, S)`` array -> array on the ORIGINAL ``(i, j, k)`` voxel grid."""
        return self.canonical_to_original(self.to_canonical_zyx(array_zyx, order=order))

    def canonical_to_original(self, canon_zyx: np.ndarray) -> np.ndarray:
        """Canonical ``(Z, Y, X)`` array -> the ORIGINAL ``(i, j, k)`` voxel grid (exact)."""
        return self.reorientation.undo(
            np.ascontiguousarray(np.asarray(canon_zyx).transpose(2, 1, 0))
        )

    def mask_to_original(self, prob_zyx: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """Threshold a network-grid probability map after mapping it back (smooth edges)."""
        return (self.to_original(prob_zyx.astype(np.float32), order="linear") >= threshold).astype(
            np.uint8
        )

    def canonical_hints_to_model(self, hints_czyx: np.ndarray) -> np.ndarray:
        """Hint maps ``(C, Z, Y, X)`` on the canonical grid -> ``(C, Z, S, S)`` network grid.

        Square padding adds empty space; shrinking takes the maximum per output pixel so a 1-px
        stroke always survives (never bilinear + threshold).
        """
        from ichseg.interaction.hints import downsample_hints

        side = self.square_shape[1]
        square, _ = center_pad_or_crop(np.asarray(hints_czyx), (None, side, side))
        return downsample_hints(square, (self.model_shape[0], *self.model_shape[1:]))

    def original_to_model(self, array_ijk: np.ndarray, order: str = "nearest") -> np.ndarray:
        """An array on the original ``(i, j, k)`` grid (e.g. a mask) -> network grid ``(Z,S,S)``."""
        vol = self.reorientation.original_affine
        canon, _ = to_canonical(Volume(np.asarray(array_ijk), vol, Intensity.label()))
        return _square_and_resize(canon.zyx(), self.model_shape[1], order)[0]


def _square_and_resize(
    zyx: np.ndarray, slice_size: int, order: str
) -> tuple[np.ndarray, tuple[int, int, int]]:
    side = max(zyx.shape[1], zyx.shape[2])
    square, _ = center_pad_or_crop(np.ascontiguousarray(zyx), (None, side, side))
    out, _ = resize(square, (None, slice_size, slice_size), order=order)
    return out, tuple(int(s) for s in square.shape)  # type: ignore[return-value]


def prepare_image(
    volume: Volume,
    slice_size: int,
    window: Window | str = "brain",
    *,
    assume_stored_window_ok: bool = False,
) -> tuple[np.ndarray, ModelGrid]:
    """Windowed ``(Z, S, S)`` float32 image in ``[0, 1]`` and the grid record to map back."""
    canonical, reo = to_canonical(volume)
    win = window_volume(canonical, window, assume_stored_window_ok=assume_stored_window_ok)
    zyx = win.transpose(2, 1, 0)
    out, square_shape = _square_and_resize(zyx, slice_size, "area")
    grid = ModelGrid(reo, canonical, square_shape, tuple(int(s) for s in out.shape))  # type: ignore[arg-type]
    return np.clip(out, 0.0, 1.0).astype(np.float32), grid


def prepare_mask(mask: Volume, grid: ModelGrid) -> np.ndarray:
    """Binary mask on the network grid (area average then >= 0.5, so thin parts survive fairly)."""
    canon, _ = to_canonical(mask)
    frac, _ = _square_and_resize((canon.zyx() > 0).astype(np.float32), grid.model_shape[1], "area")
    return (frac >= 0.5).astype(np.uint8)
