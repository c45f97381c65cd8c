"""The overlay PNG (demo): size, panels, L/R side from the affine (issue 9 item 14)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ichseg.errors import ConfigError, GeometryError, InputFileError
from ichseg.interaction.prompts import Click, Scribble
from ichseg.io.volume import Volume, make_affine, reorient, to_canonical
from ichseg.visualize.overlay import (
    HEADER_PX,
    LEGEND_ROW_PX,
    TITLE_PX,
    OverlayPanel,
    overlay_size,
    patient_right_side,
    render_overlay,
)


def test_patient_right_side_follows_the_affine() -> None:
    # LPS: voxel i runs to the patient's left, so column 0 is the patient's right -> image left
    assert patient_right_side(make_affine((1.0, 1.0, 5.0), "LPS")) == "left"
    # RAS: i runs to the patient's right -> the right is shown on the image's right
    assert patient_right_side(make_affine((1.0, 1.0, 5.0), "RAS")) == "right"
    # the column axis is the second voxel axis of an "ALS" file: i runs anterior
    als = make_affine((1.0, 1.0, 5.0), "ALS")
    assert patient_right_side(als, column_axis=1) == "left"
    with pytest.raises(GeometryError, match="left-right"):
        patient_right_side(als, column_axis=0)
    # oblique by 30 degrees still has a clear side
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    rot = np.eye(4)
    rot[:2, :2] = [[-c, s], [-s, -c]]
    assert patient_right_side(rot) == "left"
    with pytest.raises(GeometryError):
        patient_right_side(np.eye(3))
    with pytest.raises(ConfigError):
        patient_right_side(np.eye(4), column_axis=3)


def _volume(axcodes: str = "LPS") -> tuple[Volume, Volume]:
    shape = (40, 32, 6)
    ii, jj, kk = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    img = np.where((ii - 20) ** 2 + (jj - 16) ** 2 < 180, 35.0, -1000.0)
    bleed = ((ii - 12) ** 2 + (jj - 16) ** 2 < 16) & (kk >= 2) & (kk <= 3)  # patient's right
    img[bleed] = 70.0
    vol = Volume(img.astype(np.int16), make_affine((0.8, 0.8, 5.0), "LPS"))
    mask = vol.as_label(bleed)
    if axcodes != "LPS":
        vol, _ = reorient(vol, axcodes)
        mask, _ = reorient(mask, axcodes)
    return vol, mask


def test_overlay_png_size_and_content(tmp_path: Path) -> None:
    vol, gt = _volume("RAS")  # stored RAS: shown canonically, the bleed on the image's left
    gt_c = to_canonical(gt)[0].zyx()
    pred = np.roll(gt_c, 1, axis=2)
    panels = [
        OverlayPanel(
            2, pred, "round 1\nDice 0.80 | 1.0 mL", (Scribble(2, [(16, 10), (16, 14)], True),)
        ),
        OverlayPanel(3, gt_c, "round 2\nDice 1.00 | 1.2 mL", (Click(3, 16, 30, False),)),
        OverlayPanel(2, gt_c, "round 3", ()),
    ]
    out = render_overlay(vol, gt, panels, tmp_path / "o.png", title="t", panel_px=96)
    with Image.open(out) as im:
        assert im.size == overlay_size(3, 3, 96)
        assert im.size == (3 * 96, 96 + TITLE_PX + HEADER_PX + 2 * LEGEND_ROW_PX)
        rgb = np.asarray(im.convert("RGB")).astype(int)
    # the first panel shows red (prediction), yellow (ground truth) and green (scribble)
    panel = rgb[HEADER_PX + TITLE_PX : HEADER_PX + TITLE_PX + 96, :96]
    red = (panel[..., 0] > 200) & (panel[..., 1] < 90) & (panel[..., 2] < 90)
    yellow = (panel[..., 0] > 200) & (panel[..., 1] > 180) & (panel[..., 2] < 90)
    green = (panel[..., 1] > 200) & (panel[..., 0] < 120)
    assert red.any() and yellow.any() and green.any()
    # the lesion (patient's right) is drawn in the left half of the panel
    cols = np.nonzero(yellow.any(axis=0))[0]
    assert cols.mean() < 48
    wide = render_overlay(vol, None, panels[:2], tmp_path / "w.png", columns=1, panel_px=320)
    with Image.open(wide) as im:
        assert im.size == overlay_size(2, 1, 320) == (320, 2 * (320 + TITLE_PX) + HEADER_PX + 44)


def test_overlay_bad_input(tmp_path: Path) -> None:
    vol, gt = _volume()
    good = OverlayPanel(1, to_canonical(gt)[0].zyx(), "x")
    with pytest.raises(InputFileError):
        render_overlay(vol, gt, [good], tmp_path / "o.jpg")
    with pytest.raises(ConfigError):
        render_overlay(vol, gt, [], tmp_path / "o.png")
    with pytest.raises(ConfigError):
        render_overlay(vol, gt, [OverlayPanel(9, good.prediction, "x")], tmp_path / "o.png")
    with pytest.raises(GeometryError):
        render_overlay(vol, gt, [OverlayPanel(1, np.zeros((2, 2, 2)), "x")], tmp_path / "o.png")
