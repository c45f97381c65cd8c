"""Stroke refinement: strokes move the boundary to image edges near them, nothing else changes."""

from __future__ import annotations

import numpy as np
import pytest

from ichseg.errors import ConfigError
from ichseg.interaction.stroke_refine import refine_slice


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 32, xx - 32)
    lesion = r < 10
    image = np.where(lesion, 0.8, 0.3) + np.random.default_rng(0).normal(0, 0.01, (64, 64))
    return image, lesion, r


def test_negative_stroke_removes_a_false_positive_band_up_to_the_edge() -> None:
    image, lesion, r = _scene()
    prob = (r < 16).astype(np.float32)  # lesion + a 6-pixel false-positive ring
    neg = np.zeros_like(lesion)
    neg[32, 43:48] = True  # a stroke across the ring, right of the lesion
    out = refine_slice(image, prob, np.zeros_like(lesion), neg, radius=8)
    dist = np.hypot(*np.mgrid[:64, :64] - np.array([32, 45])[:, None, None])
    assert (out[(dist <= 8) & lesion] >= 0.5).all()  # the lesion's edge holds
    assert (out[(dist <= 4) & ~lesion] < 0.5).all()  # the ring around the stroke is gone
    far = dist > 10  # the stroke's end points are 2 pixels from its middle
    np.testing.assert_array_equal(out[far], prob[far])  # away from the stroke: unchanged


def test_positive_stroke_fills_a_missed_part_of_the_lesion() -> None:
    image, lesion, _ = _scene()
    prob = (lesion & (np.mgrid[:64, :64][1] < 32)).astype(np.float32)  # left half only
    pos = np.zeros_like(lesion)
    pos[30:34, 36] = True
    out = refine_slice(image, prob, pos, np.zeros_like(lesion), radius=10)
    right = lesion & (np.mgrid[:64, :64][1] >= 32)
    gain = (out[right] >= 0.5).mean()
    assert gain > 0.7
    assert (out[~lesion] < 0.5).all()  # it does not leak into the darker brain


def test_no_strokes_or_bad_input() -> None:
    image, lesion, _ = _scene()
    prob = lesion.astype(np.float32) * 0.9
    none = np.zeros_like(lesion)
    np.testing.assert_array_equal(refine_slice(image, prob, none, none, radius=5), prob)
    with pytest.raises(ConfigError, match="radius"):
        refine_slice(image, prob, none, none, radius=0)
    with pytest.raises(ConfigError, match="2D"):
        refine_slice(image[None], prob[None], none[None], none[None], radius=3)
