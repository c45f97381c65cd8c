"""Iterative training samples: the network learns from its own corrected mistakes.

The RITM / SimpleClick / SAM recipe, for ICH-HPINet (not in the paper). For each sample:

1. ``n`` rounds (drawn from ``round_probs``, 0..3) are played **without gradient** by the real
   inference engine (:class:`~ichseg.interaction.hpinet_engine.HPINetEngine`, the same code a
   user's session runs) and the same simulated clinician the evaluation uses
   (:class:`~ichseg.interaction.simulated_user.SimulatedClinician`, scribbles or clicks): the
   clinician corrects the worst slice, prompts accumulate, the previous prediction is fed back,
   interaction memory frames pile up as at inference;
2. the clinician then corrects the result of round ``n`` once more and that round is trained:
   the SIM on the corrected slice, propagation to targets walking away from it with the earlier
   interaction frames in memory (up to ``max_memory_frames``), the VIM on the whole scan, all
   with the accumulated prompts, this round's prompts and the previous prediction as inputs;
3. the CE terms weigh voxels near this round's prompts and the previous round's errors
   ``1 + correction_weight`` times (:func:`correction_weights`), so following a correction pays.

With ``n = 0`` the trained round is the first one (empty previous mask), or, with probability
``auto_start_prob``, a correction of a synthetic "automatic" mask (round 0 from another model).
Every draw comes from the sample's own RNG, so samples stay a pure function of
``(seed, step, rank)`` and a resumed run repeats them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage as ndi

from ichseg.errors import ConfigError
from ichseg.interaction.hints import rasterize_prompts
from ichseg.interaction.hpinet_engine import HPINetEngine, HPINetEngineConfig, HPINetState
from ichseg.interaction.previous_mask import synthesize_previous_mask
from ichseg.interaction.simulated_user import SimulatedClinician
from ichseg.io.volume import Intensity, Volume, make_affine, to_canonical
from ichseg.preprocess.model_input import ModelGrid


@dataclass(frozen=True)
class IterativeConfig:
    """How iterative samples are drawn (``enabled=False``: the single-round sampler)."""

    enabled: bool = False
    #: probabilities of 0, 1, 2, 3, ... no-gradient rounds before the trained round
    round_probs: tuple[float, ...] = (0.35, 0.25, 0.2, 0.2)
    click_prob: float = 0.3  #: the clinician clicks (else scribbles) in this sample
    auto_start_prob: float = 0.1  #: round 0 is a synthetic automatic mask instead of nothing
    max_memory_frames: int = 7  #: earlier interaction frames kept besides the corrected slice
    correction_weight: float = 3.0  #: extra CE weight near new prompts and previous errors
    correction_radius_px: float = 6.0  #: "near a new prompt" in network pixels

    def __post_init__(self) -> None:
        probs = tuple(float(p) for p in self.round_probs)
        if not probs or min(probs) < 0 or sum(probs) <= 0:
            raise ConfigError(f"round_probs must be non-negative, not all 0: {self.round_probs}")
        object.__setattr__(self, "round_probs", probs)
        for name in ("click_prob", "auto_start_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.max_memory_frames < 0 or self.correction_weight < 0:
            raise ConfigError("max_memory_frames and correction_weight must be >= 0")
        if self.correction_radius_px <= 0:
            raise ConfigError(f"correction_radius_px must be > 0, got {self.correction_radius_px}")


def network_grid(shape_zyx: tuple[int, int, int], spacing_zyx: tuple[float, ...]) -> ModelGrid:
    """A :class:`ModelGrid` for an image that already is on the network grid (identity maps)."""
    z, y, x = (int(v) for v in shape_zyx)
    sz, sy, sx = (float(v) for v in spacing_zyx)
    vol = Volume(np.zeros((x, y, z), np.float32), make_affine((sx, sy, sz), "LPS"), Intensity.hu())
    canonical, reo = to_canonical(vol)
    return ModelGrid(reo, canonical, (z, y, x), (z, y, x))


def correction_weights(
    gt: np.ndarray,
    previous: np.ndarray,
    new_hints: np.ndarray,
    slices: list[int],
    cfg: IterativeConfig,
) -> np.ndarray:
    """``(Z, S, S)`` CE weights: ``1 + correction_weight`` on the given slices where the previous
    round was wrong or within ``correction_radius_px`` of a new prompt, 1 elsewhere."""
    w = np.ones(gt.shape, np.float32)
    if cfg.correction_weight <= 0:
        return w
    touched = new_hints.any(axis=0)
    for z in slices:
        near = np.zeros(gt.shape[1:], bool)
        if touched[z].any():
            near = ndi.distance_transform_edt(~touched[z]) <= cfg.correction_radius_px
        wrong = (previous[z] >= 0.5) != gt[z].astype(bool)
        w[z][near | wrong] += cfg.correction_weight
    return w


def play_rounds(
    model: torch.nn.Module,
    image: np.ndarray,
    gt: np.ndarray,
    spacing_zyx: tuple[float, float, float],
    rng: np.random.Generator,
    cfg: IterativeConfig,
    previous_mask_probs: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Play the no-gradient rounds and the clinician's next correction (see module docstring).

    Returns ``prompts`` (all, including this round's), ``new_prompts`` (this round's, on one
    slice), ``previous`` (the fed-back probability, ``(Z, S, S)``), ``state`` (the engine state
    after the last played round, or ``None``), ``rounds`` (played) and ``auto_start``.
    """
    n = int(rng.choice(len(cfg.round_probs), p=np.asarray(cfg.round_probs) / sum(cfg.round_probs)))
    mode = "click" if rng.random() < cfg.click_prob else "scribble"
    user = SimulatedClinician(mode=mode, start="random_band", seed=int(rng.integers(2**31)))
    gt_b = gt.astype(bool)
    previous = np.zeros(gt.shape, np.float32)
    state: HPINetState | None = None
    auto = rng.random() < cfg.auto_start_prob
    if auto:
        prev_mask, _ = synthesize_previous_mask(
            gt_b, rng, probs=previous_mask_probs, spacing_zyx=spacing_zyx
        )
        previous = prev_mask.astype(np.float32)
        state = HPINetState(previous, {}, ())
        user.step(np.zeros_like(gt_b), gt_b)  # the clinician's round 1 was the automatic model
    prompts: list = []
    played = 0
    if n > 0:
        was_training = model.training
        engine = HPINetEngine(model, HPINetEngineConfig(feed_previous=True))
        try:
            engine.encode_prepared(image, network_grid(gt.shape, spacing_zyx))
            for _ in range(n):
                turn = user.step(previous >= 0.5, gt_b)
                if turn.stop or not turn.prompts:
                    break
                prompts.extend(turn.prompts)
                out = engine.predict(prompts, turn.prompts, None, state)
                state = out.state
                previous = state.prob
                played += 1
        finally:
            model.train(was_training)
    turn = user.step(previous >= 0.5, gt_b)
    if turn.stop or not turn.prompts:  # already perfect: train a first round instead
        user = SimulatedClinician(mode=mode, start="random_band", seed=int(rng.integers(2**31)))
        turn = user.step(np.zeros_like(gt_b), gt_b)
        prompts, previous, state, played = [], np.zeros(gt.shape, np.float32), None, 0
    prompts.extend(turn.prompts)
    return {
        "prompts": prompts,
        "new_prompts": list(turn.prompts),
        "previous": previous,
        "state": state,
        "rounds": played,
        "auto_start": auto,
        "mode": mode,
    }


def memory_frames(
    state: HPINetState | None, exclude: int, limit: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Earlier interaction frames of ``state`` (most recent ``limit``, without ``exclude``) as
    ``(keys (1, F, kd, h, w), values (1, F, vd, h, w))``, detached; ``None`` if there are none."""
    if state is None or limit <= 0:
        return None
    frames = [z for z in state.interacted if z != exclude and z in state.memory][-limit:]
    if not frames:
        return None
    keys = torch.stack([state.memory[z][0] for z in frames])[None].detach()
    values = torch.stack([state.memory[z][1] for z in frames])[None].detach()
    return keys, values


def iterative_inputs(
    played: dict[str, Any], shape: tuple[int, int, int], scribble_width: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Hint maps of all prompts and of this round's, and the corrected slice ``r``."""
    hints = rasterize_prompts(played["prompts"], shape, scribble_width=scribble_width)
    new_hints = rasterize_prompts(played["new_prompts"], shape, scribble_width=scribble_width)
    r = int(played["new_prompts"][0].z)
    return hints, new_hints, r


def build_iterative_sample(
    model: torch.nn.Module,
    case: Any,
    sampler: Any,
    cfg: IterativeConfig,
    rng: np.random.Generator,
    step: int,
) -> dict[str, Any]:
    """One iterative training sample (tensors with a batch axis of 1, see module docstring);
    ``case`` is a :class:`~ichseg.training.data.PreparedCase`, ``sampler`` its
    :class:`~ichseg.training.data.SamplerConfig` (augmentation, targets, prompt widths)."""
    from ichseg.training.data import augment, choose_targets

    image, gt, spacing, applied = augment(case, sampler, rng)
    if not gt.any():
        raise ConfigError(f"case {case.case_id}: no hemorrhage left after augmentation")
    played = play_rounds(model, image, gt, spacing, rng, cfg, sampler.previous_mask_probs)
    hints, new_hints, r = iterative_inputs(played, gt.shape, sampler.scribble_width)
    targets = choose_targets(r, gt.shape[0], sampler.num_targets, sampler.distance_limit(step), rng)
    previous = played["previous"]
    weights = correction_weights(gt, previous, new_hints, list(range(gt.shape[0])), cfg)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None]

    return {
        "volume": t(image)[None],
        "hints": t(hints),
        "new_hints": t(new_hints),
        "prev_mask": t(previous)[None],
        "gt": t(gt)[None],
        "loss_weight": t(weights)[None],
        "memory": memory_frames(played["state"], r, cfg.max_memory_frames),
        "r_index": r,
        "k_indices": targets,
        "info": {
            "case_id": case.case_id,
            "rounds": played["rounds"],
            "auto_start": played["auto_start"],
            "mode": played["mode"],
            "domain": applied,
        },
    }


@torch.no_grad()
def interactive_validation(
    model: torch.nn.Module,
    cases: list[Any],
    rounds: int = 4,
    seed: int = 0,
    engine_config: HPINetEngineConfig | None = None,
) -> dict[str, float]:
    """Full simulated sessions on prepared validation cases with the network alone (previous
    round fed, no refinement; ``engine_config`` replaces those engine settings), scored on the
    network grid: ``val_dice`` is the mean Dice over rounds 1..``rounds`` (the area under the
    Dice-per-round curve), ``val_dice_final`` the mean Dice after the last round, ``val_noc85``
    the mean number of rounds to Dice >= 0.85 (``rounds + 1`` when never reached)."""
    engine_config = engine_config or HPINetEngineConfig(feed_previous=True)
    was_training = model.training
    curves, nocs = [], []
    try:
        for idx, case in enumerate(cases):
            gt = case.mask.astype(bool)
            if not gt.any():
                continue
            engine = HPINetEngine(model, engine_config)
            engine.encode_prepared(case.image, network_grid(gt.shape, case.spacing_zyx))
            user = SimulatedClinician(mode="scribble", start="random_band", seed=seed * 7919 + idx)
            prompts: list = []
            state = None
            pred = np.zeros_like(gt)
            curve = []
            for _ in range(rounds):
                turn = user.step(pred, gt)
                if not turn.stop and turn.prompts:
                    prompts.extend(turn.prompts)
                    state = engine.predict(prompts, turn.prompts, None, state).state
                    pred = state.prob >= 0.5
                inter = int((pred & gt).sum())
                curve.append(2.0 * inter / max(int(pred.sum()) + int(gt.sum()), 1))
            curves.append(curve)
            reached = [n + 1 for n, d in enumerate(curve) if d >= 0.85]
            nocs.append(reached[0] if reached else rounds + 1)
    finally:
        model.train(was_training)
    if not curves:
        return {"val_dice": float("nan"), "val_dice_final": float("nan"), "val_noc85": float("nan")}
    arr = np.asarray(curves)
    return {
        "val_dice": float(arr.mean()),
        "val_dice_final": float(arr[:, -1].mean()),
        "val_noc85": float(np.mean(nocs)),
    }
