"""Hemorrhage subtypes of a scan from MUNet: per-subtype labels, volumes and scan-level presence.

* :func:`predict_subtypes` — segment and classify every axial slice of a scan; the label map
  (0 background, 1..5 :class:`~ichseg.data.subtypes.Subtype`) is returned on the SOURCE grid
  (same shape and affine: class probabilities are mapped back with the exact inverse of the
  network-grid preprocessing, then the most probable class is taken), volumes in mL come from
  the scan's real voxel size.
* :func:`label_mask_subtypes` — a finished hematoma mask (e.g. from an interactive session):
  each of its voxels gets the most probable *subtype* (background excluded) from MUNet's
  segmentation probabilities, so the mask's extent is kept and only its labels come from
  MUNet; volumes per subtype are reported.

Scan-level presence: a subtype is present when the classification head gives it probability
>= ``threshold`` on any slice; the scan's probability is the maximum over slices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ichseg.data.slices import axial_axis, preprocess_volume
from ichseg.data.subtypes import SUBTYPE_NAMES
from ichseg.errors import ConfigError, GeometryError
from ichseg.evaluation.classification import scan_presence
from ichseg.io.volume import Intensity, Volume, check_same_grid
from ichseg.preprocess.model_input import ModelGrid


@dataclass
class SubtypePrediction:
    """Result of :func:`predict_subtypes` / :func:`label_mask_subtypes`."""

    labels: Volume  #: uint8 0..5 on the source grid
    volumes_ml: dict[str, float]
    present: dict[str, bool]
    probabilities: dict[str, float]
    slices: list[dict[str, Any]] = field(default_factory=list)
    source: str = "munet"  #: "munet" (whole scan) or "mask" (labels of a given mask)

    @property
    def total_ml(self) -> float:
        return float(sum(self.volumes_ml.values()))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (no voxel data)."""
        return {
            "source": self.source,
            "label_values": {name: i + 1 for i, name in enumerate(SUBTYPE_NAMES)},
            "volumes_ml": dict(self.volumes_ml),
            "total_ml": self.total_ml,
            "present": dict(self.present),
            "probabilities": dict(self.probabilities),
            "shape": list(self.labels.shape),
            "spacing_mm": list(self.labels.spacing),
            "slices": list(self.slices),
        }


def _slice_index_map(volume: Volume) -> tuple[int, np.ndarray]:
    """``(axis, k_of_z)``: the stored axis that is axial and the stored index of each canonical
    slice ``z`` (the reorientation :func:`ichseg.io.volume.to_canonical` applies)."""
    axis, flipped = axial_axis(volume)
    n = volume.shape[axis]
    z = np.arange(n)
    return axis, (n - 1 - z) if flipped else z


@torch.no_grad()
def _network_outputs(
    model: nn.Module, volume: Volume, progress: bool, batch: int = 8
) -> tuple[np.ndarray, np.ndarray, ModelGrid]:
    """Softmax segmentation ``(C, Z, S, S)`` and sigmoid classification ``(Z, K)``."""
    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(model, "embed"):
        raise ConfigError("predict_subtypes needs a MUNet model (ichseg.models.munet)")
    image, grid = preprocess_volume(volume, cfg.slice_size, cfg.window, cfg.clahe_clip_limit)
    model.eval()
    device = next(model.parameters()).device
    starts = range(0, image.shape[0], batch)
    if progress:
        from rich.progress import track

        starts = track(list(starts), description="MUNet slices", transient=True)
    segs, clss = [], []
    for s in starts:
        x = torch.from_numpy(np.ascontiguousarray(image[s : s + batch, None])).to(device)
        if cfg.in_channels > 1:
            x = x.repeat(1, cfg.in_channels, 1, 1)
        out = model(x)
        segs.append(torch.softmax(out["seg_logits"].float(), 1).cpu().numpy())
        clss.append(torch.sigmoid(out["cls_logits"].float()).cpu().numpy())
    seg = np.concatenate(segs).transpose(1, 0, 2, 3)  # (C, Z, S, S)
    return seg, np.concatenate(clss), grid


def _probs_to_source(seg_czss: np.ndarray, grid: ModelGrid) -> np.ndarray:
    """Class probabilities on the source grid ``(C, i, j, k)`` (linear interpolation)."""
    return np.stack([grid.to_original(p.astype(np.float32), order="linear") for p in seg_czss])


def _summaries(
    labels: np.ndarray,
    volume: Volume,
    cls: np.ndarray,
    grid: ModelGrid,
    threshold: float,
) -> tuple[dict[str, float], dict[str, bool], dict[str, float], list[dict[str, Any]]]:
    vml = volume.voxel_volume_ml
    volumes = {n: float((labels == i + 1).sum() * vml) for i, n in enumerate(SUBTYPE_NAMES)}
    scan = scan_presence(cls, SUBTYPE_NAMES, threshold)
    present = {n: bool(v["present"]) for n, v in scan.items()}
    probs = {n: float(v["probability"]) for n, v in scan.items()}
    axis, k_of_z = _slice_index_map(volume)
    moved = np.moveaxis(labels, axis, 0)
    slices = []
    for z in range(cls.shape[0]):
        k = int(k_of_z[z])
        sl = moved[k]
        row: dict[str, Any] = {
            "z": z,
            "k": k,
            "probabilities": {n: float(cls[z, i]) for i, n in enumerate(SUBTYPE_NAMES)},
            "none_probability": float(cls[z, len(SUBTYPE_NAMES)])
            if cls.shape[1] > len(SUBTYPE_NAMES)
            else None,
            "predicted": [n for i, n in enumerate(SUBTYPE_NAMES) if cls[z, i] >= threshold],
            "voxels": {n: int((sl == i + 1).sum()) for i, n in enumerate(SUBTYPE_NAMES)},
        }
        slices.append(row)
    return volumes, present, probs, slices


def predict_subtypes(
    model: nn.Module, volume: Volume, *, progress: bool = False, threshold: float = 0.5
) -> SubtypePrediction:
    """Subtype labels (source geometry), mL per subtype and scan-level presence of a scan."""
    seg, cls, grid = _network_outputs(model, volume, progress)
    probs = _probs_to_source(seg, grid)
    labels = np.argmax(probs, axis=0).astype(np.uint8)
    if labels.shape != volume.shape:
        raise GeometryError(f"labels {labels.shape} do not match the scan {volume.shape}")
    volumes, present, p, slices = _summaries(labels, volume, cls, grid, threshold)
    out = Volume(labels, volume.affine.copy(), Intensity.label(), {"label_names": _names()})
    return SubtypePrediction(out, volumes, present, p, slices, "munet")


def label_mask_subtypes(
    mask: Volume, volume: Volume, model: nn.Module, *, threshold: float = 0.5
) -> SubtypePrediction:
    """Label every voxel of ``mask`` (> 0) with its most probable subtype from MUNet (voxels
    outside the mask stay 0); ``mask`` must lie on ``volume``'s grid."""
    check_same_grid(volume, mask, "mask")
    seg, cls, grid = _network_outputs(model, volume, False)
    probs = _probs_to_source(seg, grid)
    inside = np.asarray(mask.array) > 0
    sub = np.argmax(probs[1:], axis=0).astype(np.uint8) + 1
    labels = np.where(inside, sub, 0).astype(np.uint8)
    volumes, present, p, slices = _summaries(labels, volume, cls, grid, threshold)
    out = Volume(labels, volume.affine.copy(), Intensity.label(), {"label_names": _names()})
    return SubtypePrediction(out, volumes, present, p, slices, "mask")


def _names() -> dict[int, str]:
    return {i + 1: n for i, n in enumerate(SUBTYPE_NAMES)}
