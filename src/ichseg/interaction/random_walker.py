"""Random-walker interactive baseline ("grow from seeds"), an engine for the one session.

:class:`RandomWalkerEngine` is the classical, training-free baseline that 3D Slicer users reach
for: the accumulated clicks/scribbles are the seeds (label 1 = hemorrhage, 2 = background) of a
random walker (Grady 2006, with ``skimage.segmentation.random_walker``'s edge weights) run on the
brain-windowed CT. It implements the :class:`~ichseg.interaction.engine.Engine` protocol; the
:class:`~ichseg.interaction.session.InteractiveSession` around it owns geometry, history, undo
and logs. Prompts are ``(z, y, x)`` voxel indices of the canonical ``(Z, Y, X)`` grid.

One round, with all prompts so far (they accumulate across rounds; a later prompt wins where two
prompts of opposite label overlap):

1. **Region of interest from the prompts only** (the ground truth is never seen): the bounding box
   of every positive prompt pixel, grown by ``margin_mm`` in-plane and ``z_margin_mm`` along z
   (rounded to whole slices: 3 slices at the 4.8-6 mm of typical head CT, 16 at 1 mm, 2 at
   10 mm; ``z_margin`` gives a fixed slice count instead), clipped to the scan. No positive
   prompt at all -> the result is empty. Negative prompts outside the ROI are irrelevant and
   ignored. (Session 11 measured the physical margin against the former 3 slices on the
   robustness scans: round-8 Dice unchanged on 1 / 2.5 / 10 mm slices, round 1 mixed;
   ``benchmarks/results/robustness/``.)
2. **Seeds** in the ROI: the user's prompt pixels, and the ROI's in-plane border (on every slice
   of the box) as background. When intensities are known in HU, voxels outside the plausible
   blood/brain range ``hu_range`` (default ``< 0 HU``: air, fat; ``> 120 HU``: bone,
   calcification; fresh blood is ~50-100 HU) are removed from the graph
   (``out_of_range="inactive"``, the default) or seeded as background (``"background"``), and
   get probability 0. *Inactive* is the default because on the brain window blood next to the
   skull (EDH/SDH) looks like bone (both saturate near 1): seeded bone then drags the adjacent
   blood to background (see *Defaults* below). If no in-range border voxel is
   left (a ROI spanning the whole head), the out-of-range voxels become background seeds after
   all. For inputs stored already windowed (e.g. PhysioNet 0..255 with the 40/80 brain window) a
   voxel clipped at the window's low end counts as below ``hu_range`` when the window's low edge
   is at or below it (likewise at the high end); with an unknown window the HU rule is skipped.
   On a slice with a :class:`~ichseg.interaction.prompts.Box`, every ROI pixel outside the
   box(es) of that slice is a background seed too and gets probability 0 (the box bounds the
   result there; this includes the box's background ring). User prompts override the automatic
   seeds.
3. **Random walker** on the ROI, block-averaged in-plane by ``downsample`` (a block is
   out of range only if all its voxels are; a block touched by the user takes the majority label
   of its prompt pixels). ``solver="cg"`` (default) solves the Dirichlet problem with
   Jacobi-preconditioned conjugate gradients and edge weights floored at ``min_weight``
   (:func:`random_walk_probability`); ``solver="skimage"`` calls
   ``skimage.segmentation.random_walker(mode=mode, return_full_prob=True)`` instead (no pyamg
   needed for ``cg``/``cg_j``/``bf``). skimage adds only 1e-10 to its weights: with bone and air
   removed from the graph its ``cg_j`` then often fails to converge (minutes per round) and its
   direct ``bf`` solve returns NaN on numerically singular systems, hence the ichseg solver.
   ``use_spacing`` passes the ROI voxel size (divided by its smallest entry) as ``spacing``;
   skimage's weights divide intensity differences by it, which makes the jump between 5 mm slices
   look ~30x smaller and lets blood leak along z, so it is off by default; all neighbours then
   count alike.
4. **Back to full resolution**: the hemorrhage probability is upsampled in-plane (linear, pixel
   centres aligned), out-of-range voxels are set to 0 and prompt pixels to their label, and the
   ROI is pasted into an all-zero canonical volume (the session maps it to the original grid and
   thresholds it; 0.5 = random-walker argmax).

**Starting from an existing mask** (round 0 of a session, e.g. an automatic model's result:
:meth:`RandomWalkerEngine.start_state`, called by
:meth:`~ichseg.interaction.session.InteractiveSession.start_from_mask`): the mask is kept
where the user did not correct it. The ROI is the bounding box of *every* prompt pixel (positive
or negative) grown by ``previous_radius_mm`` in all three directions (real spacing); in it the
voxels within ``previous_radius_mm`` (3D Euclidean, mm) of a prompt pixel are unknowns, every
other voxel (and the ROI's border) is a seed with the initial mask's label; boxes, out-of-range
voxels and the user's prompts are handled as above. The random walker decides the unknowns and
everything outside them keeps the initial mask exactly, so a correction changes the mask only
near the strokes (the previous round's probability is not used otherwise: each round starts from
the initial mask and all prompts so far, which keeps undo and replay exact).

Defaults were chosen on synthetic phantoms (:mod:`ichseg.data.synthetic`, seed 123, cases 0-5,
512x512x32, ~0.47x0.47x5.4 mm), scribble clinician, mean Dice after rounds 1 / 6: ``beta=600``
0.865 / 0.935; ``beta=130`` (skimage's default) 0.461 / 0.933; ``beta=300`` 0.732 / 0.929;
``beta=1200`` 0.865 / 0.933; with ``beta=130``: ``use_spacing=True`` 0.320 / 0.709,
``out_of_range="background"`` 0.209 / 0.884. Checked on seed 321 (cases 0-5, 8 rounds):
``beta=600`` 0.591 / 0.918 (rounds 1 / 8), ``beta=130`` 0.455 / 0.914; ``tol=1e-3`` gave the
same Dice as ``1e-4`` three times faster.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ichseg.errors import ConfigError, PromptError
from ichseg.interaction.engine import EngineOutput
from ichseg.interaction.hints import HINT_NEGATIVE, HINT_POSITIVE, box_inside, rasterize_slice
from ichseg.interaction.prompts import Box, Prompt
from ichseg.io.volume import IntensityKind, Volume
from ichseg.preprocess.windowing import parse_window, window_volume

POSITIVE_SEED = 1  #: random-walker label of hemorrhage seeds
BACKGROUND_SEED = 2  #: random-walker label of background seeds
INACTIVE = -1  #: random-walker label of voxels removed from the graph
_MODES = ("cg", "cg_j", "cg_mg", "bf")


@dataclass(frozen=True)
class RandomWalkerConfig:
    """Settings of the random-walker baseline (see the module docstring)."""

    beta: float = 600.0  #: edge-weight sharpness (skimage's default is 130; see module docstring)
    margin_mm: float = 30.0  #: in-plane growth of the positive-prompt bounding box
    #: growth of the positive-prompt bounding box above and below it, in mm (rounded to slices)
    z_margin_mm: float = 16.0
    z_margin: int | None = None  #: a fixed number of slices instead of ``z_margin_mm``
    downsample: int = 2  #: in-plane block-averaging factor of the ROI (1 = full resolution)
    window: str = "brain"  #: HU window mapped to [0, 1] before the random walker
    hu_range: tuple[float, float] | None = (0.0, 120.0)  #: plausible blood/brain HU (None: off)
    out_of_range: str = "inactive"  #: voxels outside hu_range: 'inactive' or 'background' seeds
    use_spacing: bool = False  #: scale intensity differences by the (normalised) voxel size
    solver: str = "cg"  #: 'cg' (Jacobi CG), 'direct' (sparse LU) or 'skimage'
    min_weight: float = 1e-6  #: edge-weight floor of the ichseg solvers (conditioning)
    mode: str = "cg_j"  #: skimage's mode when solver='skimage' ('cg_mg' needs pyamg)
    tol: float = 1e-3  #: conjugate-gradient relative tolerance
    assume_stored_window_ok: bool = False  #: accept already-windowed input with unknown window
    #: starting from an initial mask: voxels within this many mm of a prompt are re-decided,
    #: all others keep the initial mask (see the module docstring)
    previous_radius_mm: float = 15.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.beta) and self.beta > 0):
            raise ConfigError(f"beta must be a positive number, got {self.beta}")
        if not (math.isfinite(self.margin_mm) and self.margin_mm >= 0):
            raise ConfigError(f"margin_mm must be >= 0, got {self.margin_mm}")
        if self.z_margin is not None and (int(self.z_margin) != self.z_margin or self.z_margin < 0):
            raise ConfigError(f"z_margin must be an integer >= 0, got {self.z_margin}")
        if not (math.isfinite(self.z_margin_mm) and self.z_margin_mm >= 0):
            raise ConfigError(f"z_margin_mm must be >= 0, got {self.z_margin_mm}")
        if int(self.downsample) != self.downsample or self.downsample < 1:
            raise ConfigError(f"downsample must be an integer >= 1, got {self.downsample}")
        if self.out_of_range not in ("inactive", "background"):
            raise ConfigError(
                f"out_of_range must be 'inactive' or 'background', got {self.out_of_range!r}"
            )
        if self.solver not in ("direct", "cg", "skimage"):
            raise ConfigError(f"solver must be 'direct', 'cg' or 'skimage', got {self.solver!r}")
        if not (math.isfinite(self.min_weight) and 0 < self.min_weight < 1):
            raise ConfigError(f"min_weight must lie in (0, 1), got {self.min_weight}")
        if self.mode not in _MODES:
            raise ConfigError(f"mode must be one of {', '.join(_MODES)}, got {self.mode!r}")
        if not (math.isfinite(self.previous_radius_mm) and self.previous_radius_mm > 0):
            raise ConfigError(f"previous_radius_mm must be > 0, got {self.previous_radius_mm}")
        if not (math.isfinite(self.tol) and self.tol > 0):
            raise ConfigError(f"tol must be > 0, got {self.tol}")
        if self.hu_range is not None:
            lo, hi = (float(v) for v in self.hu_range)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ConfigError(f"hu_range must be (lo, hi) with lo < hi, got {self.hu_range}")
            object.__setattr__(self, "hu_range", (lo, hi))
        parse_window(self.window)  # raises IntensityError for an unknown window
        if self.z_margin is not None:
            object.__setattr__(self, "z_margin", int(self.z_margin))
        object.__setattr__(self, "downsample", int(self.downsample))


@dataclass
class RandomWalkerState:
    """Engine state of a session that started from an existing mask (:meth:`start_state`)."""

    initial: np.ndarray  #: canonical (Z, Y, X) bool initial mask
    roi: tuple[slice, slice, slice] | None = None  #: the last round's ROI


@dataclass
class _Scan:
    """Per-volume cache: canonical windowed image, out-of-range mask, spacing."""

    image: np.ndarray  # canonical (Z, Y, X) float32 in [0, 1]
    out_of_range: np.ndarray | None  # canonical (Z, Y, X) bool, None if HU unknown/disabled
    spacing_zyx: tuple[float, float, float]


def out_of_range_mask(volume: Volume, hu_range: tuple[float, float]) -> np.ndarray | None:
    """Voxels certainly outside ``hu_range`` (HU) on ``volume``'s grid; ``None`` if HU unknown.

    For windowed inputs, values clipped at the stored range's ends are treated as described in
    the module docstring.
    """
    lo, hi = hu_range
    kind = volume.intensity.kind
    if kind == IntensityKind.HU:
        hu = np.asarray(volume.array, dtype=np.float32)
        return (hu < lo) | (hu > hi)
    if kind != IntensityKind.WINDOWED or volume.intensity.window is None:
        return None
    stored = volume.intensity.stored_range
    window = volume.intensity.window
    hu = volume.hu()
    out = (hu < lo) | (hu > hi)
    if stored is not None:
        arr = np.asarray(volume.array)
        if window.lo <= lo:
            out |= arr <= stored[0]
        if window.hi >= hi:
            out |= arr >= stored[1]
    return out


def _block_reduce(a: np.ndarray, d: int, how: str) -> np.ndarray:
    """Reduce ``(Z, Y, X)`` in-plane by ``d`` (Y, X already multiples of ``d``)."""
    z, y, x = a.shape
    blocks = a.reshape(z, y // d, d, x // d, d)
    if how == "mean":
        return blocks.mean(axis=(2, 4), dtype=np.float64).astype(np.float32)
    if how == "all":
        return blocks.all(axis=(2, 4))
    if how == "sum":
        return blocks.sum(axis=(2, 4), dtype=np.int32)
    raise ValueError(how)


def _pad_to_multiple(a: np.ndarray, d: int) -> np.ndarray:
    py, px = (-a.shape[1]) % d, (-a.shape[2]) % d
    if py == 0 and px == 0:
        return a
    return np.pad(a, ((0, 0), (0, py), (0, px)), mode="edge")


def _edges(shape: tuple[int, ...]) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Face-neighbour pairs ``(axis, a, b)`` of flat indices of a C-ordered array."""
    idx = np.arange(int(np.prod(shape))).reshape(shape)
    out = []
    for ax in range(len(shape)):
        if shape[ax] < 2:
            continue
        lo = [slice(None)] * len(shape)
        hi = [slice(None)] * len(shape)
        lo[ax], hi[ax] = slice(0, -1), slice(1, None)
        out.append((ax, idx[tuple(lo)].ravel(), idx[tuple(hi)].ravel()))
    return out


def random_walk_probability(
    data: np.ndarray,
    seeds: np.ndarray,
    *,
    beta: float = 130.0,
    spacing: Sequence[float] | None = None,
    min_weight: float = 1e-6,
    solver: str = "direct",
    tol: float = 1e-6,
) -> np.ndarray:
    """Probability that a random walker from each voxel first reaches a positive seed (Grady 2006).

    ``seeds``: 0 unknown, 1 positive, 2 background, -1 inactive (removed from the graph).
    Face-neighbour edge weights are skimage's: ``w = exp(-beta / (10 std) * (d / s)**2)`` with
    ``d`` the intensity difference, ``s`` the ``spacing`` along the edge (1 if ``None``) and
    ``std`` the standard deviation of the active voxels; unlike skimage (which adds 1e-10),
    weights are floored at ``min_weight`` so the system stays well conditioned. The Dirichlet
    problem ``L_UU x = -L_US x_S`` is solved exactly (``solver="direct"``, sparse LU) or by
    Jacobi-preconditioned conjugate gradients (``"cg"``, relative tolerance ``tol``). Unknown
    voxels whose connected component touches no seed stay at 0; seeds keep their label.
    """
    from scipy import sparse
    from scipy.sparse.csgraph import connected_components
    from scipy.sparse.linalg import cg, spsolve

    lab = np.asarray(seeds).ravel()
    flat = np.asarray(data, dtype=np.float64).ravel()
    if flat.size != lab.size:
        raise ConfigError(f"data {np.shape(data)} and seeds {np.shape(seeds)} differ in shape")
    n = lab.size
    out = (lab == POSITIVE_SEED).astype(np.float64)
    unknown = lab == 0
    n_u = int(unknown.sum())
    if n_u == 0:
        return out.reshape(np.shape(seeds)).astype(np.float32)
    active = lab != INACTIVE
    std = float(flat[active].std())
    scale = beta / (10.0 * std) if std > 0 else 0.0
    sp = np.ones(np.ndim(seeds)) if spacing is None else np.asarray(spacing, dtype=np.float64)
    heads, tails, weights = [], [], []
    for ax, a, b in _edges(np.shape(seeds)):
        keep = active[a] & active[b] & (unknown[a] | unknown[b])
        a, b = a[keep], b[keep]
        g = ((flat[a] - flat[b]) / sp[ax]) ** 2
        heads.append(a)
        tails.append(b)
        weights.append(np.maximum(np.exp(-scale * g), min_weight))
    a, b, w = np.concatenate(heads), np.concatenate(tails), np.concatenate(weights)
    degree = np.bincount(a, w, n) + np.bincount(b, w, n)
    pos = lab == POSITIVE_SEED
    rhs = np.bincount(a, w * (unknown[a] & pos[b]), n) + np.bincount(
        b, w * (unknown[b] & pos[a]), n
    )
    seed_contact = np.bincount(a, unknown[a] & ~unknown[b], n) + np.bincount(
        b, unknown[b] & ~unknown[a], n
    )
    uid = np.full(n, -1, np.int64)
    uid[unknown] = np.arange(n_u)
    uu = unknown[a] & unknown[b]
    i, j, wu = uid[a[uu]], uid[b[uu]], w[uu]
    adjacency = sparse.coo_matrix((wu, (i, j)), shape=(n_u, n_u)).tocsr()
    _, comp = connected_components(adjacency, directed=False)
    reachable = np.bincount(comp, seed_contact[unknown] > 0) > 0
    solve = reachable[comp]
    lap = sparse.diags(degree[unknown]) - adjacency - adjacency.T
    lap = lap.tocsr()[solve][:, solve]
    b_vec = rhs[unknown][solve]
    x = np.zeros(n_u)
    if solver == "direct":
        x[solve] = spsolve(lap.tocsc(), b_vec, permc_spec="MMD_AT_PLUS_A")
    elif solver == "cg":
        m_inv = sparse.diags(1.0 / lap.diagonal())
        x[solve], _ = cg(lap, b_vec, rtol=tol, atol=0.0, M=m_inv, maxiter=20 * n_u)
    else:
        raise ConfigError(f"solver must be 'direct', 'cg' or 'skimage', got {solver!r}")
    out[unknown] = np.clip(x, 0.0, 1.0)
    return out.reshape(np.shape(seeds)).astype(np.float32)


class RandomWalkerEngine:
    """The random-walker baseline behind the :class:`~ichseg.interaction.engine.Engine`
    protocol (see the module docstring); wrap it in an
    :class:`~ichseg.interaction.session.InteractiveSession` to use it."""

    name = "random_walker"

    def __init__(self, config: RandomWalkerConfig | None = None) -> None:
        self.config = config or RandomWalkerConfig()
        self._scan: _Scan | None = None

    def config_dict(self) -> dict[str, Any]:
        d = asdict(self.config)
        if d.get("hu_range") is not None:
            d["hu_range"] = list(d["hu_range"])
        return d

    def model_info(self) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------------ volume
    def encode(self, canonical: Volume) -> None:
        """Window the canonical scan to [0, 1] and find out-of-range voxels."""
        cfg = self.config
        win = window_volume(
            canonical, cfg.window, assume_stored_window_ok=cfg.assume_stored_window_ok
        )
        image = np.ascontiguousarray(win.transpose(2, 1, 0), dtype=np.float32)
        oor = None
        if cfg.hu_range is not None:
            m = out_of_range_mask(canonical, cfg.hu_range)
            oor = None if m is None else np.ascontiguousarray(m.transpose(2, 1, 0))
        sx, sy, sz = canonical.spacing
        self._scan = _Scan(image, oor, (sz, sy, sx))

    def _require_scan(self) -> _Scan:
        if self._scan is None:
            raise PromptError("no volume encoded: call encode() first")
        return self._scan

    # ------------------------------------------------------------------ the round
    def predict(
        self,
        prompts: Sequence[Prompt],
        new_prompts: Sequence[Prompt],
        previous: np.ndarray | None,
        state: Any,
    ) -> EngineOutput:
        """Random walker on the ROI of all prompts so far. The previous round is not used, except
        for a session started from a mask (``state`` from :meth:`start_state`): then the initial
        mask gives the seeds away from the prompts (module docstring)."""
        scan = self._require_scan()
        timings: dict[str, float] = {}
        if isinstance(state, RandomWalkerState):
            prob, roi = self._segment_from_initial(scan, prompts, state.initial, timings)
            out_state: Any = RandomWalkerState(state.initial, roi)
        else:
            prob, roi = self._segment(scan, prompts, timings)
            out_state = roi
        return EngineOutput(
            probability=prob,
            state=out_state,
            propagated_slices=[] if roi is None else list(range(roi[0].start, roi[0].stop)),
            timings=timings,
        )

    def start_state(self, previous: np.ndarray) -> RandomWalkerState:
        """State for a session whose round 0 is an existing mask: ``previous`` is its canonical
        ``(Z, Y, X)`` probability (or 0/1 mask), binarised at 0.5."""
        scan = self._require_scan()
        prev = np.asarray(previous)
        if prev.shape != scan.image.shape:
            raise PromptError(
                f"initial mask of shape {prev.shape} does not fit the scan {scan.image.shape}"
            )
        return RandomWalkerState(prev >= 0.5)

    def _segment_from_initial(
        self,
        scan: _Scan,
        prompts: Sequence[Prompt],
        initial: np.ndarray,
        timings: dict[str, float],
    ) -> tuple[np.ndarray, tuple[slice, slice, slice] | None]:
        """Canonical probability: the initial mask, re-decided within ``previous_radius_mm`` of
        the prompts (see the module docstring), and the ROI used."""
        cfg = self.config
        t = time.perf_counter()
        out = initial.astype(np.float32)
        labels_by_slice = self.user_labels(prompts)
        touched = {z: lab > 0 for z, lab in labels_by_slice.items() if (lab > 0).any()}
        if not touched:
            timings["seeds"] = time.perf_counter() - t
            return out, None
        nz, ny, nx = scan.image.shape
        sz, sy, sx = scan.spacing_zyx
        radius = cfg.previous_radius_mm
        zs = sorted(touched)
        ys = np.concatenate([np.nonzero(m)[0] for m in touched.values()])
        xs = np.concatenate([np.nonzero(m)[1] for m in touched.values()])
        mz, my, mx = (math.ceil(radius / v) for v in (sz, sy, sx))
        roi = (
            slice(max(zs[0] - mz, 0), min(zs[-1] + mz + 1, nz)),
            slice(max(int(ys.min()) - my, 0), min(int(ys.max()) + my + 1, ny)),
            slice(max(int(xs.min()) - mx, 0), min(int(xs.max()) + mx + 1, nx)),
        )
        zsl, ysl, xsl = roi
        data = scan.image[roi]
        init = initial[roi]
        user = np.zeros(data.shape, np.int8)
        for z, lab in labels_by_slice.items():
            if zsl.start <= z < zsl.stop:
                user[z - zsl.start] = lab[ysl, xsl]
        near = ndi.distance_transform_edt(user == 0, sampling=(sz, sy, sx)) <= radius
        near[:, 0, :] = near[:, -1, :] = False
        near[:, :, 0] = near[:, :, -1] = False
        oor = np.zeros(data.shape, bool)
        if scan.out_of_range is not None:
            oor = scan.out_of_range[roi]
        outside = np.zeros(data.shape, bool)
        for z, out_z in self.box_outside(prompts).items():
            if zsl.start <= z < zsl.stop:
                outside[z - zsl.start] = out_z[ysl, xsl]
        full = np.where(init, POSITIVE_SEED, BACKGROUND_SEED).astype(np.int8)
        full[near] = 0
        full[near & outside] = BACKGROUND_SEED
        full[oor] = INACTIVE
        full[user > 0] = user[user > 0]

        d = cfg.downsample
        if d > 1:
            padded = _pad_to_multiple(full, d)
            counts = {
                v: _block_reduce((padded == v).astype(np.int32), d, "sum")
                for v in (0, POSITIVE_SEED, BACKGROUND_SEED, INACTIVE)
            }
            up = _pad_to_multiple(user, d)
            n_user_pos = _block_reduce((up == POSITIVE_SEED).astype(np.int32), d, "sum")
            n_user_neg = _block_reduce((up == BACKGROUND_SEED).astype(np.int32), d, "sum")
            seeds = np.where(
                counts[POSITIVE_SEED] >= counts[BACKGROUND_SEED], POSITIVE_SEED, BACKGROUND_SEED
            ).astype(np.int32)
            seeds[counts[INACTIVE] == d * d] = INACTIVE
            seeds[counts[0] > 0] = 0
            seeds[(n_user_pos > 0) & (n_user_pos >= n_user_neg)] = POSITIVE_SEED
            seeds[n_user_neg > n_user_pos] = BACKGROUND_SEED
            data_l = _block_reduce(_pad_to_multiple(data, d), d, "mean")
        else:
            seeds, data_l = full.astype(np.int32), data
        timings["seeds"] = time.perf_counter() - t

        prob = self._walk_full_resolution(data_l, seeds, scan, data.shape, d, timings)
        t = time.perf_counter()
        keep = full != 0  # seeded at full resolution: the initial mask / the user's label
        prob[keep] = (full[keep] == POSITIVE_SEED).astype(np.float32)
        prob[oor | outside] = 0.0
        prob[user == POSITIVE_SEED] = 1.0
        prob[user == BACKGROUND_SEED] = 0.0
        out[roi] = prob
        timings["upsample"] += time.perf_counter() - t
        return out, roi

    def user_labels(self, prompts: Sequence[Prompt]) -> dict[int, np.ndarray]:
        """Per prompted slice, an int8 ``(Y, X)`` map of seed labels (0 none, 1 pos, 2 neg).

        Prompts are drawn in order, so a later prompt overrides an earlier one where they overlap.
        Boxes are left out: their background (the whole slice outside them, which holds their
        rings) comes from :meth:`box_outside`.
        """
        _, ny, nx = self._require_scan().image.shape
        out: dict[int, np.ndarray] = {}
        for p in prompts:
            if isinstance(p, Box):
                continue
            hint = rasterize_slice([p], (ny, nx), p.z)
            lab = out.setdefault(p.z, np.zeros((ny, nx), np.int8))
            ch = HINT_POSITIVE if p.positive else HINT_NEGATIVE
            lab[hint[ch] > 0] = POSITIVE_SEED if p.positive else BACKGROUND_SEED
        return out

    def box_outside(self, prompts: Sequence[Prompt]) -> dict[int, np.ndarray]:
        """Per slice holding a :class:`Box`, the ``(Y, X)`` pixels outside every box on it."""
        _, ny, nx = self._require_scan().image.shape
        inside: dict[int, np.ndarray] = {}
        for p in prompts:
            if isinstance(p, Box):
                inside[p.z] = inside.get(p.z, np.zeros((ny, nx), bool)) | box_inside(p, (ny, nx))
        return {z: ~m for z, m in inside.items()}

    def z_margin_slices(self, slice_mm: float) -> int:
        """Slices the ROI grows above and below the prompts for slices of ``slice_mm``."""
        if self.config.z_margin is not None:
            return self.config.z_margin
        return math.floor(self.config.z_margin_mm / slice_mm + 0.5)

    def roi_for(self, prompts: Sequence[Prompt]) -> tuple[slice, slice, slice] | None:
        """The canonical ``(z, y, x)`` ROI the prompts define (``None``: no positive prompt)."""
        scan = self._require_scan()
        return self._roi(scan, self.user_labels(prompts))

    def _roi(self, scan: _Scan, labels: dict[int, np.ndarray]) -> tuple[slice, slice, slice] | None:
        cfg = self.config
        pos = [(z, np.nonzero(lab == POSITIVE_SEED)) for z, lab in labels.items()]
        pos = [(z, yx) for z, yx in pos if yx[0].size]
        if not pos:
            return None
        zs = [z for z, _ in pos]
        ys = np.concatenate([yx[0] for _, yx in pos])
        xs = np.concatenate([yx[1] for _, yx in pos])
        nz, ny, nx = scan.image.shape
        _, sy, sx = scan.spacing_zyx
        my, mx = math.ceil(cfg.margin_mm / sy), math.ceil(cfg.margin_mm / sx)
        mz = self.z_margin_slices(scan.spacing_zyx[0])
        return (
            slice(max(min(zs) - mz, 0), min(max(zs) + mz + 1, nz)),
            slice(max(int(ys.min()) - my, 0), min(int(ys.max()) + my + 1, ny)),
            slice(max(int(xs.min()) - mx, 0), min(int(xs.max()) + mx + 1, nx)),
        )

    def _segment(
        self, scan: _Scan, prompts: Sequence[Prompt], timings: dict[str, float]
    ) -> tuple[np.ndarray, tuple[slice, slice, slice] | None]:
        """Canonical ``(Z, Y, X)`` hemorrhage probability for ``prompts`` and the ROI used."""
        cfg = self.config
        t = time.perf_counter()
        out = np.zeros(scan.image.shape, np.float32)
        labels_by_slice = self.user_labels(prompts)
        roi = self._roi(scan, labels_by_slice)
        if roi is None:
            timings["seeds"] = time.perf_counter() - t
            return out, None
        zsl, ysl, xsl = roi
        data = scan.image[roi]
        user = np.zeros(data.shape, np.int8)
        for z, lab in labels_by_slice.items():
            if zsl.start <= z < zsl.stop:
                user[z - zsl.start] = lab[ysl, xsl]
        oor = None if scan.out_of_range is None else scan.out_of_range[roi]
        outside = np.zeros(data.shape, bool)  # outside the box(es) of a slice that has one
        for z, out_z in self.box_outside(prompts).items():
            if zsl.start <= z < zsl.stop:
                outside[z - zsl.start] = out_z[ysl, xsl]

        d = cfg.downsample
        data_l = _block_reduce(_pad_to_multiple(data, d), d, "mean") if d > 1 else data
        oor_l = np.zeros(data_l.shape, bool)
        if oor is not None:
            oor_l = _block_reduce(_pad_to_multiple(oor, d), d, "all") if d > 1 else oor
        border = np.zeros(data_l.shape, bool)
        border[:, 0, :] = border[:, -1, :] = True
        border[:, :, 0] = border[:, :, -1] = True
        seeds = np.zeros(data_l.shape, np.int32)
        if cfg.out_of_range == "background":
            seeds[oor_l | border] = BACKGROUND_SEED
        else:
            seeds[oor_l] = INACTIVE
            seeds[border & ~oor_l] = BACKGROUND_SEED
        outside_l = _block_reduce(_pad_to_multiple(outside, d), d, "all") if d > 1 else outside
        seeds[outside_l & (seeds == 0)] = BACKGROUND_SEED
        if d > 1:
            up = _pad_to_multiple(user, d)
            n_pos = _block_reduce((up == POSITIVE_SEED).astype(np.int32), d, "sum")
            n_neg = _block_reduce((up == BACKGROUND_SEED).astype(np.int32), d, "sum")
            seeds[(n_pos > 0) & (n_pos >= n_neg)] = POSITIVE_SEED
            seeds[(n_neg > n_pos)] = BACKGROUND_SEED
        else:
            seeds[user > 0] = user[user > 0]
        if not (seeds == BACKGROUND_SEED).any():  # ROI border all air/bone: seed those instead
            seeds[seeds == INACTIVE] = BACKGROUND_SEED
        timings["seeds"] = time.perf_counter() - t

        prob = self._walk_full_resolution(data_l, seeds, scan, data.shape, d, timings)
        t = time.perf_counter()
        if oor is not None:
            prob[oor] = 0.0
        prob[outside] = 0.0
        prob[user == POSITIVE_SEED] = 1.0
        prob[user == BACKGROUND_SEED] = 0.0
        out[roi] = prob
        timings["upsample"] += time.perf_counter() - t
        return out, roi

    def _walk_full_resolution(
        self,
        data_l: np.ndarray,
        seeds: np.ndarray,
        scan: _Scan,
        shape: tuple[int, ...],
        d: int,
        timings: dict[str, float],
    ) -> np.ndarray:
        """Random walker on the (in-plane ``d``-times reduced) ROI, then back to the ROI's
        ``shape`` at full resolution (linear), clipped to [0, 1] as float32."""
        t = time.perf_counter()
        prob_l = self._walk(data_l, seeds, scan.spacing_zyx, timings)
        timings["random_walker"] = time.perf_counter() - t
        t = time.perf_counter()
        if d > 1:
            prob = ndi.zoom(prob_l, (1, d, d), order=1, mode="nearest", grid_mode=True)
            prob = prob[:, : shape[1], : shape[2]]
        else:
            prob = prob_l
        prob = np.clip(prob, 0.0, 1.0).astype(np.float32)
        timings["upsample"] = time.perf_counter() - t  # the caller adds its pasting
        return prob

    def _walk(
        self,
        data: np.ndarray,
        seeds: np.ndarray,
        spacing_zyx: tuple[float, float, float],
        timings: dict[str, float],
    ) -> np.ndarray:
        """Hemorrhage probability on the (possibly downsampled) ROI grid."""
        cfg = self.config
        timings["rw_voxels"] = float(seeds.size)
        timings["rw_unknowns"] = float((seeds == 0).sum())
        if not (seeds == POSITIVE_SEED).any():
            return np.zeros(seeds.shape, np.float32)
        if not (seeds == 0).any() or not (seeds == BACKGROUND_SEED).any():
            return (seeds == POSITIVE_SEED).astype(np.float32)
        d = cfg.downsample
        sp = np.array([spacing_zyx[0], spacing_zyx[1] * d, spacing_zyx[2] * d])
        spacing = tuple(sp / sp.min()) if cfg.use_spacing else None
        if cfg.solver != "skimage":
            return random_walk_probability(
                data,
                seeds,
                beta=cfg.beta,
                spacing=spacing,
                min_weight=cfg.min_weight,
                solver=cfg.solver,
                tol=cfg.tol,
            )
        from skimage.segmentation import random_walker

        data = data.astype(np.float64, copy=True)
        if float(np.ptp(data)) == 0.0:  # uniform image: skimage divides by its std
            data.flat[0] += 1e-3
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            full = random_walker(
                data,
                seeds,
                beta=cfg.beta,
                mode=cfg.mode,
                tol=cfg.tol,
                return_full_prob=True,
                spacing=spacing,
            )
        timings["rw_warnings"] = float(len(caught))
        prob = np.asarray(full[POSITIVE_SEED - 1], dtype=np.float32)
        bad = ~np.isfinite(prob)  # skimage's direct solve fails on near-singular systems
        if bad.any():
            timings["rw_nonfinite"] = float(bad.sum())
            prob[bad] = 0.0
        return prob
