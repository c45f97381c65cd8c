"""A skeleton-based scribble robot (our own implementation of the DAVIS-style idea).

For one slice, the robot compares a binary prediction with the ground truth and draws what a user
would draw to correct it:

* **positive** strokes in false-negative regions (hemorrhage the prediction missed),
* **negative** strokes in false-positive regions (background the prediction wrongly claims).

Per class the steps are:

1. error region ``E`` (all error pixels of that class on the slice), area ``A``;
2. binary opening of ``E`` with a Euclidean disc of radius
   ``r = min(kernel_size * sqrt(A) / 2, max_kernel_radius)``; if nothing survives, ``r`` is
   multiplied by ``shrink`` (0.9) while ``r > 1``; if still nothing survives the un-opened ``E`` is
   used. The opening removes thin slivers and small specks so strokes go to substantial errors;
3. skeleton of the opened region: its medial axis (``skimage.morphology.medial_axis`` with a fixed
   tie-break seed, so it is deterministic), or ``skeletonize`` thinning (shorter, fewer spurs) with
   ``skeleton_method="thin"``;
4. the skeleton pixels form an 8-neighbour graph (edge length 1 or sqrt(2)); cycles are cut by a
   minimum spanning forest (heaviest edges go first); each tree with at least ``min_nb_nodes``
   pixels contributes its longest path, found by two traversals (farthest node from any node, then
   farthest node from that one);
5. the path is smoothed with a moving average (window ``smooth_window`` path pixels, shrunk when
   needed) and resampled by arc length to at most ``nb_points`` points (about one per pixel);
   the smoothed polyline is accepted only if its 1-px rasterization stays inside ``E``; otherwise
   smaller windows are tried and finally the raw skeleton path (always inside ``E``) is used.

Tiny or round errors: if a non-empty error region yields no tree with ``min_nb_nodes`` pixels
(a region of a few pixels, or a disc whose medial axis is a single point), the robot falls back
(``dot_fallback=True``) to the longest skeleton path of the opened region (a short stroke of >= 2
pixels) or, if that is a single pixel, a one-point "dot" stroke (click-like) at the pixel deepest
inside the largest component of the opened region. So every non-empty error class gets at least
one stroke.
With an all-zero prediction there are no false positives, so only positive strokes come out.
The robot is deterministic; ``rng`` is only used when ``kernel_jitter > 0`` (training variety).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree
from skimage.morphology import medial_axis, skeletonize

from ichseg.errors import ConfigError, DimensionalityError, PromptError
from ichseg.interaction.hints import rasterize_polyline
from ichseg.interaction.prompts import Scribble2D

_EIGHT = np.ones((3, 3), dtype=bool)


def binarize(mask: np.ndarray, what: str, threshold: float = 0.5) -> np.ndarray:
    """Boolean version of a mask/probability map (``> threshold``); rejects NaN."""
    a = np.asarray(mask)
    if a.dtype == bool:
        return a
    if not np.issubdtype(a.dtype, np.number):
        raise PromptError(f"{what} must be numeric or boolean, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
        raise PromptError(f"{what} contains NaN or infinite values")
    return a > threshold


def error_regions(pred2d: np.ndarray, gt2d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(false_negative, false_positive)`` boolean maps of one slice (shapes must match)."""
    pred = binarize(pred2d, "prediction")
    gt = binarize(gt2d, "ground truth")
    if pred.ndim != 2 or gt.ndim != 2:
        raise DimensionalityError(
            f"the scribble robot works on 2D slices, got prediction {pred.shape}, GT {gt.shape}"
        )
    if pred.shape != gt.shape:
        raise PromptError(f"prediction shape {pred.shape} does not match GT shape {gt.shape}")
    return gt & ~pred, pred & ~gt


def disc_opening(region: np.ndarray, radius: float) -> np.ndarray:
    """Binary opening of a 2D mask with a Euclidean disc of ``radius`` (outside = background)."""
    if radius < 1.0:
        return region.copy()
    pad = int(np.ceil(radius)) + 1
    padded = np.pad(region, pad)
    eroded = ndi.distance_transform_edt(padded) > radius
    if not eroded.any():
        return np.zeros_like(region)
    opened = ndi.distance_transform_edt(~eroded) <= radius
    return opened[pad:-pad, pad:-pad] & region


def deepest_point(region: np.ndarray) -> tuple[int, int]:
    """The pixel of the largest 8-connected component of ``region`` farthest from its border."""
    labels, n = ndi.label(region, structure=_EIGHT)
    if n == 0:
        raise PromptError("deepest_point of an empty region")
    sizes = np.bincount(labels.ravel())[1:]
    comp = labels == (int(np.argmax(sizes)) + 1)
    dist = ndi.distance_transform_edt(np.pad(comp, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(y), int(x)


def skeleton_paths(skeleton: np.ndarray, min_nodes: int = 1) -> list[np.ndarray]:
    """Longest path of every tree of a 2D skeleton, as ``(N, 2)`` int arrays of ``(y, x)``.

    The skeleton's pixels form an 8-neighbour graph; a minimum spanning forest (axial edges weigh 1,
    diagonal ones sqrt(2)) cuts its cycles. In each tree with ``>= min_nodes`` pixels the longest
    path is found by two traversals. Paths are sorted longest first.
    """
    ys, xs = np.nonzero(skeleton)
    n = ys.size
    if n == 0:
        return []
    index = -np.ones(skeleton.shape, dtype=np.int64)
    index[ys, xs] = np.arange(n)
    padded = np.pad(index, 1, constant_values=-1)
    rows, cols, weights = [], [], []
    for dy, dx, w in ((0, 1, 1.0), (1, 0, 1.0), (1, 1, np.sqrt(2.0)), (1, -1, np.sqrt(2.0))):
        nb = padded[ys + 1 + dy, xs + 1 + dx]
        ok = nb >= 0
        rows.append(np.arange(n)[ok])
        cols.append(nb[ok])
        weights.append(np.full(int(ok.sum()), w))
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    w = np.concatenate(weights)
    graph = coo_matrix((w, (r, c)), shape=(n, n)).tocsr()
    forest = minimum_spanning_tree(graph)
    forest = (forest + forest.T).tocsr()
    n_comp, comp = connected_components(forest, directed=False)

    def farthest(start: int) -> tuple[int, float, list[int]]:
        """Traverse the tree from ``start``: farthest node, its distance, path back to start."""
        dist = {start: 0.0}
        parent = {start: -1}
        queue = deque([start])
        while queue:
            u = queue.popleft()
            for k in range(forest.indptr[u], forest.indptr[u + 1]):
                v = int(forest.indices[k])
                if v not in dist:
                    dist[v] = dist[u] + float(forest.data[k])
                    parent[v] = u
                    queue.append(v)
        far = max(dist, key=lambda v: (dist[v], -v))
        path = [far]
        while parent[path[-1]] != -1:
            path.append(parent[path[-1]])
        return far, dist[far], path

    paths: list[tuple[float, np.ndarray]] = []
    for c_id in range(n_comp):
        members = np.flatnonzero(comp == c_id)
        if members.size < max(min_nodes, 1):
            continue
        end_a, _, _ = farthest(int(members.min()))
        _, length, path = farthest(end_a)
        idx = np.asarray(path, dtype=np.intp)
        paths.append((length, np.column_stack([ys[idx], xs[idx]])))
    paths.sort(key=lambda t: (-t[0], t[1][0, 0], t[1][0, 1]))
    return [p for _, p in paths]


def _moving_average(path: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(path) < 3:
        return path.astype(np.float64)
    return ndi.uniform_filter1d(path.astype(np.float64), size=window, axis=0, mode="nearest")


def _resample(poly: np.ndarray, max_points: int) -> np.ndarray:
    seg = np.sqrt((np.diff(poly, axis=0) ** 2).sum(axis=1))
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    total = float(arc[-1])
    if total <= 0:
        return poly[:1]
    n = int(min(max_points, max(2, np.ceil(total) + 1)))
    t = np.linspace(0.0, total, n)
    return np.column_stack([np.interp(t, arc, poly[:, 0]), np.interp(t, arc, poly[:, 1])])


@dataclass(frozen=True)
class ScribbleRobot:
    """Simulated scribbles on error regions of one slice (see the module docstring).

    Defaults follow the reference evaluation setting (kernel 0.15; use 0.12 for training).
    """

    kernel_size: float = 0.15
    max_kernel_radius: float = 16.0
    min_nb_nodes: int = 4
    nb_points: int = 1000
    width: float = 1.0
    shrink: float = 0.9
    smooth_window: int = 7
    max_strokes_per_class: int | None = None
    kernel_jitter: float = 0.0
    dot_fallback: bool = True
    skeleton_method: str = "medial_axis"

    def __post_init__(self) -> None:
        checks = [
            (self.kernel_size >= 0, "kernel_size must be >= 0"),
            (self.max_kernel_radius >= 0, "max_kernel_radius must be >= 0"),
            (self.min_nb_nodes >= 1, "min_nb_nodes must be >= 1"),
            (self.nb_points >= 2, "nb_points must be >= 2"),
            (self.width > 0, "width must be > 0"),
            (0 < self.shrink < 1, "shrink must be in (0, 1)"),
            (self.smooth_window >= 1, "smooth_window must be >= 1"),
            (0 <= self.kernel_jitter < 1, "kernel_jitter must be in [0, 1)"),
            (
                self.skeleton_method in ("medial_axis", "thin"),
                "skeleton_method must be 'medial_axis' or 'thin'",
            ),
            (
                self.max_strokes_per_class is None or self.max_strokes_per_class >= 1,
                "max_strokes_per_class must be None or >= 1",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"ScribbleRobot: {msg}")

    def strokes(
        self, pred2d: np.ndarray, gt2d: np.ndarray, rng: np.random.Generator | None = None
    ) -> list[Scribble2D]:
        """Positive strokes on false negatives, then negative strokes on false positives."""
        fn, fp = error_regions(pred2d, gt2d)
        if self.kernel_jitter > 0 and rng is None:
            raise ConfigError("ScribbleRobot with kernel_jitter > 0 needs an rng")
        return self.class_strokes(fn, True, rng) + self.class_strokes(fp, False, rng)

    def opening_radius(self, area: int, rng: np.random.Generator | None = None) -> float:
        """Initial opening radius for an error region of ``area`` pixels."""
        r = min(self.kernel_size * np.sqrt(area) / 2.0, self.max_kernel_radius)
        if self.kernel_jitter > 0 and rng is not None:
            r *= float(rng.uniform(1.0 - self.kernel_jitter, 1.0 + self.kernel_jitter))
        return float(r)

    def class_strokes(
        self, region: np.ndarray, positive: bool, rng: np.random.Generator | None = None
    ) -> list[Scribble2D]:
        """Strokes for one error region (boolean 2D map); positive = hemorrhage strokes."""
        region = np.asarray(region, dtype=bool)
        if region.ndim != 2:
            raise DimensionalityError(f"error region must be 2D, got shape {region.shape}")
        area = int(region.sum())
        if area == 0:
            return []
        # Work on the bounding box (plus margin) for speed; offsets are added back at the end.
        ys, xs = np.nonzero(region)
        y0, x0 = max(int(ys.min()) - 2, 0), max(int(xs.min()) - 2, 0)
        y1 = min(int(ys.max()) + 3, region.shape[0])
        x1 = min(int(xs.max()) + 3, region.shape[1])
        crop = region[y0:y1, x0:x1]

        r = self.opening_radius(area, rng)
        opened = disc_opening(crop, r)
        while not opened.any() and r > 1.0:
            r *= self.shrink
            opened = disc_opening(crop, r)
        if not opened.any():
            opened = crop
        skeleton = self._skeleton(opened)
        paths = skeleton_paths(skeleton, self.min_nb_nodes)
        if not paths and self.dot_fallback:
            paths = skeleton_paths(skeleton, 1)[:1]
            if not paths or len(paths[0]) < 2:
                paths = [np.array([deepest_point(opened)])]
        if self.max_strokes_per_class is not None:
            paths = paths[: self.max_strokes_per_class]
        out = []
        for path in paths:
            poly = self._polyline(path, crop)
            pts = tuple((float(y) + y0, float(x) + x0) for y, x in poly)
            out.append(Scribble2D(pts, positive, self.width))
        return out

    def _skeleton(self, mask: np.ndarray) -> np.ndarray:
        if self.skeleton_method == "thin":
            return skeletonize(mask)
        return medial_axis(mask, rng=0) & mask

    def _polyline(self, path: np.ndarray, region: np.ndarray) -> np.ndarray:
        """Smoothed, resampled polyline for a skeleton path, guaranteed to stay inside ``region``."""
        if len(path) < 3:
            return path.astype(np.float64)
        window = min(self.smooth_window, len(path))
        while window >= 1:
            poly = _resample(_moving_average(path, window), self.nb_points)
            drawn = rasterize_polyline([tuple(p) for p in poly], region.shape)
            if not np.any(drawn & ~region):
                return poly
            window = window // 2 if window > 1 else 0
        return path.astype(np.float64)
