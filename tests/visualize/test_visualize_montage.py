"""PNG montages: slice picking, display ranges, size, overlays, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ichseg.cli import app, register_commands
from ichseg.errors import ConfigError, GeometryError, InputFileError
from ichseg.io.nifti import write_nifti
from ichseg.io.volume import Intensity, Volume, Window, make_affine, reorient
from ichseg.visualize.montage import pick_slices, render_montage

REAL = Path("/work/shared/data/real/case166")


def head(shape: tuple[int, int, int] = (48, 40, 10)) -> tuple[Volume, Volume]:
    ii, jj, kk = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    r = ((ii - shape[0] / 2) / 20) ** 2 + ((jj - shape[1] / 2) / 17) ** 2
    img = np.where(r < 1, 30, -1000).astype(np.int16)
    img[r > 0.8] = np.where(r[r > 0.8] < 1, 1500, -1000)
    lesion = (((ii - 22) / 5) ** 2 + ((jj - 18) / 4) ** 2 < 1) & (kk >= 4) & (kk <= 5)
    img[lesion] = 65
    aff = make_affine((0.8, 0.8, 5.0), "LPS", (10.0, -5.0, 20.0))
    vol = Volume(img, aff, Intensity.hu())
    return vol, vol.as_label(lesion.astype(np.uint8) * 2)


def test_pick_slices() -> None:
    m = np.zeros((4, 4, 20), bool)
    m[..., 8:11] = True
    assert pick_slices(m, 5, 20) == [7, 8, 9, 10, 11]
    got = pick_slices(m, 9, 20)
    assert len(got) == 9 and set(range(7, 12)) <= set(got)
    m[..., 2:18] = True
    got = pick_slices(m, 6, 20)
    assert len(got) == 6 and got[0] == 1 and got[-1] == 18 and 2 in got and 17 in got
    assert pick_slices(None, 4, 20) == [0, 6, 13, 19]
    assert pick_slices(np.zeros((2, 2, 3), bool), 12, 3) == [0, 1, 2]
    with pytest.raises(ConfigError):
        pick_slices(None, 0, 5)


def test_render_montage_size_and_overlay(tmp_path: Path) -> None:
    vol, mask = head()
    out = render_montage(vol, mask, tmp_path / "m.png", n_slices=6, panel_px=100, title="t")
    im = np.asarray(Image.open(out).convert("RGB"))
    assert im.shape[:2] == (2 * 100 + 28, 4 * 100)
    # the subtype-2 (yellow) outline is drawn, the picture is not blank
    yellowish = (im[..., 0] > 200) & (im[..., 1] > 180) & (im[..., 2] < 90)
    assert yellowish.sum() > 5
    plain = render_montage(vol, None, tmp_path / "p.png", n_slices=3, panel_px=64)
    assert np.asarray(Image.open(plain)).shape[:2] == (64, 3 * 64)


def test_render_montage_reorients_and_checks(tmp_path: Path) -> None:
    vol, mask = head()
    ras, _ = reorient(vol, "RAS")
    ras_mask, _ = reorient(mask, "RAS")
    a = np.asarray(Image.open(render_montage(vol, mask, tmp_path / "a.png", panel_px=64)))
    b = np.asarray(Image.open(render_montage(ras, ras_mask, tmp_path / "b.png", panel_px=64)))
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() < 1.0
    with pytest.raises(GeometryError):
        render_montage(ras, mask, tmp_path / "c.png")
    with pytest.raises(ConfigError, match="window"):
        render_montage(vol, None, tmp_path / "d.png", window=(40, 0))
    with pytest.raises(InputFileError, match="png"):
        render_montage(vol, None, tmp_path / "d.jpg")


def test_windowed_input_uses_stored_range(tmp_path: Path) -> None:
    vol, _ = head()
    win = vol.with_array(
        np.clip((vol.array - 0) * 255 // 80, 0, 255).astype(np.int16),
        Intensity.windowed(Window(40, 80)),
    )
    out = render_montage(win, None, tmp_path / "w.png", n_slices=2, panel_px=64)
    assert out.stat().st_size > 500


def test_cli_montage(tmp_path: Path) -> None:
    vol, mask = head()
    write_nifti(vol, tmp_path / "img.nii.gz")
    write_nifti(mask, tmp_path / "mask.nii.gz")
    register_commands()
    runner = CliRunner()
    out = tmp_path / "o.png"
    res = runner.invoke(
        app,
        [
            "montage",
            str(tmp_path / "img.nii.gz"),
            "--mask",
            str(tmp_path / "mask.nii.gz"),
            "--out",
            str(out),
            "--slices",
            "4",
            "--window",
            "40,400",
        ],
    )
    assert res.exit_code == 0, res.output
    assert np.asarray(Image.open(out)).shape[:2] == (256 + 28, 4 * 256)
    res = runner.invoke(app, ["montage", str(tmp_path / "img.nii.gz"), "--window", "40"])
    assert isinstance(res.exception, ConfigError)
    res = runner.invoke(app, ["montage", str(tmp_path / "img.nii.gz"), "--slices", "x"])
    assert isinstance(res.exception, ConfigError)


@pytest.mark.skipif(not REAL.is_dir(), reason="real case166 not available")
def test_montage_of_real_windowed_case(tmp_path: Path) -> None:
    from ichseg.io.reader import load_mask, load_volume

    vol = load_volume(REAL / "image.nii.gz")
    mask = load_mask(REAL / "mask.nii.gz", reference=vol)
    out = render_montage(vol, mask, tmp_path / "r.png", n_slices=8, panel_px=96)
    im = np.asarray(Image.open(out).convert("RGB"))
    assert im.shape[:2] == (2 * 96, 4 * 96)
    red = (im[..., 0] > 200) & (im[..., 1] < 80) & (im[..., 2] < 80)
    assert red.sum() > 10
