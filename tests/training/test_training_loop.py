"""Training: losses, sampler determinism, loss decrease, exact resume, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from models_tiny import TINY32 as TINY
from typer.testing import CliRunner

from ichseg.cli import app, register_commands
from ichseg.errors import ConfigError
from ichseg.models.registry import build_model
from ichseg.training.config import TrainConfig
from ichseg.training.data import (
    PreparedCase,
    SamplerConfig,
    build_sample,
    choose_targets,
    sample_rng,
)
from ichseg.training.losses import LossWeights, hpinet_loss, soft_dice_loss
from ichseg.training.trainer import Trainer


def tiny_cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        data=str(data),
        out=str(out),
        model_overrides=dict(TINY),
        lr=1e-3,
        max_steps=6,
        val_every=3,
        ckpt_every=3,
        log_every=1,
        num_threads=1,
        seed=3,
    )
    base.update(kw)
    return TrainConfig.from_dict(base)


def test_soft_dice_perfect_and_wrong():
    gt = torch.zeros(1, 1, 8, 8)
    gt[..., 2:6, 2:6] = 1
    good = gt * 40 - 20
    assert soft_dice_loss(good, gt) < 1e-3
    assert soft_dice_loss(-good, gt) > 0.9


def test_loss_weights_and_terms():
    gt = torch.zeros(1, 1, 4, 8, 8)
    gt[:, :, 1:3, 2:6, 2:6] = 1
    perfect = gt * 40 - 20
    outputs = {
        "vim_logits": perfect[:, :, :, ::2, ::2],
        "sim_logits": perfect[:, :, 1],
        "mpffm_logits": [perfect[:, :, 2], -perfect[:, :, 3] * 0 - 20],
        "fcm_aux_logits": [[perfect[:, :, 2]], [-perfect[:, :, 3] * 0 - 20]],
    }
    b = hpinet_loss(outputs, gt, 1, [2, 3])
    assert float(b.total) < 0.05
    bad = dict(outputs, sim_logits=-perfect[:, :, 1])
    w_slice = LossWeights(volume=0, slice=1, fcm=0)
    w_none = LossWeights(volume=0, slice=0, fcm=1)
    assert float(hpinet_loss(bad, gt, 1, [2, 3], w_slice).total) > 0.2
    assert float(hpinet_loss(bad, gt, 1, [2, 3], w_none).total) < 0.05
    code = LossWeights.preset("code")
    assert (code.volume, code.slice, code.fcm, code.ce) == (4.0, 5.0, 1.0, 0.0)
    with pytest.raises(ConfigError):
        LossWeights(dice=0, ce=0)


def test_choose_targets_walks_one_direction():
    rng = np.random.default_rng(0)
    for _ in range(50):
        t = choose_targets(5, 12, 2, 3, rng)
        steps = np.diff([5, *t])
        assert len(t) == 2 and (np.all(steps > 0) or np.all(steps < 0))
        assert np.all(np.abs(steps) <= 3)
    assert choose_targets(0, 1, 2, 3, rng) == []
    assert all(k > 0 for k in choose_targets(0, 8, 2, 1, rng))


def _prepared() -> PreparedCase:
    img = np.full((10, 32, 32), 0.4, np.float32)
    mask = np.zeros((10, 32, 32), np.uint8)
    mask[3:7, 10:20, 12:22] = 1
    img[mask > 0] = 0.9
    return PreparedCase("x", img, mask, (5.0, 0.9, 0.9))


def test_sample_is_pure_function_of_seed_and_step():
    case = _prepared()
    a = build_sample(case, SamplerConfig(), sample_rng(1, 5), 5)
    b = build_sample(case, SamplerConfig(), sample_rng(1, 5), 5)
    c = build_sample(case, SamplerConfig(), sample_rng(1, 6), 6)
    assert torch.equal(a["hints"], b["hints"]) and a["k_indices"] == b["k_indices"]
    assert a["r_index"] in range(3, 7)  # the prompt lies on a hemorrhage slice
    assert a["hints"][0, :, a["r_index"]].sum() > 0
    assert not (torch.equal(a["hints"], c["hints"]) and torch.equal(a["prev_mask"], c["prev_mask"]))


def test_training_steps_reduce_loss():
    torch.manual_seed(0)
    model = build_model("hpinet", "lite", **TINY)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    s = build_sample(_prepared(), SamplerConfig(), sample_rng(0, 0), 0)
    losses = []
    for _ in range(25):
        out = model(s["volume"], s["hints"], s["prev_mask"], s["r_index"], s["k_indices"])
        loss = hpinet_loss(out, s["gt"], s["r_index"], s["k_indices"]).total
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])


def test_resume_reproduces_uninterrupted_run(tiny_physionet, tmp_path):
    full = Trainer(tiny_cfg(tiny_physionet, tmp_path / "full", max_steps=5), progress=False)
    full.run()
    part = Trainer(tiny_cfg(tiny_physionet, tmp_path / "part", max_steps=3), progress=False)
    part.run()
    resumed = Trainer(tiny_cfg(tiny_physionet, tmp_path / "part", max_steps=5), progress=False)
    resumed.run()
    assert resumed.step == 5
    train_rows = [r for r in full.history if r["kind"] == "train"]
    resumed_rows = [r for r in resumed.history if r["kind"] == "train"]
    assert [r["step"] for r in resumed_rows] == [4, 5]
    for a, b in zip(train_rows[3:], resumed_rows, strict=True):
        assert a["loss"] == b["loss"]
    for (n1, p1), (_, p2) in zip(
        full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(p1, p2), n1
    assert (tmp_path / "part" / "best.pt").exists() and (tmp_path / "part" / "log.csv").exists()


def test_resume_after_a_kill_logs_each_step_once(tiny_physionet, tmp_path):
    import csv

    run = tmp_path / "killed"
    Trainer(tiny_cfg(tiny_physionet, run, max_steps=3), progress=False).run()
    log = run / "log.csv"
    with log.open() as fh:
        rows = list(csv.DictReader(fh))
    # the killed process had logged step 4 after its last checkpoint (step 3)
    with log.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writerow({**rows[-1], "step": "4", "kind": "train", "loss": "99"})
    Trainer(tiny_cfg(tiny_physionet, run, max_steps=5), progress=False).run()
    with log.open() as fh:
        again = [(r["step"], r["kind"]) for r in csv.DictReader(fh)]
    assert len(again) == len(set(again))
    assert ("4", "train") in again and ("5", "train") in again
    with log.open() as fh:
        assert "99" not in [r["loss"] for r in csv.DictReader(fh)]


def test_config_yaml_round_trip_and_errors(tmp_path):
    cfg = tiny_cfg(Path("d"), tmp_path, loss=LossWeights.preset("code"))
    path = cfg.save(tmp_path / "c.yaml")
    again = TrainConfig.load(path)
    assert again == cfg
    with pytest.raises(ConfigError):
        TrainConfig.from_dict({"nonsense": 1})
    with pytest.raises(ConfigError):
        TrainConfig(data="x", fold=7).validate()


def test_cli_train_runs_a_fold(tiny_physionet, tmp_path):
    register_commands()
    args = [
        "train",
        "--data",
        str(tiny_physionet),
        "--out",
        str(tmp_path / "run"),
        "--steps",
        "2",
        "--val-every",
        "2",
        "--threads",
        "1",
        "--no-progress",
        "--loss-weights",
        "1,3,6",
        "--dice-ce",
        "1,0",
    ]
    for k, v in TINY.items():
        args += ["--set", f"{k}={v}"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "best validation Dice" in res.output
    assert (tmp_path / "run" / "last.pt").exists()
    saved = TrainConfig.load(tmp_path / "run" / "config.yaml").loss
    assert (saved.volume, saved.slice, saved.fcm, saved.dice, saved.ce) == (1, 3, 6, 1, 0)
    bad = CliRunner().invoke(app, [*args, "--loss-weights", "1,2"])
    assert bad.exit_code != 0
    png = tmp_path / "curves.png"
    res = CliRunner().invoke(
        app, ["training-curves", f"run={tmp_path / 'run' / 'log.csv'}", "--out", str(png)]
    )
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_export_weights_loads_for_inference(tiny_physionet, tmp_path):
    from ichseg.models.registry import load_model
    from ichseg.training.export import export_weights

    tr = Trainer(tiny_cfg(tiny_physionet, tmp_path / "run", max_steps=2, val_every=2), False)
    tr.run()
    facts = export_weights(tmp_path / "run" / "best.pt", tmp_path / "w.pt", half=True)
    assert facts["step"] == 2
    model, cfg = load_model(tmp_path / "w.pt")
    assert cfg.slice_size == 32
    for (name, a), b in zip(
        model.state_dict().items(), tr.model.state_dict().values(), strict=True
    ):
        assert torch.allclose(a.float(), b.float(), atol=1e-2, rtol=1e-2), name
    assert (tmp_path / "w.json").exists()


def test_training_seconds_sums_resumed_segments():
    from ichseg.training.export import training_seconds

    assert training_seconds([10.0, 20.0, 30.0]) == 30.0
    # an old-style log restarting at zero after a resume: 30 s + 25 s
    assert training_seconds([10.0, 30.0, 5.0, 25.0]) == 55.0


def test_resume_keeps_counting_training_seconds(tiny_physionet, tmp_path):
    part = Trainer(tiny_cfg(tiny_physionet, tmp_path / "r", max_steps=2), progress=False)
    part.run()
    first = [r["seconds"] for r in part.history][-1]
    resumed = Trainer(tiny_cfg(tiny_physionet, tmp_path / "r", max_steps=3), progress=False)
    resumed.run()
    assert resumed.history[0]["seconds"] >= first


def test_init_from_warm_starts_an_ablation_variant(tiny_physionet, tmp_path):
    full = Trainer(tiny_cfg(tiny_physionet, tmp_path / "full", max_steps=1), progress=False)
    full.run()
    variant = Trainer(
        tiny_cfg(
            tiny_physionet,
            tmp_path / "slice",
            max_steps=1,
            init_from=str(tmp_path / "full" / "last.pt"),
            model_overrides={**TINY, "propagation": "slice"},
        ),
        progress=False,
    )
    variant.setup()
    assert variant.step == 0
    own = variant.model.state_dict()
    src = full.model.state_dict()
    shared = [k for k in own if k in src and own[k].shape == src[k].shape]
    assert shared and len(shared) < len(src)  # the slice variant has no VIM/FCM
    assert any(k in src and own[k].shape != src[k].shape for k in own)  # decoder w/o F_k
    for k in shared:
        assert torch.equal(own[k], src[k]), k
    import json

    facts = json.loads((tmp_path / "slice" / "init.json").read_text())
    assert facts["loaded"] == len(shared) and facts["skipped"] == len(src) - len(shared)
    with pytest.raises(ConfigError, match="not found"):
        Trainer(
            tiny_cfg(tiny_physionet, tmp_path / "x", init_from=str(tmp_path / "nope.pt")), False
        ).setup()


def test_cli_config_values_are_not_overridden_by_cli_defaults(tiny_physionet, tmp_path):
    register_commands()
    cfg = tiny_cfg(tiny_physionet, tmp_path / "unused", fold=1, max_steps=1, val_every=1)
    cfg.sampler = SamplerConfig(previous_mask_probs={"zero": 0.5, "noisy": 0.5})
    path = cfg.save(tmp_path / "recipe.yaml")
    res = CliRunner().invoke(
        app, ["train", "--config", str(path), "--out", str(tmp_path / "run"), "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    saved = TrainConfig.load(tmp_path / "run" / "config.yaml")
    assert saved.fold == 1 and saved.model_overrides == TINY
    assert saved.sampler.previous_mask_probs == {"zero": 0.5, "noisy": 0.5}


def test_previous_mask_probs_reach_the_sampler():
    case = _prepared()
    only_zero = SamplerConfig(previous_mask_probs={"zero": 1.0})
    only_noisy = SamplerConfig(previous_mask_probs={"noisy": 1.0})
    for step in range(4):
        assert build_sample(case, only_zero, sample_rng(0, step), step)["info"]["prev_mode"] == (
            "zero"
        )
        assert build_sample(case, only_noisy, sample_rng(0, step), step)["info"]["prev_mode"] == (
            "noisy"
        )
