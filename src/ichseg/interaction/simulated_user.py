"""A simulated clinician for evaluation: decides which slice to correct and draws prompts there.

Protocol (reference notes §3, §8 row 25, §11 item 7), one slice per round:

* **Round 1** uses a start slice: ``start="largest"`` takes the GT slice with the largest
  hemorrhage area; ``start="random_band"`` takes a random GT-positive slice whose rank in the
  sorted list of ``n`` positive slices lies in ``[band[0] n, band[1] n)`` (default 10-90 %, as in
  the reference code; the middle positive slice if the band is empty). The rule used, the band and
  the candidates are reported in ``info``. If the prediction is already correct on the start slice
  (e.g. an initial automatic mask), the worst slice is used instead.
* **Later rounds** use the slice with the most wrong voxels (``pred != gt``, all slices are
  candidates; ties go to the lowest index).
* **Prompts**: ``mode="scribble"`` runs the :class:`ScribbleRobot` on that slice (positive strokes
  on false negatives, negative strokes on false positives). ``mode="click"`` places
  ``clicks_per_round`` clicks: each at the pixel deepest inside (distance-transform maximum) the
  largest remaining 8-connected error component, positive on a false negative, negative on a false
  positive (false negatives win ties); the disc inscribed at that pixel is then considered handled
  so the next click goes elsewhere.
* **Stopping**: if the prediction equals the GT everywhere, the turn has no prompts and
  ``stop=True``. With an empty GT (no hemorrhage) there are no positive prompts: any false positive
  is corrected with negative prompts on the worst slice, and an empty prediction stops at once.

The clinician looks at the GT only to decide what a human would correct, never crops the scan
around it, and is deterministic for a given ``seed`` (``reset()`` restarts the sequence).
Predictions may be probabilities; they are binarised with ``> threshold``.

:class:`Cvpr25Clinician` is the user of the CVPR 2025 interactive 3D segmentation challenge
protocol instead (:mod:`ichseg.evaluation.cvpr25` describes it and its deviations): round 1
gives the tight 2D :class:`~ichseg.interaction.prompts.Box` of the GT on its largest-area slice
(optional) plus one click, every later round one click, each from
:func:`largest_error_click`: the 3D 26-connected components of the error ``FN | FP`` of the
current prediction, the largest (most voxels) of them, and in it the voxel farthest (Euclidean
distance in mm, with the voxel spacing) from the component's outside; the click is positive if
that voxel is a false negative, negative if it is a false positive. No randomness is involved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import ndimage as ndi

from ichseg.errors import ConfigError, DimensionalityError, PromptError
from ichseg.interaction.hints import draw_disc
from ichseg.interaction.prompts import Box, Click, Click2D, InteractionRound, Prompt, Prompt2D
from ichseg.interaction.scribble_robot import ScribbleRobot, binarize, error_regions

_EIGHT = np.ones((3, 3), dtype=bool)
_TWENTY_SIX = np.ones((3, 3, 3), dtype=bool)


def _pair(pred_zyx: np.ndarray, gt_zyx: np.ndarray, threshold: float) -> tuple[np.ndarray, ...]:
    gt = binarize(gt_zyx, "ground truth")
    pred = binarize(pred_zyx, "prediction", threshold)
    if gt.ndim != 3 or pred.ndim != 3:
        raise DimensionalityError(
            f"prediction and GT must be (Z, Y, X) volumes, got {pred.shape} and {gt.shape}"
        )
    if pred.shape != gt.shape:
        raise PromptError(f"prediction shape {pred.shape} does not match GT shape {gt.shape}")
    return pred, gt


def positive_slices(gt_zyx: np.ndarray) -> np.ndarray:
    """Sorted indices of slices containing hemorrhage."""
    gt = np.asarray(gt_zyx).astype(bool)
    return np.flatnonzero(gt.reshape(gt.shape[0], -1).any(axis=1))


def band_slices(gt_zyx: np.ndarray, band: tuple[float, float] = (0.1, 0.9)) -> np.ndarray:
    """Positive slices whose rank ``r`` in the sorted list of ``n`` satisfies ``lo n <= r < hi n``.

    Falls back to the middle positive slice (rank ``n // 2``) when the band holds none; empty if
    the GT is empty.
    """
    lo, hi = float(band[0]), float(band[1])
    if not 0.0 <= lo < hi <= 1.0:
        raise ConfigError(f"band must satisfy 0 <= lo < hi <= 1, got {band}")
    pos = positive_slices(gt_zyx)
    n = pos.size
    if n == 0:
        return pos
    ranks = np.arange(n)
    sel = pos[(ranks >= lo * n) & (ranks < hi * n)]
    return sel if sel.size else pos[n // 2 : n // 2 + 1]


def largest_area_slice(gt_zyx: np.ndarray) -> int:
    """Index of the slice with the largest hemorrhage area (lowest index on ties)."""
    gt = np.asarray(gt_zyx).astype(bool)
    areas = gt.reshape(gt.shape[0], -1).sum(axis=1)
    if areas.max(initial=0) == 0:
        raise PromptError("GT is empty: there is no largest hemorrhage slice")
    return int(np.argmax(areas))


def wrong_per_slice(pred_zyx: np.ndarray, gt_zyx: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Number of wrong voxels (``pred != gt``) on every slice."""
    pred, gt = _pair(pred_zyx, gt_zyx, threshold)
    return (pred != gt).reshape(gt.shape[0], -1).sum(axis=1)


def worst_slice(pred_zyx: np.ndarray, gt_zyx: np.ndarray, threshold: float = 0.5) -> int:
    """The slice with the most wrong voxels (lowest index on ties)."""
    return int(np.argmax(wrong_per_slice(pred_zyx, gt_zyx, threshold)))


def error_clicks(
    pred2d: np.ndarray, gt2d: np.ndarray, n: int = 1, radius_vox: float = 2.0
) -> list[Click2D]:
    """Up to ``n`` corrective clicks on one slice (see the module docstring for the rule)."""
    fn, fp = error_regions(pred2d, gt2d)
    remaining = {True: fn.copy(), False: fp.copy()}
    clicks: list[Click2D] = []
    for _ in range(n):
        best: tuple[int, np.ndarray, bool] | None = None
        for positive in (True, False):
            labels, k = ndi.label(remaining[positive], structure=_EIGHT)
            if k == 0:
                continue
            sizes = np.bincount(labels.ravel())[1:]
            j = int(np.argmax(sizes))
            if best is None or sizes[j] > best[0]:
                best = (int(sizes[j]), labels == j + 1, positive)
        if best is None:
            break
        _, comp, positive = best
        dist = ndi.distance_transform_edt(np.pad(comp, 1))[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
        clicks.append(Click2D(int(y), int(x), positive, radius_vox))
        handled = np.zeros_like(comp)
        draw_disc(handled, float(y), float(x), max(float(dist[y, x]), radius_vox, 1.0))
        for key in remaining:
            remaining[key] &= ~handled
    return clicks


@dataclass(frozen=True)
class ClinicianTurn:
    """What the clinician did in one round: prompts (voxel indices), info, and whether to stop."""

    prompts: tuple[Prompt, ...]
    info: dict[str, Any] = field(default_factory=dict)
    stop: bool = False

    def as_round(self, index: int | None = None) -> InteractionRound:
        """An :class:`InteractionRound` (``index`` defaults to ``info['round'] - 1``)."""
        i = int(self.info.get("round", 1)) - 1 if index is None else index
        return InteractionRound(i, self.prompts, self.info)


class SimulatedClinician:
    """Deterministic simulated user producing one slice of corrective prompts per round."""

    def __init__(
        self,
        mode: Literal["scribble", "click"] = "scribble",
        start: Literal["largest", "random_band"] = "largest",
        band: tuple[float, float] = (0.1, 0.9),
        seed: int = 0,
        clicks_per_round: int = 1,
        robot: ScribbleRobot | None = None,
        click_radius: float = 2.0,
        threshold: float = 0.5,
    ) -> None:
        if mode not in ("scribble", "click"):
            raise ConfigError(f"clinician mode must be 'scribble' or 'click', got {mode!r}")
        if start not in ("largest", "random_band"):
            raise ConfigError(f"start must be 'largest' or 'random_band', got {start!r}")
        if clicks_per_round < 1:
            raise ConfigError(f"clicks_per_round must be >= 1, got {clicks_per_round}")
        if not (np.isfinite(click_radius) and click_radius >= 0):
            raise ConfigError(f"click_radius must be >= 0, got {click_radius}")
        band_slices(np.zeros((1, 1, 1), dtype=bool), band)  # validates the band
        self.mode = mode
        self.start = start
        self.band = (float(band[0]), float(band[1]))
        self.seed = int(seed)
        self.clicks_per_round = int(clicks_per_round)
        self.robot = robot if robot is not None else ScribbleRobot()
        self.click_radius = float(click_radius)
        self.threshold = float(threshold)
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Start a new case (round 1 next); optionally with a new seed."""
        if seed is not None:
            self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)
        self._round = 0

    @property
    def rounds_done(self) -> int:
        return self._round

    def _start_slice(self, gt: np.ndarray, info: dict[str, Any]) -> int:
        if self.start == "largest":
            z = largest_area_slice(gt)
            info.update(reason="start_largest", start_rule="largest")
            return z
        cand = band_slices(gt, self.band)
        z = int(self._rng.choice(cand))
        pos = positive_slices(gt)
        info.update(
            reason="start_random_band",
            start_rule="random_band",
            band=list(self.band),
            band_candidates=[int(c) for c in cand],
            start_rank=int(np.searchsorted(pos, z)),
            n_positive_slices=int(pos.size),
        )
        return z

    def _prompts_on(self, pred2d: np.ndarray, gt2d: np.ndarray, z: int) -> list[Prompt]:
        p2d: list[Prompt2D]
        if self.mode == "scribble":
            p2d = list(self.robot.strokes(pred2d, gt2d, self._rng))
            if not p2d:  # only possible with dot_fallback=False: a human would still click
                p2d = list(error_clicks(pred2d, gt2d, 1, self.click_radius))
        else:
            p2d = list(error_clicks(pred2d, gt2d, self.clicks_per_round, self.click_radius))
        return [p.on_slice(z) for p in p2d]

    def step(self, pred_zyx: np.ndarray, gt_zyx: np.ndarray) -> ClinicianTurn:
        """Look at the current prediction and give the next round of prompts."""
        pred, gt = _pair(pred_zyx, gt_zyx, self.threshold)
        self._round += 1
        wrong = (pred != gt).reshape(gt.shape[0], -1).sum(axis=1)
        fn_total = int((gt & ~pred).sum())
        fp_total = int((pred & ~gt).sum())
        info: dict[str, Any] = {
            "round": self._round,
            "mode": self.mode,
            "seed": self.seed,
            "wrong_total": int(wrong.sum()),
            "fn_total": fn_total,
            "fp_total": fp_total,
        }
        if wrong.sum() == 0:
            info.update(slice=None, reason="prediction_correct", n_prompts=0)
            return ClinicianTurn((), info, stop=True)
        if self._round == 1 and gt.any():
            z = self._start_slice(gt, info)
            if wrong[z] == 0:
                z = int(np.argmax(wrong))
                info["reason"] = "start_slice_correct_used_worst"
        else:
            z = int(np.argmax(wrong))
            info["reason"] = "worst_slice" if gt.any() else "gt_empty_false_positives"
        prompts = self._prompts_on(pred[z], gt[z], z)
        info.update(
            slice=z,
            wrong_on_slice=int(wrong[z]),
            fn_on_slice=int((gt[z] & ~pred[z]).sum()),
            fp_on_slice=int((pred[z] & ~gt[z]).sum()),
            n_prompts=len(prompts),
            n_positive=sum(p.positive for p in prompts),
            n_negative=sum(not p.positive for p in prompts),
        )
        return ClinicianTurn(tuple(prompts), info, stop=False)


# ---------------------------------------------------------------------- CVPR 2025 protocol user
@dataclass(frozen=True)
class ErrorClick:
    """A click of :func:`largest_error_click` and why it was placed there."""

    click: Click
    component_voxels: int  #: size of the chosen error component
    distance_mm: float  #: distance of the click voxel to the component's outside
    n_components: int  #: number of 3D error components


def _spacing3(spacing_zyx: Any) -> tuple[float, float, float]:
    try:
        sp = tuple(float(v) for v in spacing_zyx)
    except TypeError:
        raise ConfigError(f"spacing_zyx must be 3 numbers, got {spacing_zyx!r}") from None
    if len(sp) != 3 or not all(np.isfinite(v) and v > 0 for v in sp):
        raise ConfigError(f"spacing_zyx must be 3 positive numbers, got {spacing_zyx!r}")
    return sp  # type: ignore[return-value]


def largest_error_click(
    pred_zyx: np.ndarray,
    gt_zyx: np.ndarray,
    spacing_zyx: Any = (1.0, 1.0, 1.0),
    *,
    radius_vox: float = 2.0,
    threshold: float = 0.5,
) -> ErrorClick | None:
    """The CVPR 2025 challenge's corrective click on a ``(Z, Y, X)`` prediction (``None`` if it
    equals the GT).

    The error ``pred != gt`` is split into 26-connected 3D components; the largest (ties: the
    one whose first voxel comes first in C order) is taken, and in it the voxel with the largest
    Euclidean distance, in mm with ``spacing_zyx``, to the nearest voxel outside the component
    (the scan's border counts as outside; ties: first in C order). The click sits at that voxel
    (a disc of ``radius_vox`` px on its slice), positive if the voxel is a false negative and
    negative if it is a false positive.
    """
    pred, gt = _pair(pred_zyx, gt_zyx, threshold)
    sp = _spacing3(spacing_zyx)
    error = pred != gt
    labels, n = ndi.label(error, structure=_TWENTY_SIX)
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    k = int(np.argmax(sizes)) + 1
    box = ndi.find_objects(labels, max_label=k)[k - 1]
    comp = labels[box] == k
    dist = ndi.distance_transform_edt(np.pad(comp, 1), sampling=sp)[1:-1, 1:-1, 1:-1]
    dist[~comp] = -1.0
    local = np.unravel_index(int(np.argmax(dist)), dist.shape)
    z, y, x = (int(i + b.start) for i, b in zip(local, box, strict=True))
    positive = bool(gt[z, y, x])
    return ErrorClick(
        Click(z, float(y), float(x), positive, radius_vox),
        int(sizes[k - 1]),
        float(dist[local]),
        int(n),
    )


def largest_slice_box(gt_zyx: np.ndarray, ring_vox: int = 2) -> Box:
    """The tight 2D box of the GT on its largest-area slice (lowest index on ties)."""
    gt = np.asarray(gt_zyx).astype(bool)
    if gt.ndim != 3:
        raise DimensionalityError(f"GT must be a (Z, Y, X) volume, got shape {gt.shape}")
    z = largest_area_slice(gt)
    return Box.around(gt[z], z, ring_vox)


class Cvpr25Clinician:
    """The simulated user of the CVPR 2025 challenge protocol (see the module docstring).

    ``spacing_zyx`` is the voxel size (mm) of the canonical grid the predictions come on;
    ``box``: give the largest-slice GT box with the first click; the runner decides how many
    rounds (clicks) there are. Stops (``stop=True``, no prompts) when the prediction is exact.
    """

    mode = "cvpr25"

    def __init__(
        self,
        spacing_zyx: Any,
        *,
        box: bool = True,
        click_radius: float = 2.0,
        ring_vox: int = 2,
        threshold: float = 0.5,
    ) -> None:
        self.spacing_zyx = _spacing3(spacing_zyx)
        if not (np.isfinite(click_radius) and click_radius >= 0):
            raise ConfigError(f"click_radius must be >= 0, got {click_radius}")
        Box(0, -0.5, -0.5, 0.5, 0.5, ring_vox)  # validates ring_vox
        self.box = bool(box)
        self.click_radius = float(click_radius)
        self.ring_vox = int(ring_vox)
        self.threshold = float(threshold)
        self.reset()

    def reset(self) -> None:
        """Start a new case (round 1 next)."""
        self._round = 0

    @property
    def rounds_done(self) -> int:
        return self._round

    def step(self, pred_zyx: np.ndarray, gt_zyx: np.ndarray) -> ClinicianTurn:
        """The next round's prompts: (round 1: the box and) one click at the largest error."""
        pred, gt = _pair(pred_zyx, gt_zyx, self.threshold)
        self._round += 1
        info: dict[str, Any] = {
            "round": self._round,
            "mode": self.mode,
            "wrong_total": int((pred != gt).sum()),
            "fn_total": int((gt & ~pred).sum()),
            "fp_total": int((pred & ~gt).sum()),
            "box": False,
        }
        found = largest_error_click(
            pred, gt, self.spacing_zyx, radius_vox=self.click_radius, threshold=0.5
        )
        if found is None:
            info.update(slice=None, reason="prediction_correct", n_prompts=0)
            return ClinicianTurn((), info, stop=True)
        click = found.click
        prompts: list[Prompt] = [click]
        if self._round == 1 and self.box and gt.any():
            box = largest_slice_box(gt, self.ring_vox)
            prompts.insert(0, box)
            info.update(box=True, box_slice=box.z, box_corners=[[box.y0, box.x0], [box.y1, box.x1]])
        info.update(
            slice=click.z,
            click_y=click.y,
            click_x=click.x,
            reason="largest_error_fn" if click.positive else "largest_error_fp",
            error_voxels=found.component_voxels,
            error_components=found.n_components,
            click_distance_mm=found.distance_mm,
            n_prompts=len(prompts),
            n_positive=int(click.positive),
            n_negative=int(not click.positive),
        )
        return ClinicianTurn(tuple(prompts), info, stop=False)
