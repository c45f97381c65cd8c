"""Training-time prompt simulation.

Two simulators (reference notes §8 row 1, §11 item 2):

* ``points`` (the paper): on a hemorrhage slice, ``n`` random foreground clicks, ``n`` drawn
  uniformly from ``[3, 7]``, and as many background clicks (:func:`sample_points_2d`);
* ``scribble`` (the authors' code): the scribble robot on the (previous mask, GT) errors of the
  slice (:class:`~ichseg.interaction.scribble_robot.ScribbleRobot`, kernel 0.12 for training).

Both are deterministic given a :class:`numpy.random.Generator`. :func:`simulate_training_prompts`
always puts the prompts on the requested slice, so a trainer can put them on its reference slice
``S_r`` (fixing the reference code's bug where the 2D branch usually saw no prompt, §8 row 10).

Where the points go
-------------------
* Foreground clicks are drawn without replacement from the GT pixels at least ``radius_vox``
  from the lesion border (so the click disc stays inside the hemorrhage); if the lesion is too thin
  for that, from all GT pixels.
* Background clicks are drawn from outside the GT, more than ``radius_vox + 1`` px from it
  (so the disc does not touch the lesion). Each one comes, with probability ``band_fraction``
  (default 0.5), from a **band** reaching ``band_px`` pixels beyond that gap (the perilesional
  tissue a user marks to stop leakage), otherwise from the whole **region** — the ``region`` mask
  if given (e.g. a brain mask such as ``(hu > 0) & (hu < 100)`` after hole filling), else the
  whole slice (which then includes air: pass a region when the image is available). Empty pools
  fall back to the other pool; if the lesion leaves no background at all, no background clicks
  are returned.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage as ndi

from ichseg.errors import ConfigError, DimensionalityError, EmptyMaskError, PromptError
from ichseg.interaction.prompts import Click2D, Prompt
from ichseg.interaction.scribble_robot import ScribbleRobot, binarize
from ichseg.interaction.simulated_user import band_slices

#: Robot settings of the reference training sampler (kernel 0.12 instead of 0.15 at test).
TRAINING_ROBOT = ScribbleRobot(kernel_size=0.12)


def _check_2d(mask: np.ndarray, what: str) -> np.ndarray:
    m = binarize(mask, what)
    if m.ndim != 2:
        raise DimensionalityError(f"{what} must be a 2D slice, got shape {m.shape}")
    return m


def _pick(pool: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` flat indices drawn without replacement (fewer if the pool is smaller)."""
    k = min(k, pool.size)
    if k <= 0:
        return np.empty(0, dtype=np.intp)
    return np.sort(rng.choice(pool, size=k, replace=False))


def sample_points_2d(
    gt2d: np.ndarray,
    rng: np.random.Generator,
    *,
    n_range: tuple[int, int] = (3, 7),
    radius_vox: float = 2.0,
    band_px: float = 20.0,
    band_fraction: float = 0.5,
    region: np.ndarray | None = None,
) -> list[Click2D]:
    """The paper's random clicks for one hemorrhage slice: ``n`` positive, then ``n`` negative.

    ``n`` is uniform in ``n_range`` (inclusive). Raises :class:`EmptyMaskError` if the slice has
    no hemorrhage. See the module docstring for where points are placed.
    """
    gt = _check_2d(gt2d, "GT slice")
    lo, hi = (int(v) for v in n_range)
    if not 1 <= lo <= hi:
        raise ConfigError(f"n_range must satisfy 1 <= lo <= hi, got {n_range}")
    if not (np.isfinite(radius_vox) and radius_vox >= 0):
        raise ConfigError(f"radius_vox must be >= 0, got {radius_vox}")
    if not 0.0 <= band_fraction <= 1.0 or not band_px > 0:
        raise ConfigError("band_fraction must be in [0, 1] and band_px > 0")
    if not gt.any():
        raise EmptyMaskError("cannot sample foreground points on a slice without hemorrhage")
    if region is not None:
        region = _check_2d(region, "region mask")
        if region.shape != gt.shape:
            raise PromptError(f"region shape {region.shape} does not match GT {gt.shape}")

    n = int(rng.integers(lo, hi + 1))
    inside = ndi.distance_transform_edt(np.pad(gt, 1))[1:-1, 1:-1]
    fg_pool = np.flatnonzero(inside > radius_vox)
    if fg_pool.size == 0:
        fg_pool = np.flatnonzero(gt)
    outside = ndi.distance_transform_edt(~gt)
    bg = outside > radius_vox + 1.0
    band_pool = np.flatnonzero(bg & (outside <= band_px + radius_vox + 1.0))
    wide = bg if region is None else bg & region
    wide_pool = np.flatnonzero(wide)
    if wide_pool.size == 0:
        wide_pool = np.flatnonzero(bg)

    nx = gt.shape[1]
    clicks = [Click2D(*divmod(int(i), nx), True, radius_vox) for i in _pick(fg_pool, n, rng)]
    n_band = int(rng.binomial(n, band_fraction))
    if band_pool.size == 0:
        n_band = 0
    if wide_pool.size == 0:
        n_band = n
    band = _pick(band_pool, n_band, rng)
    rest_pool = np.setdiff1d(wide_pool, band, assume_unique=True)
    if rest_pool.size == 0:
        rest_pool = np.setdiff1d(band_pool, band, assume_unique=True)
    rest = _pick(rest_pool, n - band.size, rng)
    for i in np.concatenate([band, rest]):
        clicks.append(Click2D(*divmod(int(i), nx), False, radius_vox))
    return clicks


def choose_prompt_slice(
    gt_zyx: np.ndarray,
    rng: np.random.Generator,
    prev_zyx: np.ndarray | None = None,
    band: tuple[float, float] = (0.2, 0.8),
) -> int:
    """The reference rule for the training prompt slice.

    With no (or an all-zero) previous mask: uniform among the GT-positive slices whose rank in the
    sorted positive-slice list lies in ``[band[0] n, band[1] n)`` (the middle slice if that is
    empty). Otherwise uniform among slices where the previous mask is positive.
    """
    gt = binarize(gt_zyx, "GT")
    if gt.ndim != 3:
        raise DimensionalityError(f"GT must be (Z, Y, X), got shape {gt.shape}")
    if prev_zyx is not None:
        prev = binarize(prev_zyx, "previous mask")
        if prev.shape != gt.shape:
            raise PromptError(f"previous mask shape {prev.shape} does not match GT {gt.shape}")
        pos = np.flatnonzero(prev.reshape(prev.shape[0], -1).any(axis=1))
        if pos.size:
            return int(rng.choice(pos))
    cand = band_slices(gt, band)
    if cand.size == 0:
        raise EmptyMaskError("GT has no hemorrhage slice to put a training prompt on")
    return int(rng.choice(cand))


def simulate_training_prompts(
    gt_zyx: np.ndarray,
    z: int,
    rng: np.random.Generator,
    *,
    mode: Literal["points", "scribble"] = "points",
    prev_zyx: np.ndarray | None = None,
    robot: ScribbleRobot = TRAINING_ROBOT,
    n_range: tuple[int, int] = (3, 7),
    radius_vox: float = 2.0,
    band_px: float = 20.0,
    band_fraction: float = 0.5,
    region_zyx: np.ndarray | None = None,
) -> list[Prompt]:
    """Training prompts on slice ``z`` of a ``(Z, Y, X)`` GT, as 3D :class:`Click`/``Scribble``.

    ``points``: :func:`sample_points_2d` (needs hemorrhage on slice ``z``; an empty slice gives
    no prompts). ``scribble``: the robot on ``(prev_zyx[z] > 0.5, gt[z])`` (``prev_zyx`` ``None``
    means an all-zero previous mask, so only positive strokes).
    """
    gt = binarize(gt_zyx, "GT")
    if gt.ndim != 3:
        raise DimensionalityError(f"GT must be (Z, Y, X), got shape {gt.shape}")
    if not 0 <= int(z) < gt.shape[0]:
        raise PromptError(f"slice z={z} is outside the volume (0..{gt.shape[0] - 1})")
    z = int(z)
    if mode == "points":
        if not gt[z].any():
            return []
        region = None if region_zyx is None else np.asarray(region_zyx)[z]
        pts = sample_points_2d(
            gt[z],
            rng,
            n_range=n_range,
            radius_vox=radius_vox,
            band_px=band_px,
            band_fraction=band_fraction,
            region=region,
        )
        return [p.on_slice(z) for p in pts]
    if mode == "scribble":
        if prev_zyx is None:
            prev2d = np.zeros(gt.shape[1:], dtype=bool)
        else:
            prev = binarize(prev_zyx, "previous mask")
            if prev.shape != gt.shape:
                raise PromptError(f"previous mask shape {prev.shape} does not match {gt.shape}")
            prev2d = prev[z]
        return [s.on_slice(z) for s in robot.strokes(prev2d, gt[z], rng)]
    raise ConfigError(f"unknown training prompt mode {mode!r} (use 'points' or 'scribble')")
