"""From a loaded scan to the network's input grid, and back, exactly.

``prepare_image`` does: reorient to canonical LPS -> HU window to [0, 1] -> ``(Z, Y, X)`` ->
pad in-plane to a square (air = 0) -> resize in-plane to ``slice_size`` (area averaging).
:class:`ModelGrid` remembers every step so probability maps / masks predicted on the network grid
map back onto the original voxel grid and affine (:meth:`ModelGrid.to_original`).

Optional physical-scale rules (:class:`PhysicalScale`, off unless asked for) keep a scan whose
geometry lies outside what a network was trained on at the scale it knows: a field of view
narrower than ``min_fov_mm`` is padded with air to that width before the resize (a cropped
reconstruction otherwise shows the brain magnified); one wider than ``max_fov_mm`` is
centre-cropped towards that width, never cutting into the head (every pixel above the window's
floor on any slice is kept; a wide reconstruction otherwise shows the brain shrunk, and the crop
is undone by padding with zeros on the way back), and slices thinner than ``min_slice_mm``
are averaged into slabs of about ``target_slice_mm`` (the network grid then has fewer slices
than the scan; :meth:`ModelGrid.model_slice` maps a scan slice to its slab, and results are
linearly interpolated back onto every scan slice).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ichseg.io.volume import Intensity, Reorientation, Volume, Window, to_canonical
from ichseg.preprocess.spatial import center_pad_or_crop, resize
from ichseg.preprocess.windowing import window_volume


@dataclass(frozen=True)
class PhysicalScale:
    """Physical-scale rules of :func:`prepare_image` (``None`` switches a rule off)."""

    min_fov_mm: float | None = None  #: pad narrower in-plane fields of view to this width (mm)
    min_slice_mm: float | None = None  #: average thinner slices into slabs ...
    target_slice_mm: float = 5.0  #: ... of about this thickness (mm)
    #: crop wider in-plane fields of view towards this width (mm), keeping the whole head
    max_fov_mm: float | None = None

    def __post_init__(self) -> None:
        for name in ("min_fov_mm", "min_slice_mm", "max_fov_mm"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 or None, got {value}")
        if not self.target_slice_mm > 0:
            raise ValueError(f"target_slice_mm must be > 0, got {self.target_slice_mm}")
        if (
            self.min_fov_mm is not None
            and self.max_fov_mm is not None
            and self.max_fov_mm < self.min_fov_mm
        ):
            raise ValueError(
                f"max_fov_mm ({self.max_fov_mm}) must be >= min_fov_mm ({self.min_fov_mm})"
            )

    def square_side(
        self, shape_yx: tuple[int, int], pixel_mm: float, occupied_yx: np.ndarray | None = None
    ) -> int:
        """In-plane square side (pixels): the larger side, or more to reach ``min_fov_mm``, or
        less to approach ``max_fov_mm`` as long as the centre crop keeps every ``True`` pixel of
        ``occupied_yx`` (the head; without it no crop is made)."""
        side = max(shape_yx)
        if self.min_fov_mm is not None and side * pixel_mm < self.min_fov_mm:
            side = int(np.ceil(self.min_fov_mm / pixel_mm))
        if (
            self.max_fov_mm is not None
            and occupied_yx is not None
            and side * pixel_mm > self.max_fov_mm
        ):
            side = smallest_side_keeping(
                occupied_yx, int(np.ceil(self.max_fov_mm / pixel_mm)), side
            )
        return side

    def n_slices(self, n: int, slice_mm: float) -> int:
        """Slices of the network grid for ``n`` scan slices of ``slice_mm``."""
        if self.min_slice_mm is None or slice_mm >= self.min_slice_mm:
            return n
        return max(1, min(n, round(n * slice_mm / self.target_slice_mm)))


def smallest_side_keeping(occupied_yx: np.ndarray, lower: int, upper: int) -> int:
    """The smallest square side in ``[lower, upper]`` whose centre pad/crop
    (:func:`~ichseg.preprocess.spatial.center_pad_or_crop`) keeps every ``True`` pixel."""
    rows = np.flatnonzero(occupied_yx.any(axis=1))
    cols = np.flatnonzero(occupied_yx.any(axis=0))
    if rows.size == 0:
        return upper
    for side in range(max(1, lower), upper):
        kept = True
        for n, idx in ((occupied_yx.shape[0], rows), (occupied_yx.shape[1], cols)):
            cut = n - side
            if cut > 0 and (idx[0] < cut // 2 or idx[-1] >= n - (cut - cut // 2)):
                kept = False
                break
        if kept:
            return side
    return upper


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
    def n_canonical_slices(self) -> int:
        return int(self.square_shape[0])

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """Voxel size of the network grid in mm (Z, Y, X)."""
        sx, sy, sz = self.canonical.spacing
        sz = sz * self.n_canonical_slices / self.model_shape[0]
        return (sz, sy / self.scale_yx, sx / self.scale_yx)

    def _slab_starts(self) -> np.ndarray:
        from ichseg.interaction.hints import bin_starts  # the hints' max-pooling partition

        return bin_starts(self.n_canonical_slices, self.model_shape[0])

    def model_slice(self, z: int) -> int:
        """The network-grid slice that holds canonical slice ``z``."""
        if self.model_shape[0] == self.n_canonical_slices:
            return int(z)
        return int(np.searchsorted(self._slab_starts(), int(z), side="right") - 1)

    def canonical_slices(self, j: int) -> range:
        """The canonical slices that network-grid slice ``j`` holds."""
        if self.model_shape[0] == self.n_canonical_slices:
            return range(int(j), int(j) + 1)
        starts = self._slab_starts()
        stop = starts[j + 1] if j + 1 < len(starts) else self.n_canonical_slices
        return range(int(starts[j]), int(stop))

    def to_canonical_zyx(self, array_zyx: np.ndarray, order: str = "linear") -> np.ndarray:
        """Network-grid ``(Z, S, S)`` array -> canonical ``(Z, Y, X)`` grid."""
        arr = np.asarray(array_zyx)
        if arr.shape != self.model_shape:
            raise ValueError(f"expected an array of shape {self.model_shape}, got {arr.shape}")
        up, _ = resize(arr, self.square_shape, order=order)
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
        return downsample_hints(square, self.model_shape)

    def canonical_slice_hints_to_model(
        self, slices: Sequence[int], hints_cnyx: np.ndarray
    ) -> np.ndarray:
        """:meth:`canonical_hints_to_model` of a hint volume that is empty except on the
        canonical ``slices``, given as their maps ``(C, len(slices), Y, X)``: only those are
        padded and shrunk (the same per-cell maximum; a slab takes the maximum of its slices)."""
        from ichseg.interaction.hints import downsample_hints

        arr = np.asarray(hints_cnyx, dtype=np.float32)
        zm = self.model_shape[0]
        if zm > self.n_canonical_slices:  # never made by the physical-scale rules
            dense = np.zeros((arr.shape[0], self.n_canonical_slices, *arr.shape[2:]), np.float32)
            dense[:, list(slices)] = arr
            return self.canonical_hints_to_model(dense)
        out = np.zeros((arr.shape[0], *self.model_shape), np.float32)
        if len(slices) == 0:
            return out
        side = self.square_shape[1]
        square, _ = center_pad_or_crop(arr, (None, side, side))
        small = downsample_hints(square, self.model_shape[1:])
        for n, z in enumerate(slices):
            j = self.model_slice(int(z))
            np.maximum(out[:, j], small[:, n], out=out[:, j])
        return out

    def canonical_to_model(
        self, array_zyx: np.ndarray, order: str = "area", pad_value: float = 0.0
    ) -> np.ndarray:
        """A canonical ``(Z, Y, X)`` array (image, probability, HU) -> the network grid; the
        in-plane square padding is filled with ``pad_value`` (e.g. -1000 for HU)."""
        square, _ = center_pad_or_crop(
            np.asarray(array_zyx), (None, *self.square_shape[1:]), value=pad_value
        )
        out, _ = resize(square, self.model_shape, order=order)
        return out

    def original_to_model(self, array_ijk: np.ndarray, order: str = "nearest") -> np.ndarray:
        """An array on the original ``(i, j, k)`` grid (e.g. a mask) -> network grid ``(Z,S,S)``."""
        vol = self.reorientation.original_affine
        canon, _ = to_canonical(Volume(np.asarray(array_ijk), vol, Intensity.label()))
        return self.canonical_to_model(canon.zyx(), order)


def prepare_image(
    volume: Volume,
    slice_size: int,
    window: Window | str = "brain",
    *,
    assume_stored_window_ok: bool = False,
    scale: PhysicalScale | None = None,
) -> tuple[np.ndarray, ModelGrid]:
    """Windowed ``(Z, S, S')`` float32 image in ``[0, 1]`` and the grid record to map back
    (``S'`` = ``slice_size``; ``Z`` = the scan's slices unless ``scale`` averages thin ones)."""
    scale = scale or PhysicalScale()
    canonical, reo = to_canonical(volume)
    win = window_volume(canonical, window, assume_stored_window_ok=assume_stored_window_ok)
    zyx = np.ascontiguousarray(win.transpose(2, 1, 0))
    sx, sy, sz = canonical.spacing
    occupied = None
    if scale.max_fov_mm is not None:  # the head: any pixel above the window's floor, any slice
        occupied = zyx.max(axis=0) > 0.0
    side = scale.square_side((zyx.shape[1], zyx.shape[2]), float(min(sx, sy)), occupied)
    square_shape = (int(zyx.shape[0]), side, side)
    model_shape = (scale.n_slices(zyx.shape[0], float(sz)), int(slice_size), int(slice_size))
    grid = ModelGrid(reo, canonical, square_shape, model_shape)
    out = grid.canonical_to_model(zyx, "area")
    return np.clip(out, 0.0, 1.0).astype(np.float32), grid


def prepare_mask(mask: Volume, grid: ModelGrid) -> np.ndarray:
    """Binary mask on the network grid (area average then >= 0.5, so thin parts survive fairly)."""
    canon, _ = to_canonical(mask)
    frac = grid.canonical_to_model((canon.zyx() > 0).astype(np.float32), "area")
    return (frac >= 0.5).astype(np.uint8)
