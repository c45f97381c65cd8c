"""AutomaticPredictor: sliding-window output in the source scan's geometry (LPS and RAS)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ichseg.errors import ConfigError
from ichseg.inference import AutomaticPredictor
from ichseg.io.volume import Intensity, Volume, make_affine
from ichseg.models.registry import build_model, save_model


class BloodDetector(nn.Module):
    """Logits ``20 (x - 1)``: positive where the z-scored HU exceeds mean + 1 std (~61 HU)."""

    def __init__(self, patch=(16, 16, 8), spacing=(1.0, 1.0, 4.0)) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor(-1.0))
        self.config = {
            "patch_size": list(patch),
            "target_spacing": list(spacing),
            "clip": [0.0, 100.0],
            "mean": 48.0,
            "std": 13.0,
            "threshold": 0.5,
        }
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert tuple(x.shape[2:]) == tuple(self.config["patch_size"])
        self.calls += 1
        return 20.0 * (x + self.bias)


def phantom(shape=(40, 36, 10)) -> tuple[np.ndarray, np.ndarray]:
    """Brain-like 35 HU ellipse in air, with a 75 HU bleed; returns (HU, bleed mask)."""
    i, j, k = np.indices(shape)
    head = ((i - 19.5) / 17) ** 2 + ((j - 17.5) / 15) ** 2 < 1
    hu = np.where(head, 35.0, -1000.0)
    bleed = (np.abs(i - 12) <= 4) & (np.abs(j - 20) <= 3) & (np.abs(k - 4) <= 2)
    hu[bleed] = 75.0
    return hu.astype(np.int16), bleed.astype(np.uint8)


def as_volume(arr: np.ndarray, axcodes: str, spacing=(0.8, 0.8, 5.0)) -> Volume:
    """``arr`` given in LPS voxel order, stored LPS or (same anatomy, i/j flipped) RAS."""
    aff = make_affine(spacing, "LPS", (10.0, -20.0, 30.0))
    if axcodes == "RAS":
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        flip[:2, 3] = [arr.shape[0] - 1, arr.shape[1] - 1]
        return Volume(arr[::-1, ::-1, :].copy(), aff @ flip, Intensity.hu())
    return Volume(arr.copy(), aff, Intensity.hu())


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(1.0, float(a.sum() + b.sum()))


@pytest.mark.parametrize("axcodes", ["LPS", "RAS"])
def test_probabilities_and_mask_in_source_geometry(axcodes):
    hu, bleed = phantom()
    vol = as_volume(hu, axcodes)
    gt = as_volume(bleed, axcodes).array.astype(bool)
    model = BloodDetector()
    pred = AutomaticPredictor(model, threads=1).predict(vol)
    assert pred.shape == vol.shape and np.array_equal(pred.affine, vol.affine)
    assert pred.array.dtype == np.float32
    assert float(pred.array.min()) >= 0.0 and float(pred.array.max()) <= 1.0
    assert model.calls > 1  # several windows: the scan is larger than one patch
    seg = AutomaticPredictor(model).segment(vol)
    assert seg.array.dtype == np.uint8 and seg.shape == vol.shape
    assert np.array_equal(seg.affine, vol.affine)
    assert dice(seg.array > 0, gt) > 0.75  # on the bleed after resampling 5 -> 4 -> 5 mm


def test_lps_and_ras_inputs_give_the_same_anatomy():
    hu, _ = phantom()
    model = BloodDetector()
    lps = AutomaticPredictor(model).predict(as_volume(hu, "LPS")).array
    ras = AutomaticPredictor(model).predict(as_volume(hu, "RAS")).array
    assert np.allclose(lps, ras[::-1, ::-1, :], atol=1e-5)


def test_scan_smaller_than_a_patch_is_padded():
    hu, _ = phantom((12, 10, 3))
    model = BloodDetector(patch=(32, 32, 8), spacing=(0.8, 0.8, 5.0))
    seg = AutomaticPredictor(model).segment(as_volume(hu, "LPS"))
    assert seg.shape == (12, 10, 3)
    assert np.array_equal(seg.array > 0, (hu > 61))


def test_from_checkpoint_with_a_registry_model(tmp_path):
    model = build_model(
        "unet",
        "lite",
        channels=[4, 8],
        strides=[2],
        num_res_units=0,
        patch_size=[16, 16, 8],
        target_spacing=[1.6, 1.6, 5.0],
    )
    path = save_model(model, tmp_path / "unet.pt")
    hu, _ = phantom()
    vol = as_volume(hu, "RAS")
    predictor = AutomaticPredictor.from_checkpoint(path, threads=1)
    assert predictor.patch_size == (16, 16, 8) and predictor.threshold == 0.5
    prob = predictor.predict(vol)
    assert prob.shape == vol.shape and np.array_equal(prob.affine, vol.affine)


def test_a_model_without_inference_settings_is_refused():
    class Bare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = {"slice_size": 32}

    with pytest.raises(ConfigError, match="patch_size"):
        AutomaticPredictor(Bare())
