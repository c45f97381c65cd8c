"""Per-slice samples for MUNet: CLAHE-preprocessed slices, multi-class masks, subtype labels.

Every scan goes to the network grid exactly as at inference (:func:`preprocess_volume`: canonical
LPS -> HU window -> square pad -> area resize to ``slice_size`` -> CLAHE per slice), so a slice
``z`` is the canonical axial slice ``z``. Targets per slice:

* ``seg`` ``(S, S)`` uint8: 0 background, 1..5 :class:`~ichseg.data.subtypes.Subtype` labels,
  :data:`IGNORE` for hemorrhage pixels whose subtype is unknown (excluded from the loss and the
  metrics);
* ``labels`` ``(6,)`` uint8: EDH, IPH, IVH, SAH, SDH, none (multi-hot; none = no hemorrhage).

Label sources, per case (``PreparedSlices.seg_source``):

* ``"subtype_mask"`` — a multi-class ``masks_subtype/`` mask (the synthetic phantoms): the mask
  gives both the pixels and the slice labels (presence on the source-resolution slice, so a
  lesion too small to survive resizing still labels its slice).
* ``"csv"`` — a binary mask plus the PhysioNet per-slice CSV (``hemorrhage_diagnosis_raw_ct.csv``,
  the real CT-ICH release): class labels come from the CSV; mask pixels get the subtype only on
  slices the CSV flags with exactly one subtype, and :data:`IGNORE` on slices with several (or
  none: mask and CSV disagree). The real data therefore trains the classification head fully
  and the segmentation head only where the subtype of the pixels is unambiguous.

Prepared cases are cached as ``.npy`` files (one folder per case, keyed by the files and the
preprocessing) and read back memory-mapped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nibabel import orientations as nio

from ichseg.data.dataset import Case
from ichseg.data.subtypes import Subtype
from ichseg.errors import DatasetLayoutError
from ichseg.io.volume import Volume, to_canonical
from ichseg.preprocess.clahe import apply_clahe
from ichseg.preprocess.model_input import ModelGrid, prepare_image

IGNORE = 255  #: segmentation target value of hemorrhage pixels with unknown subtype
NUM_LABELS = 6  #: EDH, IPH, IVH, SAH, SDH, none
NONE_INDEX = 5
CACHE_VERSION = 1


def preprocess_volume(
    volume: Volume, slice_size: int = 256, window: str = "brain", clip_limit: float = 0.01
) -> tuple[np.ndarray, ModelGrid]:
    """Network-grid slices ``(Z, S, S)`` float32 in ``[0, 1]`` (windowed, CLAHE) and the grid."""
    image, grid = prepare_image(volume, slice_size, window)
    return apply_clahe(image, slice_axis=0, clip_limit=clip_limit), grid


def labels_to_grid(label_zyx: np.ndarray, grid: ModelGrid) -> np.ndarray:
    """Canonical ``(Z, Y, X)`` label map -> network grid ``(Z, S, S)`` uint8.

    Each label's area fraction is resized; a pixel is labelled when the labels cover >= 1/2 of
    it, with the label covering most (thin parts survive as fairly as in the binary masks).
    """
    out = np.zeros(grid.model_shape, np.uint8)
    values = [int(v) for v in np.unique(label_zyx) if v != 0]
    if not values:
        return out
    stack = np.stack(
        [grid.canonical_to_model((label_zyx == v).astype(np.float32), "area") for v in values]
    ).astype(np.float32)
    best = np.asarray(values, np.uint8)[np.argmax(stack, axis=0)]
    keep = stack.sum(axis=0) >= 0.5
    out[keep] = best[keep]
    return out


def label_vector(subtypes: set[Subtype] | frozenset[Subtype]) -> np.ndarray:
    """``{IPH, IVH}`` -> ``[0, 1, 1, 0, 0, 0]`` (EDH, IPH, IVH, SAH, SDH, none)."""
    v = np.zeros(NUM_LABELS, np.uint8)
    for s in subtypes:
        v[int(s) - 1] = 1
    if not subtypes:
        v[NONE_INDEX] = 1
    return v


def axial_axis(volume: Volume) -> tuple[int, bool]:
    """``(axis, flipped)``: the stored voxel axis running inferior-superior, and whether its
    index runs opposite to the canonical slice index ``z`` (``z = n - 1 - k`` when flipped)."""
    ornt = nio.io_orientation(volume.affine)
    axis = int(np.flatnonzero(ornt[:, 0] == 2)[0])
    return axis, bool(ornt[axis, 1] < 0)


def canonical_slice_of(volume: Volume) -> np.ndarray:
    """``z_of_k``: canonical slice index of every stored index ``k`` along the stored ``k`` axis.

    Raises :class:`DatasetLayoutError` when the stored ``k`` axis is not the axial axis (then
    per-slice labels indexed by ``k`` do not describe axial slices)."""
    axis, flipped = axial_axis(volume)
    if axis != 2:
        raise DatasetLayoutError(
            f"per-slice labels count slices along the stored k axis, but this scan's k axis is "
            f"not axial (axes {''.join(volume.axcodes)})"
        )
    n = volume.shape[2]
    k = np.arange(n)
    return (n - 1 - k) if flipped else k


@dataclass
class PreparedSlices:
    """All slices of one case on the network grid (arrays may be memory-mapped)."""

    case_id: str
    image: np.ndarray  #: (Z, S, S) float16 in [0, 1]
    seg: np.ndarray  #: (Z, S, S) uint8, IGNORE for unknown-subtype hemorrhage
    labels: np.ndarray  #: (Z, 6) uint8
    seg_source: str

    def __len__(self) -> int:
        return int(self.image.shape[0])


def _targets(case: Case, volume: Volume, grid: ModelGrid) -> tuple[np.ndarray, np.ndarray, str]:
    sub = case.load_subtype_mask(volume)
    if sub is not None:
        canon = to_canonical(sub)[0].zyx()
        present = np.stack([(canon == int(s)).any(axis=(1, 2)) for s in Subtype], axis=1)
        labels = np.stack(
            [label_vector({Subtype(i + 1) for i in np.flatnonzero(p)}) for p in present]
        )
        return labels_to_grid(np.ascontiguousarray(canon), grid), labels, "subtype_mask"
    mask = case.load_mask(volume)
    if case.slice_subtypes is None or mask is None:
        raise DatasetLayoutError(
            f"case {case.case_id}: MUNet needs subtype labels: a masks_subtype/ mask, or a binary "
            "mask plus the per-slice CSV (hemorrhage_diagnosis_raw_ct.csv)"
        )
    z_of_k = canonical_slice_of(volume)
    canon = (to_canonical(mask)[0].zyx() > 0).astype(np.uint8)
    per_z: list[frozenset[Subtype]] = [frozenset()] * canon.shape[0]
    for k, subs in case.slice_subtypes.items():
        if not 0 <= k < len(z_of_k):
            raise DatasetLayoutError(
                f"case {case.case_id}: per-slice CSV row for slice {k + 1} but the scan has "
                f"{len(z_of_k)} slices"
            )
        per_z[int(z_of_k[k])] = subs
    lab = np.zeros(canon.shape, np.uint8)
    for z, subs in enumerate(per_z):
        fg = canon[z] > 0
        lab[z][fg] = int(next(iter(subs))) if len(subs) == 1 else IGNORE
    labels = np.stack([label_vector(s) for s in per_z])
    return labels_to_grid(lab, grid), labels, "csv"


def _cache_key(case: Case, slice_size: int, window: str, clip_limit: float) -> str:
    parts = [case.image_path, case.mask_path, case.subtype_mask_path, slice_size, window]
    parts += [
        clip_limit,
        sorted((k, sorted(map(int, v))) for k, v in (case.slice_subtypes or {}).items()),
    ]
    parts += [case.meta.get("input_window"), CACHE_VERSION]
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:12]


def prepare_case_slices(
    case: Case,
    slice_size: int = 256,
    window: str = "brain",
    clip_limit: float = 0.01,
    cache_dir: str | Path | None = None,
) -> PreparedSlices:
    """Preprocess one case (see module docstring); cached under ``cache_dir`` when given."""
    folder = None
    if cache_dir is not None:
        folder = (
            Path(cache_dir) / f"{case.case_id}-{_cache_key(case, slice_size, window, clip_limit)}"
        )
        if (folder / "meta.json").is_file():
            meta = json.loads((folder / "meta.json").read_text())
            return PreparedSlices(
                case.case_id,
                np.load(folder / "image.npy", mmap_mode="r"),
                np.load(folder / "seg.npy", mmap_mode="r"),
                np.load(folder / "labels.npy"),
                str(meta["seg_source"]),
            )
    volume = case.load_image()
    image, grid = preprocess_volume(volume, slice_size, window, clip_limit)
    seg, labels, source = _targets(case, volume, grid)
    prepared = PreparedSlices(case.case_id, image.astype(np.float16), seg, labels, source)
    if folder is not None:
        tmp = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        np.save(tmp / "image.npy", prepared.image)
        np.save(tmp / "seg.npy", seg)
        np.save(tmp / "labels.npy", labels)
        (tmp / "meta.json").write_text(json.dumps({"seg_source": source, "case_id": case.case_id}))
        try:
            tmp.rename(folder)
        except OSError:  # another process prepared it first
            shutil.rmtree(tmp, ignore_errors=True)
    return prepared


class SliceSet:
    """The slices of several prepared cases, addressed by one flat index."""

    def __init__(self, cases: list[PreparedSlices]) -> None:
        self.cases = cases
        self.index = np.array(
            [(ci, z) for ci, c in enumerate(cases) for z in range(len(c))], dtype=np.int64
        ).reshape(-1, 2)
        self.labels = (
            np.concatenate([c.labels for c in cases]).astype(np.uint8)
            if cases
            else np.zeros((0, NUM_LABELS), np.uint8)
        )

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(image (S, S) float32, seg (S, S) uint8, labels (6,) uint8)`` of flat slice ``i``."""
        ci, z = self.index[int(i)]
        c = self.cases[int(ci)]
        return np.asarray(c.image[z], np.float32), np.asarray(c.seg[z]), self.labels[int(i)]

    def batch(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        items = [self.get(int(i)) for i in ids]
        return (
            np.stack([a for a, _, _ in items])[:, None],
            np.stack([b for _, b, _ in items]),
            np.stack([c for _, _, c in items]),
        )

    @property
    def positive(self) -> np.ndarray:
        """Flat indices of slices with any hemorrhage label."""
        return np.flatnonzero(self.labels[:, NONE_INDEX] == 0)


def label_combination_keys(labels: np.ndarray) -> np.ndarray:
    """One integer per slice naming its label combination (the label powerset: bit ``c`` set
    for class ``c``), used as the single-label class by SMOTE and by class-weighted sampling."""
    lab = np.asarray(labels, np.int64)
    return (lab * (1 << np.arange(lab.shape[1]))).sum(axis=1)
