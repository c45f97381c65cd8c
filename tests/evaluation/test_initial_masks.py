"""Automatic, then corrected: round-0 rows from initial masks in the runner and ``ichseg evaluate``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ichseg.cli import app, register_commands
from ichseg.errors import ConfigError, DatasetLayoutError, OutputPathError
from ichseg.evaluation.interactive import evaluate_interactive, split_initial
from ichseg.evaluation.metrics import dice
from ichseg.interaction.random_walker import RandomWalkerConfig, RandomWalkerEngine
from ichseg.interaction.session import InteractiveSession
from ichseg.io.nifti import read_nifti, write_nifti
from ichseg.io.volume import Volume, make_affine

SHAPE = (40, 40, 10)


def phantom(seed: int) -> tuple[Volume, Volume]:
    rng = np.random.default_rng(seed)
    ii, jj, kk = np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij")
    r2 = ((ii - 19.5) / 18) ** 2 + ((jj - 19.5) / 18) ** 2
    img = np.full(SHAPE, -1000.0)
    img[r2 < 1] = 1000.0
    img[r2 < 0.8] = 35.0
    bleed = ((ii - 15) / 6) ** 2 + ((jj - 22) / 5) ** 2 + ((kk - 5) / 2.2) ** 2 < 1
    img[bleed] = 70.0
    img += rng.normal(0, 2, SHAPE) * (r2 < 0.8)
    vol = Volume(img.astype(np.int16), make_affine((1.0, 1.2, 5.0), "LPS", (3, 4, 5)))
    return vol, vol.as_label(bleed)


def eroded(gt: Volume) -> Volume:
    """An imperfect automatic mask: the GT without its top slices."""
    arr = gt.array.copy()
    arr[:, :, 5:] = 0
    return gt.as_label(arr)


def rw_factory():
    return InteractiveSession(RandomWalkerEngine(RandomWalkerConfig(margin_mm=8.0)))


def test_round0_rows_then_corrections():
    cases = [(f"c{i}", *phantom(i)) for i in range(2)]
    starts = {cid: eroded(gt) for cid, _, gt in cases}
    seen = []

    def initial(case_id, image):
        seen.append(case_id)
        return starts[case_id]

    df = evaluate_interactive(
        rw_factory,
        cases,
        rounds=2,
        method_name="auto+rw",
        initial=initial,
        initial_source="test",
        progress=False,
    )
    assert seen == ["c0", "c1"]
    zero = df[df["round"] == 0]
    assert list(zero["case_id"]) == ["c0", "c1"]
    assert (zero["n_prompts"] == 0).all() and (zero["reason"] == "initial_mask").all()
    for _, row in zero.iterrows():  # round 0 is exactly the initial mask's quality
        gt = dict((c, g) for c, _, g in cases)[row["case_id"]]
        assert row["dice"] == pytest.approx(dice(starts[row["case_id"]].array, gt.array))
    one = df[df["round"] == 1].set_index("case_id")
    assert (one["n_prompts"] > 0).all()
    # the clinician corrected the missing part: better than the automatic mask
    assert (one["dice"].to_numpy() > zero.set_index("case_id")["dice"].to_numpy()).all()
    rest, auto = split_initial(df)
    assert (rest["round"] >= 1).all() and len(auto) == 2


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    register_commands()
    return CliRunner()


def test_cli_evaluate_initial_masks(runner, tiny_physionet, tmp_path):
    masks = tmp_path / "auto"
    masks.mkdir()
    for cid in ("001", "002"):
        gt = read_nifti(tiny_physionet / "masks" / f"{cid}.nii")
        write_nifti(eroded(gt), masks / f"{cid}.nii.gz")
    out = tmp_path / "eval"
    args = ["evaluate", "--data", str(tiny_physionet), "--out", str(out), "--no-progress"]
    args += ["--method", "random_walker:margin_mm=8", "--cases", "001,002", "--rounds", "3"]
    args += ["--initial-masks", str(masks), "--initial-label", "unet"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    auto = pd.read_csv(out / "automatic.csv", dtype={"case_id": str})
    assert set(auto["round"]) == {0} and set(auto["case_id"]) == {"001", "002"}
    assert set(auto["method"]) == {"unet+random_walker"}
    rest = pd.read_csv(out / "results.csv", dtype={"case_id": str})
    assert rest["round"].min() == 1 and set(rest["method"]) == {"unet+random_walker"}
    md = (out / "automatic.md").read_text()
    assert "automatic only (round 0)" in md and "automatic + 1 round" in md
    assert "automatic + 3 rounds" in md and "--initial-masks" in md
    assert "Automatic, then corrected" in (out / "report.md").read_text()
    # an existing run needs --overwrite; a case without a mask is refused before any work
    res = runner.invoke(app, args)
    assert isinstance(res.exception, OutputPathError) and "--overwrite" in str(res.exception)
    (masks / "002.nii.gz").unlink()
    res = runner.invoke(app, [*args, "--overwrite"])
    assert isinstance(res.exception, DatasetLayoutError)
    assert "no mask for case(s) ['002']" in str(res.exception)


def test_cli_evaluate_initial_options_conflict(runner, tiny_physionet, tmp_path):
    args = ["evaluate", "--data", str(tiny_physionet), "--out", str(tmp_path / "e")]
    args += ["--method", "random_walker", "--initial-masks", str(tmp_path)]
    args += ["--initial-model", str(tmp_path / "w.pt")]
    res = runner.invoke(app, args)
    assert isinstance(res.exception, ConfigError)
    assert "either --initial-masks or --initial-model" in str(res.exception)
    assert not Path(tmp_path / "e" / "results.csv").exists()
