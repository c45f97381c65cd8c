"""Losses: soft Dice + binary cross-entropy, and ICH-HPINet's composite loss.

The paper's total loss is ``L = l1*VSL + l2*SSL + l3*FCL`` with every sub-loss
``a*Dice + b*CE``; defaults follow the paper (``l = 5/1/4``, ``a = b = 0.5``). The authors' code
instead used ``5*SSL + 1*FCL + 4*VSL`` with Dice only; that variant is the ``code`` preset of
:class:`LossWeights` so Tables 3 and 4 of the paper can be reproduced as config sweeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ichseg.errors import ConfigError


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """``1 - soft Dice`` per sample, averaged over the batch.

    ``eps`` smooths empty targets: an empty target with an all-background prediction scores ~0.
    """
    prob = torch.sigmoid(logits.float())
    target = target.float()
    dims = tuple(range(1, prob.ndim))
    inter = (prob * target).sum(dims)
    denom = prob.sum(dims) + target.sum(dims)
    return (1.0 - (2.0 * inter + eps) / (denom + eps)).mean()


def bce_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean binary cross-entropy; ``weight`` (same shape) weights voxels (normalised by its
    mean, so the loss scale does not change with the amount of emphasis)."""
    if weight is None:
        return F.binary_cross_entropy_with_logits(logits.float(), target.float())
    wt = weight.float()
    per = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    return (per * wt).sum() / wt.sum().clamp(min=1e-6)


@dataclass(frozen=True)
class LossWeights:
    """Weights of the composite loss (all non-negative)."""

    volume: float = 5.0  #: l1, VSL (VIM volume mask)
    slice: float = 1.0  #: l2, SSL (SIM + propagated slice masks)
    fcm: float = 4.0  #: l3, FCL (FCM auxiliary masks)
    dice: float = 0.5  #: a, Dice share in each sub-loss
    ce: float = 0.5  #: b, CE share in each sub-loss

    def __post_init__(self) -> None:
        for name in ("volume", "slice", "fcm", "dice", "ce"):
            if getattr(self, name) < 0:
                raise ConfigError(f"loss weight {name} must be >= 0, got {getattr(self, name)}")
        if self.dice + self.ce == 0:
            raise ConfigError("loss weights dice and ce cannot both be 0")

    @classmethod
    def preset(cls, name: str) -> LossWeights:
        """``paper`` (5/1/4, Dice+CE 0.5/0.5) or ``code`` (authors' code: 4/5/1, Dice only)."""
        if name == "paper":
            return cls()
        if name == "code":
            return cls(volume=4.0, slice=5.0, fcm=1.0, dice=1.0, ce=0.0)
        raise ConfigError(f"unknown loss preset {name!r}; choose 'paper' or 'code'")


def dice_ce(
    logits: torch.Tensor,
    target: torch.Tensor,
    w: LossWeights,
    voxel_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """``a*Dice + b*CE`` for one prediction (``voxel_weight`` weights the CE term)."""
    loss = logits.new_zeros((), dtype=torch.float32)
    if w.dice:
        loss = loss + w.dice * soft_dice_loss(logits, target)
    if w.ce:
        loss = loss + w.ce * bce_loss(logits, target, voxel_weight)
    return loss


def _pool_weight(weight: torch.Tensor | None, size: tuple[int, ...]) -> torch.Tensor | None:
    if weight is None or tuple(weight.shape[2:]) == tuple(size):
        return weight
    pool = F.adaptive_max_pool3d if weight.ndim == 5 else F.adaptive_max_pool2d
    return pool(weight.float(), size)


def downsample_target(target: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Binary target on a coarser grid: area-average then threshold at 0.5 (never soft labels)."""
    if tuple(target.shape[2:]) == tuple(size):
        return target.float()
    pooled = (
        F.adaptive_avg_pool3d(target.float(), size)
        if target.ndim == 5
        else (F.adaptive_avg_pool2d(target.float(), size))
    )
    return (pooled >= 0.5).float()


@dataclass
class LossBreakdown:
    total: torch.Tensor
    vsl: torch.Tensor
    ssl: torch.Tensor
    fcl: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {
            "loss": float(self.total.detach()),
            "vsl": float(self.vsl.detach()),
            "ssl": float(self.ssl.detach()),
            "fcl": float(self.fcl.detach()),
        }


def hpinet_loss(
    outputs: dict,
    gt_volume: torch.Tensor,
    r_index: int,
    k_indices: list[int],
    weights: LossWeights | None = None,
    voxel_weight: torch.Tensor | None = None,
) -> LossBreakdown:
    """Composite loss of one :meth:`HPINet.forward_train` call.

    ``gt_volume`` is ``(B, 1, D, H, W)`` binary at slice resolution. VSL compares the VIM logits with
    the GT pooled to the VIM grid; SSL averages the SIM slice loss and every propagated slice loss;
    FCL averages over every FCM auxiliary map. ``voxel_weight`` (``(B, 1, D, H, W)``, >= 0, not in
    the paper) weights the CE terms, e.g. to stress voxels near a correction.
    """
    vw = voxel_weight
    w = weights or LossWeights()
    zero = gt_volume.new_zeros((), dtype=torch.float32)

    vsl = zero
    vim_logits = outputs.get("vim_logits")
    if vim_logits is not None and w.volume:
        size = tuple(vim_logits.shape[2:])
        vsl = dice_ce(vim_logits, downsample_target(gt_volume, size), w, _pool_weight(vw, size))

    slice_terms = []
    if outputs.get("sim_logits") is not None:
        slice_terms.append(
            dice_ce(
                outputs["sim_logits"],
                gt_volume[:, :, r_index],
                w,
                None if vw is None else vw[:, :, r_index],
            )
        )
    for k, logits in zip(k_indices, outputs.get("mpffm_logits", []), strict=False):
        slice_terms.append(
            dice_ce(logits, gt_volume[:, :, k], w, None if vw is None else vw[:, :, k])
        )
    ssl = torch.stack(slice_terms).mean() if slice_terms else zero

    fcm_terms = []
    for k, aux_list in zip(k_indices, outputs.get("fcm_aux_logits", []), strict=False):
        for aux in aux_list:
            target = gt_volume[:, :, k]
            if aux.shape[-2:] != target.shape[-2:]:
                target = downsample_target(target, tuple(aux.shape[-2:]))
            fcm_terms.append(dice_ce(aux, target, w))
    fcl = torch.stack(fcm_terms).mean() if fcm_terms else zero

    total = w.volume * vsl + w.slice * ssl + w.fcm * fcl
    return LossBreakdown(total, vsl, ssl, fcl)
