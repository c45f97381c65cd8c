"""Iterative training: rounds played by the real engine, correction weights, memory frames,
new-prompt channel, warm start into a wider input, interactive validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models_tiny import TINY32

from ichseg.errors import ConfigError, EmptyMaskError
from ichseg.models.registry import build_model
from ichseg.training.config import TrainConfig
from ichseg.training.data import PreparedCase, SamplerConfig, sample_rng
from ichseg.training.iterative import (
    IterativeConfig,
    build_iterative_sample,
    correction_weights,
    interactive_validation,
    memory_frames,
    play_rounds,
)
from ichseg.training.losses import hpinet_loss
from ichseg.training.trainer import Trainer


def tiny_case(depth: int = 8) -> PreparedCase:
    zz, yy, xx = np.meshgrid(np.arange(depth), np.arange(32), np.arange(32), indexing="ij")
    head = ((yy - 15.5) / 14) ** 2 + ((xx - 15.5) / 14) ** 2 < 1
    bleed = ((yy - 12) / 5) ** 2 + ((xx - 18) / 4) ** 2 + ((zz - depth / 2) / 2.5) ** 2 < 1
    hu = np.where(head, 35.0, -1000.0) + 40.0 * bleed
    image = np.clip((hu - 0.0) / 80.0, 0, 1).astype(np.float32)
    return PreparedCase("c0", image, bleed.astype(np.uint8), (5.0, 1.0, 1.0), hu.astype(np.float16))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("hpinet", "lite", **TINY32, new_prompt_channel=True, hint_sigma_px=1.5)


def test_rounds_accumulate_prompts_and_feed_the_previous_prediction(model):
    case = tiny_case()
    cfg = IterativeConfig(enabled=True, round_probs=(0, 0, 0, 1), auto_start_prob=0.0)
    played = play_rounds(model, case.image, case.mask, case.spacing_zyx, sample_rng(1, 2), cfg)
    assert 1 <= played["rounds"] <= 3
    assert played["new_prompts"] and all(p in played["prompts"] for p in played["new_prompts"])
    assert len(played["prompts"]) > len(played["new_prompts"])  # earlier rounds' prompts kept
    assert played["state"] is not None
    np.testing.assert_array_equal(played["previous"], played["state"].prob)
    assert model.training is True or model.training is False  # restored, whatever it was


def test_no_rounds_means_a_first_round_with_an_empty_previous_mask(model):
    case = tiny_case()
    cfg = IterativeConfig(enabled=True, round_probs=(1.0,), auto_start_prob=0.0)
    played = play_rounds(model, case.image, case.mask, case.spacing_zyx, sample_rng(1, 3), cfg)
    assert played["rounds"] == 0 and played["state"] is None
    assert float(played["previous"].max()) == 0.0
    assert played["prompts"] == played["new_prompts"]


def test_sample_is_deterministic_and_trains(model):
    case = tiny_case()
    sampler = SamplerConfig(num_targets=2, max_distance=2, curriculum_steps=0)
    cfg = IterativeConfig(enabled=True, round_probs=(0.2, 0.3, 0.5))
    a = build_iterative_sample(model, case, sampler, cfg, sample_rng(5, 7), step=0)
    b = build_iterative_sample(model, case, sampler, cfg, sample_rng(5, 7), step=0)
    for key in ("volume", "hints", "new_hints", "prev_mask", "loss_weight"):
        torch.testing.assert_close(a[key], b[key])
    assert a["r_index"] == b["r_index"] and a["k_indices"] == b["k_indices"]
    assert a["new_hints"][0, :, a["r_index"]].sum() > 0  # this round's prompts are on slice r
    model.train()
    out = model(
        a["volume"],
        a["hints"],
        a["prev_mask"],
        a["r_index"],
        a["k_indices"] or [0],
        a["new_hints"],
        a["memory"],
    )
    loss = hpinet_loss(
        out, a["gt"], a["r_index"], a["k_indices"] or [0], voxel_weight=a["loss_weight"]
    )
    loss.total.backward()
    assert torch.isfinite(loss.total)


def test_correction_weights_stress_new_prompts_and_previous_errors():
    gt = np.zeros((3, 16, 16), bool)
    gt[1, 4:10, 4:10] = True
    previous = np.zeros(gt.shape, np.float32)
    previous[1, 4:10, 4:8] = 1.0  # misses columns 8-9
    new = np.zeros((2, *gt.shape), np.uint8)
    new[0, 1, 6, 9] = 1
    cfg = IterativeConfig(correction_weight=3.0, correction_radius_px=2.0)
    w = correction_weights(gt, previous, new, [1], cfg)
    assert w[1, 6, 9] == 4.0 and w[1, 5, 8] == 4.0  # near the new prompt / a previous error
    assert w[1, 15, 0] == 1.0 and (w[0] == 1).all() and (w[2] == 1).all()


def test_memory_frames_exclude_the_corrected_slice_and_respect_the_limit():
    from ichseg.interaction.hpinet_engine import HPINetState

    k, v = torch.zeros(4, 2, 2), torch.ones(6, 2, 2)
    state = HPINetState(
        np.zeros((5, 4, 4), np.float32), {z: (k + z, v) for z in range(4)}, (0, 1, 2, 3)
    )
    keys, values = memory_frames(state, exclude=2, limit=2)
    assert keys.shape == (1, 2, 4, 2, 2) and values.shape == (1, 2, 6, 2, 2)
    assert keys[0, :, 0, 0, 0].tolist() == [1.0, 3.0]  # most recent, without slice 2
    assert memory_frames(None, 0, 3) is None and memory_frames(state, 0, 0) is None


def test_new_prompt_channel_starts_as_a_no_op_after_a_widened_warm_start(tmp_path):
    from ichseg.training.trainer import _widen_input_channels

    torch.manual_seed(0)
    old = build_model("hpinet", "lite", **TINY32)
    torch.manual_seed(1)
    new = build_model("hpinet", "lite", **TINY32, new_prompt_channel=True)
    own = new.state_dict()
    merged = {}
    for key, value in old.state_dict().items():
        if value.shape == own[key].shape:
            merged[key] = value
        else:
            merged[key] = _widen_input_channels(value, own[key])
            assert merged[key] is not None, key
    new.load_state_dict(merged)
    old.eval(), new.eval()
    vol = torch.rand(1, 1, 4, 32, 32)
    hints = torch.zeros(1, 2, 4, 32, 32)
    hints[0, 0, 2, 10:14, 10:14] = 1
    prev = torch.zeros(1, 1, 4, 32, 32)
    with torch.no_grad():
        a = old(vol, hints, prev, 2, [3])
        b = new(vol, hints, prev, 2, [3], hints)
    torch.testing.assert_close(a["sim_logits"], b["sim_logits"])
    torch.testing.assert_close(a["vim_logits"], b["vim_logits"])


def test_interactive_validation_scores_sessions(model):
    out = interactive_validation(model, [tiny_case(), tiny_case(6)], rounds=2, seed=0)
    assert 0.0 <= out["val_dice"] <= 1.0 and 0.0 <= out["val_dice_final"] <= 1.0
    assert 1.0 <= out["val_noc85"] <= 3.0


def iterative_config(data, out, steps: int, **over) -> TrainConfig:
    """A tiny iterative-training run with interactive validation at its last step."""
    base = dict(
        data=str(data),
        out=str(out),
        model_overrides={**TINY32, "new_prompt_channel": True, "hint_sigma_px": 1.0},
        lr=1e-3,
        max_steps=steps,
        val_every=steps,
        ckpt_every=steps,
        log_every=1,
        num_threads=1,
        val_rounds=2,
    )
    return TrainConfig.from_dict({**base, **over})


def test_trainer_runs_iterative_steps_with_interactive_validation(tiny_physionet, tmp_path):
    cfg = iterative_config(
        tiny_physionet,
        tmp_path / "run",
        3,
        seed=3,
        val_at_start=True,
        iterative={"enabled": True, "round_probs": [0.3, 0.7]},
    )
    summary = Trainer(cfg, progress=False).run()
    assert summary["steps"] == 3 and np.isfinite(summary["best_val_dice"])
    log = (tmp_path / "run" / "log.csv").read_text()
    assert "val_noc85" in log.splitlines()[0]
    val_steps = [line.split(",")[0] for line in log.splitlines()[1:] if ",val," in line]
    assert val_steps == ["0", "3"]  # the warm start's own score first
    again = TrainConfig.load(tmp_path / "run" / "config.yaml")
    assert again.iterative.enabled and again.iterative.round_probs == (0.3, 0.7)


def test_shifted_validation_cases_are_fixed_and_changed():
    from ichseg.training.data import shifted_validation_cases

    cases = [tiny_case(), tiny_case(6)]
    dr = {"noise_p": 1.0, "noise_sigma_hu": [20.0, 20.0], "hu_affine_p": 0.0}
    a, applied = shifted_validation_cases(cases, dr, seed=1)
    b, _ = shifted_validation_cases(cases, dr, seed=1)
    assert [c.case_id for c in a] == ["c0", "c0"] and len(applied) == 1  # same id: one entry
    for x, y, orig in zip(a, b, cases, strict=True):
        np.testing.assert_array_equal(x.image, y.image)  # the same draw every validation
        assert not np.array_equal(x.image, orig.image) and x.hu is None
        assert any(name.startswith("add_noise") for name in applied["c0"])
    c, _ = shifted_validation_cases(cases, dr, seed=2)
    assert not np.array_equal(a[0].image, c[0].image)
    with pytest.raises(EmptyMaskError, match="without HU"):
        shifted_validation_cases(
            [PreparedCase("x", cases[0].image, cases[0].mask, (5, 1, 1))], dr, 0
        )


def test_val_shifted_needs_interactive_validation_and_known_fields():
    base = dict(data="d", val_rounds=2)
    with pytest.raises(ConfigError, match="val_rounds"):
        TrainConfig.from_dict({**base, "val_rounds": 0, "val_shifted": {}}).validate()
    with pytest.raises(ConfigError, match="val_shifted"):
        TrainConfig.from_dict({**base, "val_shifted": {"no_such_p": 0.5}}).validate()
    with pytest.raises(ConfigError, match="probability"):
        TrainConfig.from_dict({**base, "val_shifted": {"noise_p": 2.0}}).validate()
    TrainConfig.from_dict({**base, "val_shifted": {"noise_p": 1.0}}).validate()


def test_trainer_selects_on_clean_and_shifted_validation(tiny_physionet, tmp_path):
    cfg = iterative_config(
        tiny_physionet,
        tmp_path / "run",
        2,
        val_shifted={"noise_p": 1.0, "noise_sigma_hu": [30.0, 30.0]},
        iterative={"enabled": True, "round_probs": [1.0]},
    )
    Trainer(cfg, progress=False).run()
    import csv
    import json

    rows = [r for r in csv.DictReader((tmp_path / "run" / "log.csv").open()) if r["kind"] == "val"]
    assert len(rows) == 1
    clean, shifted = float(rows[0]["val_dice_clean"]), float(rows[0]["val_dice_shifted"])
    assert float(rows[0]["val_dice"]) == pytest.approx(0.5 * (clean + shifted))
    applied = json.loads((tmp_path / "run" / "val_shifted.json").read_text())
    assert applied and all(any(n.startswith("add_noise") for n in v) for v in applied.values())
