"""``ichseg segment`` and ``ichseg replay`` end to end on a tiny scan and a tiny checkpoint."""

from __future__ import annotations

import json

import numpy as np
import torch
from test_interaction_session import TINY, phantom
from typer.testing import CliRunner

from ichseg.cli import app, register_commands
from ichseg.interaction.prompts import GridRef, InteractionRound, PromptSet, Scribble
from ichseg.io.nifti import write_nifti
from ichseg.io.reader import load_mask
from ichseg.io.volume import to_canonical
from ichseg.models.registry import build_model, save_model


def test_segment_then_replay(tmp_path):
    register_commands()
    torch.manual_seed(0)
    ckpt = save_model(build_model("hpinet", "lite", **TINY), tmp_path / "tiny.pt")
    vol, mask = phantom("RAS")
    scan = write_nifti(vol, tmp_path / "scan.nii.gz")
    canon = to_canonical(vol)[0]
    gt = to_canonical(mask)[0].zyx()
    z = int(np.argmax(gt.reshape(gt.shape[0], -1).sum(1)))
    ys, xs = np.nonzero(gt[z])
    sc = Scribble(z, list(zip(ys[:3].tolist(), xs[:3].tolist(), strict=True)), True, 2.0)
    ps = PromptSet(GridRef.from_volume(canon), (InteractionRound(1, (sc,)),))
    prompts = ps.save(tmp_path / "prompts.json")
    out = tmp_path / "mask.nii.gz"
    log = tmp_path / "log.json"
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "segment",
            str(scan),
            "--prompts",
            str(prompts),
            "--out",
            str(out),
            "--weights",
            str(ckpt),
            "--log-out",
            str(log),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "round 1" in res.output and "mL" in res.output
    m = load_mask(out, vol)
    assert m.same_geometry(vol)
    # refuses to overwrite the user's mask
    again = runner.invoke(
        app,
        [
            "segment",
            str(scan),
            "--prompts",
            str(prompts),
            "--out",
            str(out),
            "--weights",
            str(ckpt),
        ],
    )
    assert again.exit_code != 0
    replayed = tmp_path / "replayed.nii.gz"
    res2 = runner.invoke(app, ["replay", str(log), "--out", str(replayed)])
    assert res2.exit_code == 0, res2.output
    assert "warning" not in res2.output
    assert np.array_equal(load_mask(replayed, vol).array, m.array)
    assert json.loads(log.read_text())["model"]["weights_sha256"]
