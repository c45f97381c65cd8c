"""Training data for ICH-HPINet: cached network-grid cases and the per-step sample builder.

A training sample follows the paper (and fixes the authors' code, reference notes §8):

* the prompt is generated **on** the prompted slice ``S_r`` (a hemorrhage slice), either the
  paper's 3–7 random foreground + background points or robot scribbles on the errors of a
  synthetic previous-round mask;
* the previous-round mask is synthetic (zero 50 %, erode/dilate, opening, z-shift, blobs);
* targets ``S_k`` are drawn at distance 1..K from ``S_r`` (K grows with a curriculum), in one
  propagation direction, and may be hemorrhage-free so the network learns to stop;
* every sample is a pure function of ``(seed, step, rank)``, so a resumed run sees exactly the
  samples the uninterrupted run would have seen.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ichseg.data.dataset import Case
from ichseg.errors import EmptyMaskError
from ichseg.interaction.hints import rasterize_prompts
from ichseg.interaction.point_sampler import simulate_training_prompts
from ichseg.interaction.previous_mask import synthesize_previous_mask
from ichseg.interaction.scribble_robot import ScribbleRobot
from ichseg.io.volume import Volume
from ichseg.preprocess.model_input import ModelGrid, prepare_image, prepare_mask
from ichseg.preprocess.windowing import apply_window

TRAINING_ROBOT = ScribbleRobot(kernel_size=0.12, kernel_jitter=0.2)


@dataclass
class PreparedCase:
    """A case on the network grid: windowed image and binary mask, both ``(Z, S, S)``."""

    case_id: str
    image: np.ndarray  # float32 [0, 1]
    mask: np.ndarray  # uint8 {0, 1}
    spacing_zyx: tuple[float, float, float]
    hu: np.ndarray | None = None  # float16 HU on the same grid (for domain randomisation)

    @property
    def positive_slices(self) -> np.ndarray:
        return np.flatnonzero(self.mask.reshape(self.mask.shape[0], -1).any(axis=1))


def network_grid_hu(volume: Volume, grid: ModelGrid) -> np.ndarray:
    """The scan in (approximate) HU on the network grid ``(Z, S, S)``, float16: square-padded
    with air (-1000 HU) and area-resized like :func:`prepare_image`."""
    hu = np.ascontiguousarray(grid.canonical.hu().transpose(2, 1, 0))
    return np.asarray(grid.canonical_to_model(hu, "area", pad_value=-1000.0), dtype=np.float16)


def prepare_case(
    case: Case,
    slice_size: int,
    window: str = "brain",
    cache_dir: Path | None = None,
    *,
    with_hu: bool = False,
) -> PreparedCase:
    """Load, window and resize one case (cached as ``.npz`` keyed by path, size and window);
    ``with_hu`` also keeps the HU image for domain randomisation."""
    key = hashlib.sha1(
        f"{case.image_path}|{case.mask_path}|{slice_size}|{window}".encode()
    ).hexdigest()[:12]
    suffix = "-hu" if with_hu else ""
    cache = None if cache_dir is None else Path(cache_dir) / f"{case.case_id}-{key}{suffix}.npz"
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            return PreparedCase(
                case.case_id,
                z["image"].astype(np.float32),
                z["mask"],
                tuple(float(s) for s in z["spacing"]),  # type: ignore[arg-type]
                z["hu"] if "hu" in z.files else None,
            )
    volume = case.load_image()
    image, grid = prepare_image(volume, slice_size, window)
    mask_vol = case.load_mask(volume)
    if mask_vol is None:
        raise EmptyMaskError(f"case {case.case_id} has no mask; training needs labelled cases")
    mask = prepare_mask(mask_vol, grid)
    # Stored as float16 in the cache: use the same precision now so a resumed run (reading the
    # cache) sees bit-identical inputs.
    image = image.astype(np.float16).astype(np.float32)
    hu = network_grid_hu(volume, grid) if with_hu else None
    prepared = PreparedCase(case.case_id, image, mask, grid.spacing_zyx, hu)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        # one temporary file per process: DDP ranks may prepare the same case at once
        tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npz")
        extra = {} if hu is None else {"hu": hu}
        np.savez_compressed(
            tmp,
            image=image.astype(np.float16),
            mask=mask,
            spacing=np.array(grid.spacing_zyx),
            **extra,
        )
        tmp.replace(cache)
    return prepared


@dataclass(frozen=True)
class SamplerConfig:
    """How training samples are drawn."""

    num_targets: int = 2  #: propagated target slices per sample (memory grows along them)
    max_distance: int = 3  #: K: largest distance between consecutive slices at the end
    curriculum_steps: int = 2000  #: steps over which the distance limit grows from 1 to K
    scribble_prob: float = 0.5  #: prompts from the scribble robot (else the paper's points)
    point_radius: float = 2.0  #: click radius in network pixels
    scribble_width: float = 2.0  #: stroke width in network pixels (1 px lines vanish)
    flip_prob: float = 0.5  #: left-right flip
    intensity_jitter: float = 0.05  #: multiplicative/additive jitter of the [0, 1] image
    #: previous-round mask modes and their probabilities (None: ``DEFAULT_PREVIOUS_MASK_PROBS``);
    #: e.g. ``{"zero": 0.3, "morphology": 0.15, "opening": 0.1, "z_shift": 0.15, "noisy": 0.3}``
    previous_mask_probs: dict[str, float] | None = None
    #: domain randomisation of the HU image before windowing (``None``: off; a dict of
    #: :class:`ichseg.data.domain.DomainRandomization` fields, ``{}`` for its defaults)
    domain_randomization: dict[str, Any] | None = None
    window: str = "brain"  #: window applied after domain randomisation

    def distance_limit(self, step: int) -> int:
        if self.curriculum_steps <= 0:
            return self.max_distance
        frac = min(1.0, step / self.curriculum_steps)
        return max(1, round(1 + frac * (self.max_distance - 1)))


def sample_rng(seed: int, step: int, rank: int = 0, stream: int = 0) -> np.random.Generator:
    """The RNG of one training step (independent of any global state)."""
    return np.random.default_rng(np.random.SeedSequence([seed, step, rank, stream]))


def choose_targets(r: int, depth: int, num: int, limit: int, rng: np.random.Generator) -> list[int]:
    """``num`` target slices walking away from ``r`` in one direction, steps of 1..limit."""
    room_up, room_down = depth - 1 - r, r
    if room_up == 0 and room_down == 0:
        return []
    if room_up == 0:
        direction = -1
    elif room_down == 0:
        direction = 1
    else:
        direction = 1 if rng.random() < 0.5 else -1
    out, cur = [], r
    for _ in range(num):
        nxt = cur + direction * int(rng.integers(1, limit + 1))
        nxt = min(max(nxt, 0), depth - 1)
        if nxt == cur:
            break
        out.append(nxt)
        cur = nxt
    return out


def randomized_image(
    hu: np.ndarray,
    mask: np.ndarray,
    spacing_zyx: Sequence[float],
    rng: np.random.Generator,
    randomization: Any,
    window: str,
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float], list[str]]:
    """One draw of :func:`ichseg.data.domain.randomize` on an HU volume, then the window:
    ``(float32 image in [0, 1], bool mask, spacing, names of the transforms applied)``."""
    from ichseg.data.domain import randomize

    hu, out_mask, spacing, applied = randomize(
        np.ascontiguousarray(hu, np.float32),
        np.asarray(mask).astype(np.uint8),
        tuple(float(v) for v in spacing_zyx),
        rng,
        randomization,
    )
    image = np.ascontiguousarray(apply_window(hu, window), np.float32)
    return image, np.asarray(out_mask).astype(bool), spacing, applied


def augment(
    case: PreparedCase, cfg: SamplerConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float], list[str]]:
    """Left-right flip, domain randomisation (HU, before the window) and intensity jitter of one
    case: ``(image in [0, 1], bool mask, spacing, names of the randomisations applied)``."""
    gt = case.mask.astype(bool)
    spacing = tuple(float(v) for v in case.spacing_zyx)
    applied: list[str] = []
    flip = rng.random() < cfg.flip_prob
    if cfg.domain_randomization is not None:
        if case.hu is None:
            raise EmptyMaskError(
                f"case {case.case_id} was prepared without HU; domain randomisation needs it"
            )
        from ichseg.data.domain import DomainRandomization

        hu = case.hu.astype(np.float32)
        if flip:
            hu, gt = hu[:, :, ::-1], gt[:, :, ::-1]
        image, gt, spacing, applied = randomized_image(
            hu, gt, spacing, rng, DomainRandomization(**cfg.domain_randomization), cfg.window
        )
    else:
        image = case.image.astype(np.float32)
        if flip:
            image, gt = image[:, :, ::-1], gt[:, :, ::-1]
    if cfg.intensity_jitter > 0:
        a = 1.0 + rng.uniform(-cfg.intensity_jitter, cfg.intensity_jitter)
        b = rng.uniform(-cfg.intensity_jitter, cfg.intensity_jitter)
        image = np.clip(image * a + b, 0.0, 1.0)
    return np.ascontiguousarray(image, np.float32), np.ascontiguousarray(gt), spacing, applied


def shifted_validation_cases(
    cases: Sequence[PreparedCase],
    randomization: dict[str, Any],
    seed: int,
    window: str = "brain",
) -> tuple[list[PreparedCase], dict[str, list[str]]]:
    """A fixed domain-shifted copy of every validation case: one draw of
    :func:`ichseg.data.domain.randomize` with ``randomization`` (fields of
    :class:`~ichseg.data.domain.DomainRandomization`) per case, from an RNG fixed by ``seed`` and
    the case's position, so every validation of a run (and of a resumed run) scores the same
    scans. Returns the cases (without HU) and, per case id, the transforms applied. Cases left
    without hemorrhage by the draw are dropped."""
    from ichseg.data.domain import DomainRandomization

    dr = DomainRandomization(**randomization)
    out: list[PreparedCase] = []
    applied: dict[str, list[str]] = {}
    for idx, case in enumerate(cases):
        if case.hu is None:
            raise EmptyMaskError(
                f"case {case.case_id} was prepared without HU; a shifted validation needs it"
            )
        rng = sample_rng(seed, 0, stream=10_000 + idx)
        image, mask, spacing, names = randomized_image(
            case.hu.astype(np.float32), case.mask, case.spacing_zyx, rng, dr, window
        )
        if not mask.any():
            continue
        out.append(PreparedCase(case.case_id, image, mask.astype(np.uint8), spacing))
        applied[case.case_id] = names
    return out, applied


def build_sample(
    case: PreparedCase, cfg: SamplerConfig, rng: np.random.Generator, step: int
) -> dict[str, object]:
    """One training sample as torch tensors with a batch axis of 1."""
    if case.positive_slices.size == 0:
        raise EmptyMaskError(f"case {case.case_id} has no hemorrhage to prompt")
    image, gt, spacing, applied = augment(case, cfg, rng)
    positive = np.flatnonzero(gt.reshape(gt.shape[0], -1).any(axis=1))
    if positive.size == 0:
        raise EmptyMaskError(f"case {case.case_id}: no hemorrhage left after augmentation")
    prev, prev_mode = synthesize_previous_mask(
        gt, rng, probs=cfg.previous_mask_probs, spacing_zyx=spacing
    )
    r = int(rng.choice(positive))
    use_scribble = rng.random() < cfg.scribble_prob
    prompts = simulate_training_prompts(
        gt,
        r,
        rng,
        mode="scribble" if use_scribble else "points",
        prev_zyx=prev if use_scribble else None,
        robot=TRAINING_ROBOT,
        radius_vox=cfg.point_radius,
    )
    if not prompts:  # the robot found no error (previous mask perfect on r): use points
        prompts = simulate_training_prompts(gt, r, rng, mode="points", radius_vox=cfg.point_radius)
    hints = rasterize_prompts(prompts, gt.shape, scribble_width=cfg.scribble_width)
    targets = choose_targets(r, gt.shape[0], cfg.num_targets, cfg.distance_limit(step), rng)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None]

    return {
        "volume": t(image)[None],
        "hints": t(hints),
        "prev_mask": t(prev)[None],
        "gt": t(gt)[None],
        "r_index": r,
        "k_indices": targets,
        "info": {
            "case_id": case.case_id,
            "prev_mode": prev_mode,
            "scribble": use_scribble,
            "domain": applied,
        },
    }


class SampleStream:
    """Deterministic stream of samples over a list of prepared training cases."""

    def __init__(
        self, cases: Sequence[PreparedCase], cfg: SamplerConfig, seed: int, rank: int = 0
    ) -> None:
        self.cases = [c for c in cases if c.positive_slices.size > 0]
        if not self.cases:
            raise EmptyMaskError("no training case contains hemorrhage")
        self.cfg, self.seed, self.rank = cfg, seed, rank

    def __call__(self, step: int) -> dict[str, object]:
        rng = sample_rng(self.seed, step, self.rank)
        case = self.cases[int(rng.integers(len(self.cases)))]
        return build_sample(case, self.cfg, rng, step)
