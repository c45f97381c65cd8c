"""Training-memory estimate: fake-tensor peak equals the real CPU peak; checkpointing helps."""

from __future__ import annotations

import pytest
from models_tiny import TINY as MODELS_TINY

from ichseg.errors import ConfigError
from ichseg.training.memory import estimate_training_memory

TINY = {
    **MODELS_TINY,
    # one block per stage: the tracker's cost grows with ops x modules
    "sim_layers": [1, 1, 1, 1],
    "key_layers": [1, 1, 1],
    "value_layers": [1, 1, 1],
}


def _estimate(**kw):
    return estimate_training_memory("lite", overrides=TINY, **kw)


def test_fake_estimate_matches_real_cpu_step() -> None:
    fake = _estimate(amp=False, checkpointing=False, fake=True)
    real = _estimate(amp=False, checkpointing=False, fake=False)
    assert fake.input_zyx == (7, 48, 48) and fake.targets == 2
    assert real.peak_gib > 0
    assert fake.peak_gib == pytest.approx(real.peak_gib, rel=0.05)
    assert fake.parameters_gib == pytest.approx(real.parameters_gib, rel=1e-6)
    # Adam keeps two moments per parameter
    assert fake.optimizer_gib == pytest.approx(2 * fake.parameters_gib, rel=0.01)


def test_checkpointing_shrinks_activations() -> None:
    plain = _estimate(amp=False, checkpointing=False)
    ckpt = _estimate(amp=False, checkpointing=True)
    assert ckpt.activations_gib < 0.8 * plain.activations_gib
    assert ckpt.parameters_gib == pytest.approx(plain.parameters_gib)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ConfigError, match="targets"):
        _estimate(targets=0)
    with pytest.raises(ConfigError, match="depth 2"):
        _estimate(depth=2)
