"""Make a network's slice mask follow the clinician's strokes near where they were drawn.

A learned slice network may keep a false-positive band that the clinician has crossed out
(or miss a region painted as hemorrhage): enforcing only the painted pixels leaves the rest of
the band, and the slice stays the worst one round after round. :func:`refine_slice` re-decides
the pixels within ``radius`` of any stroke with a 2D random walker on the image (Grady 2006,
:func:`~ichseg.interaction.random_walker.random_walk_probability`), seeded by

* the strokes themselves (positive = hemorrhage, negative = background), and
* the network's own decision everywhere else (probability >= 0.5 hemorrhage, else background),

so a correction moves the boundary to the nearest image edge around the stroke while the rest of
the slice keeps the network's answer. Pixels near no stroke are returned unchanged.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ichseg.errors import ConfigError
from ichseg.interaction.random_walker import (
    BACKGROUND_SEED,
    POSITIVE_SEED,
    random_walk_probability,
)

__all__ = ["refine_slice"]


def refine_slice(
    image: np.ndarray,
    prob: np.ndarray,
    positive: np.ndarray,
    negative: np.ndarray,
    *,
    radius: float,
    beta: float = 600.0,
    threshold: float = 0.5,
) -> np.ndarray:
    """Probability of one ``(H, W)`` slice re-decided within ``radius`` pixels of the strokes.

    ``image`` is the windowed slice (any scale), ``prob`` the network's probability, ``positive``
    and ``negative`` the stroke masks (a pixel in both counts as negative, as the later wins
    elsewhere only through enforcement). Returns float32 in ``[0, 1]``; identical to ``prob``
    away from the strokes and when there are none.
    """
    image = np.asarray(image, dtype=np.float64)
    prob = np.asarray(prob, dtype=np.float32)
    pos = np.asarray(positive, dtype=bool)
    neg = np.asarray(negative, dtype=bool)
    if not (image.shape == prob.shape == pos.shape == neg.shape) or image.ndim != 2:
        raise ConfigError(
            "refine_slice needs 2D arrays of one shape, got "
            f"{image.shape}, {prob.shape}, {pos.shape}, {neg.shape}"
        )
    if radius <= 0:
        raise ConfigError(f"radius must be > 0, got {radius}")
    strokes = pos | neg
    if not strokes.any():
        return prob.copy()
    near = ndi.distance_transform_edt(~strokes) <= radius
    ys, xs = np.nonzero(near)
    pad = 2
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, prob.shape[0])
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, prob.shape[1])
    box = (slice(y0, y1), slice(x0, x1))
    seeds = np.where(prob[box] >= threshold, POSITIVE_SEED, BACKGROUND_SEED).astype(np.int8)
    seeds[near[box]] = 0
    seeds[pos[box]] = POSITIVE_SEED
    seeds[neg[box]] = BACKGROUND_SEED
    walked = random_walk_probability(image[box], seeds, beta=beta)
    out = prob.copy()
    sub = out[box]
    sub[near[box]] = walked[near[box]]
    return out
