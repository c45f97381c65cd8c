"""Trainer of the MONAI baselines: sampler, exact resume, checkpoints, budget, CV, CLI, DDP."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ichseg.cli import app, main, register_commands
from ichseg.errors import ConfigError
from ichseg.models.registry import load_model, read_state
from ichseg.training import tasks
from ichseg.training.automatic import (
    AutomaticTrainer,
    Config,
    ResampledCase,
    crop_patch,
    cross_validate,
    draw_batch,
    sample_rng,
    segmentation_loss,
    train,
)
from ichseg.training.export import export_weights

TINY_UNET = {
    "channels": [4, 8],
    "strides": [2],
    "num_res_units": 0,
    "patch_size": [16, 16, 8],
    "target_spacing": [1.8, 1.8, 5.0],
}


def tiny_cfg(data: Path, out: Path, **kw) -> Config:
    base = dict(
        data=str(data),
        out=str(out),
        model="unet",
        model_overrides=dict(TINY_UNET),
        folds=3,
        max_steps=3,
        val_every=2,
        log_every=1,
        ckpt_every=1,
        num_threads=1,
        seed=3,
        device="cpu",
        cache_dir=str(out.parent / "cache"),
    )
    base.update(kw)
    return Config.from_dict(base)


def weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_tasks_map_models_to_trainers():
    for name in ("unet", "vnet", "segresnet", "attention_unet", "unetr", "swin_unetr"):
        assert tasks.trainer_module_name(name) == "ichseg.training.automatic"
    assert tasks.trainer_module_name("munet") == "ichseg.training.munet"
    assert tasks.trainer_module_name("hpinet") == "ichseg.training.trainer"
    auto = tasks.trainer_for("unet")
    assert auto.Config is Config and not auto.is_hpinet
    hp = tasks.trainer_for("hpinet")
    assert hp.is_hpinet and hp.Config.__name__ == "TrainConfig"


def test_sampler_balances_and_pads():
    hu = np.full((20, 20, 6), 30.0, dtype=np.float16)
    mask = np.zeros((20, 20, 6), np.uint8)
    mask[2:4, 2:4, 1:3] = 1
    case = ResampledCase("a", hu, mask, np.eye(4), np.flatnonzero(mask))
    kw = dict(
        patch=(8, 8, 8),
        batch_cases=2,
        crops_per_case=3,
        flip_prob=0.5,
        clip=(0.0, 100.0),
        mean=50.0,
        std=10.0,
    )
    x, y = draw_batch([case], sample_rng(0, 5), pos_fraction=1.0, **kw)
    assert x.shape == (6, 1, 8, 8, 8) and y.shape == x.shape
    assert all(float(y[b].sum()) > 0 for b in range(6))  # every positive crop holds the bleed
    x2, _ = draw_batch([case], sample_rng(0, 5), pos_fraction=1.0, **kw)
    assert torch.equal(x, x2)  # a pure function of (seed, step)
    # depth 6 < 8: padded with air, which the clip maps to (0 - 50) / 10
    assert float(x.min()) == pytest.approx(-5.0) and float(x.max()) == pytest.approx(-2.0)
    img, m = crop_patch(case, (0, 0, 0), (8, 8, 8), air_hu=-1000.0)
    assert img.shape == (8, 8, 8) and m[:, :, 1:7].sum() == mask[:8, :8].sum()


def test_three_steps_resume_exactly_and_checkpoints(tiny_physionet, tmp_path):
    full = AutomaticTrainer(tiny_cfg(tiny_physionet, tmp_path / "full"), progress=False)
    res = full.run()
    assert res["steps"] == 3 and np.isfinite(res["best_val_dice"])
    out = tmp_path / "full"
    stats = json.loads((out / "intensity_stats.json").read_text())
    assert full.model.config["clip"] == stats["clip"] and full.model.config["std"] == stats["std"]
    with (out / "log.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["kind"] for r in rows].count("train") == 3
    assert {"step", "kind", "loss", "val_dice", "lr", "seconds"} <= set(rows[0])

    part = tmp_path / "part"
    train(tiny_cfg(tiny_physionet, part, max_steps=2), progress=False)
    resumed = AutomaticTrainer(tiny_cfg(tiny_physionet, part, max_steps=3), progress=False)
    resumed.setup()
    assert resumed.step == 2
    resumed.run()
    for a, b in zip(weights(full.model), weights(resumed.model), strict=True):
        assert torch.equal(a, b)

    # best.pt / last.pt are registry checkpoints, weights-only readable, exportable
    state = read_state(out / "last.pt")
    assert {"optimizer", "scheduler", "rng", "step", "train_config"} <= set(state)
    _, cfg = load_model(out / "best.pt")
    assert cfg["patch_size"] == [16, 16, 8] and cfg["clip"] == stats["clip"]
    facts = export_weights(out / "best.pt", tmp_path / "w.pt")
    assert facts["step"] in (2, 3)
    load_model(tmp_path / "w.pt")


def test_wall_clock_budget_stops_the_run(tiny_physionet, tmp_path):
    res = train(tiny_cfg(tiny_physionet, tmp_path / "b", max_minutes=1e-9), progress=False)
    assert res["stopped"] == "max_minutes" and res["steps"] == 0
    assert (tmp_path / "b" / "last.pt").exists()


def test_cross_validation_folders(tiny_physionet, tmp_path):
    results = cross_validate(tiny_cfg(tiny_physionet, tmp_path / "cv", max_steps=1), folds=[1])
    assert [r["fold"] for r in results] == [1]
    assert (tmp_path / "cv" / "fold1" / "best.pt").exists()
    assert (tmp_path / "cv" / "splits.json").exists()


def test_bad_config_values():
    with pytest.raises(ConfigError, match="unknown training option"):
        Config.from_dict({"loss_weights": [1, 2]})
    with pytest.raises(ConfigError, match="automatic trainer"):
        Config(data="x", model="hpinet").validate()
    with pytest.raises(ConfigError, match="max_minutes"):
        Config(data="x", max_minutes=0).validate()
    with pytest.raises(ConfigError, match="loss must be one of dice, dice_ce"):
        Config(data="x", loss="focal").validate()


def test_dice_ce_adds_binary_cross_entropy_to_the_dice_loss():
    logits = torch.tensor([[[[[2.0, -1.0], [0.5, -3.0]]]]])  # (1, 1, 1, 2, 2)
    target = torch.tensor([[[[[1.0, 0.0], [0.0, 0.0]]]]])
    dice = segmentation_loss("dice")(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    expected_dice = 1 - (2 * inter + 1e-5) / (p.sum() + target.sum() + 1e-5)
    assert float(dice) == pytest.approx(float(expected_dice), abs=1e-5)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    both = segmentation_loss("dice_ce")(logits, target)
    assert float(both) == pytest.approx(float(expected_dice + bce), abs=1e-5)


def test_cli_trains_unet_and_refuses_hpinet_options(tiny_physionet, tmp_path):
    register_commands()
    runner = CliRunner()
    sets = [f"--set={k}={json.dumps(v)}" for k, v in TINY_UNET.items()]
    common = ["train", "--model", "unet", "--data", str(tiny_physionet), "--threads", "1"]
    res = runner.invoke(
        app,
        [
            *common,
            "--out",
            str(tmp_path / "cli"),
            "--steps",
            "2",
            "--val-every",
            "2",
            "--device",
            "cpu",
            "--no-progress",
            *sets,
        ],
    )
    assert res.exit_code == 0, res.output
    assert "2 steps" in res.output and (tmp_path / "cli" / "best.pt").exists()
    saved = Config.load(tmp_path / "cli" / "config.yaml")
    assert saved.model == "unet" and saved.model_overrides["channels"] == [4, 8]


def test_cli_wrong_option_is_one_line_exit_2(tiny_physionet, tmp_path, capsys):
    args = ["train", "--model", "unet", "--data", str(tiny_physionet), "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--loss-weights", "1,1,1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --loss-weights is an HPINet training option") and "\n" not in err
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", str(tiny_physionet), "--max-minutes", "3"])
    assert exc.value.code == 2
    assert "--max-minutes is not available for model 'hpinet'" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_stay_in_sync(tiny_physionet, tmp_path, torchrun_two_ranks):
    cfg = tiny_cfg(tiny_physionet, tmp_path / "ddp", max_steps=2).to_dict()
    auto = "ichseg.training.automatic"
    ranks = torchrun_two_ranks(f"{auto}:Config", f"{auto}:AutomaticTrainer", cfg)
    assert all(r[2] == 2 for r in ranks)
    assert (tmp_path / "ddp" / "last.pt").exists()
