"""The composed HPINet: forward_train shapes, inference API, ablation switches, config, presets."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from models_tiny import TINY, tiny_inputs, tiny_model

from ichseg.errors import ConfigError, DimensionalityError, GeometryError, PromptError
from ichseg.interaction.hints import HINT_NEGATIVE, HINT_POSITIVE
from ichseg.models import hpinet as hpinet_mod
from ichseg.models.hpinet import HPINet, HPINetConfig, MemoryBank

torch.set_num_threads(1)


def total_mpffm_loss(out: dict[str, Any]) -> torch.Tensor:
    return sum(lg.sum() for lg in out["mpffm_logits"])  # type: ignore[return-value]


def grad_norm(module: torch.nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


@pytest.mark.parametrize("depth", [7, 13])
def test_forward_train_shapes(depth: int) -> None:
    model = tiny_model().train()
    vol, hints, prev = tiny_inputs(depth)
    out = model.forward_train(vol, hints, prev, 3, [4, 5])
    assert out["vim_logits"].shape == (1, 1, depth, 24, 24)
    assert out["sim_logits"].shape == (1, 1, 48, 48)
    assert len(out["mpffm_logits"]) == 2 and len(out["fcm_aux_logits"]) == 2
    for lg in out["mpffm_logits"]:
        assert lg.shape == (1, 1, 48, 48)
    for aux in out["fcm_aux_logits"]:
        assert [a.shape for a in aux] == [(1, 1, 48, 48)] * 2
    loss = out["vim_logits"].mean() + out["sim_logits"].mean() + total_mpffm_loss(out)
    loss.backward()
    assert all(p.grad is not None for p in model.vim.parameters())


def test_batch_of_two_matches_single_items() -> None:
    model = tiny_model().eval()
    v1, h1, p1 = tiny_inputs(seed=1)
    v2, h2, p2 = tiny_inputs(seed=2)
    with torch.no_grad():
        both = model(torch.cat([v1, v2]), torch.cat([h1, h2]), torch.cat([p1, p2]), 3, [2, 1])
        one = model(v2, h2, p2, 3, [2, 1])
    torch.testing.assert_close(
        both["mpffm_logits"][1][1:], one["mpffm_logits"][1], atol=1e-4, rtol=1e-4
    )
    torch.testing.assert_close(both["fcm_aux_logits"][1][0][1:], one["fcm_aux_logits"][1][0])


def test_gradient_flows_through_soft_slice_masks() -> None:
    """The first target's loss reaches the SIM only through sigmoid(M_r) -> value encoder."""
    model = tiny_model().train()
    vol, hints, prev = tiny_inputs()
    out = model.forward_train(vol, hints, prev, 3, [4, 5])
    out["mpffm_logits"][0].sum().backward()
    assert grad_norm(model.sim) > 0
    model.zero_grad(set_to_none=True)
    out = model.forward_train(vol, hints, prev, 3, [4, 5])
    out["mpffm_logits"][1].sum().backward()  # through M_k1 as memory of k2 as well
    assert grad_norm(model.sim) > 0


def test_eval_is_deterministic_with_dropout() -> None:
    model = tiny_model(vim_dropout=0.5)
    vol, hints, prev = tiny_inputs()
    model.train()
    with torch.no_grad():
        a = model(vol, hints, prev, 3, [4])["vim_logits"]
        b = model(vol, hints, prev, 3, [4])["vim_logits"]
    assert not torch.equal(a, b)
    model.eval()
    with torch.no_grad():
        c = model(vol, hints, prev, 3, [4])
        d = model(vol, hints, prev, 3, [4])
    for key in ("vim_logits", "sim_logits"):
        assert torch.equal(c[key], d[key])
    assert torch.equal(c["mpffm_logits"][0], d["mpffm_logits"][0])


def test_hint_channels_and_vim_input_downsampling() -> None:
    assert (HINT_POSITIVE, HINT_NEGATIVE) == (0, 1)
    assert hpinet_mod.HINT_POSITIVE == HINT_POSITIVE
    model = tiny_model()
    vol, _, prev = tiny_inputs()
    hints = torch.zeros(1, 2, 7, 48, 48)
    hints[0, HINT_POSITIVE, 2, 11, 5:30] = 1.0  # a 1-px positive stroke on an odd row
    hints[0, HINT_NEGATIVE, 4, 3, 3] = 1.0
    x = model.vim_input(vol, hints, prev)
    assert x.shape == (1, 4, 7, 24, 24)
    assert x[0, 1, 2].sum() > 0 and x[0, 1, 2, 5].max() == 1.0  # stroke survives max-pooling
    assert x[0, 2, 4, 1, 1] == 1.0 and x[0, 2, 2].sum() == 0
    torch.testing.assert_close(x[:, :1], F.avg_pool3d(vol, (1, 2, 2)))
    torch.testing.assert_close(x[:, 3:], F.avg_pool3d(prev, (1, 2, 2)))


def test_inference_api_reproduces_forward_train() -> None:
    """run_vim / run_sim / encode_key / encode_value / fcm_features / propagate_step compose to
    exactly what forward_train computes."""
    model = tiny_model().eval()
    vol, hints, prev = tiny_inputs()
    r, ks = 3, [4, 5]
    with torch.no_grad():
        ref = model.forward_train(vol, hints, prev, r, ks)
        vim_prob, feats = model.run_vim(vol, hints, prev)
        torch.testing.assert_close(vim_prob, torch.sigmoid(ref["vim_logits"]))
        assert model.vim_to_slices(vim_prob, (48, 48)).shape == (1, 1, 7, 48, 48)
        slices = vol[0].transpose(0, 1)  # (D, 1, H, W)
        keys = model.encode_key(slices)  # every slice at once, as an engine caches them
        sim = model.run_sim(vol[:, :, r], hints[:, :, r], prev[:, :, r])
        torch.testing.assert_close(sim, ref["sim_logits"])
        bank = MemoryBank.from_frame(
            keys.index(r).key,
            model.encode_value(vol[:, :, r], torch.sigmoid(sim), keys.index(r)),
            r,
        )
        fcm = model.fcm_features(feats, ks, (48, 48))
        lg0 = model.propagate_step(bank, keys.index(ks[0]), [f[:1] for f in fcm.features], (48, 48))
        torch.testing.assert_close(lg0, ref["mpffm_logits"][0], atol=1e-5, rtol=1e-4)
        v0 = model.encode_value(vol[:, :, ks[0]], torch.sigmoid(lg0), keys.index(ks[0]))
        bank2 = bank.add(keys.index(ks[0]).key, v0, ks[0])
        assert len(bank2) == 2 and bank2.frames == [r, ks[0]] and len(bank) == 1
        readout = model.read_memory(bank2.keys, bank2.values, keys.index(ks[1]).key)
        lg1 = model.decode(readout, keys.index(ks[1]), [f[1:] for f in fcm.features], (48, 48))
        torch.testing.assert_close(lg1, ref["mpffm_logits"][1], atol=1e-5, rtol=1e-4)
        with pytest.raises(ConfigError, match="fuses"):
            model.decode(readout, keys.index(ks[1]), None, (48, 48))


# ------------------------------------------------------------------------------ ablations
def test_volume_propagation_uses_only_the_vim() -> None:
    model = tiny_model(propagation="volume").eval()
    assert model.sim is None and model.fcm is None and model.mpffm is None
    vol, hints, prev = tiny_inputs()
    with torch.no_grad():
        out = model(vol, hints, prev, 3, [4, 5])
    assert out["fcm_aux_logits"] == []
    up = F.interpolate(out["vim_logits"][:, :, 5], size=(48, 48), mode="bilinear")
    torch.testing.assert_close(out["mpffm_logits"][1], up)
    with pytest.raises(ConfigError, match="propagation"):
        model.encode_key(vol[:, :, 0])


def test_slice_propagation_has_no_vim_path_to_the_decoder() -> None:
    vol, hints, prev = tiny_inputs()
    prev2 = prev.clone()
    prev2[:, :, 5] = 1.0 - prev2[:, :, 5]  # previous mask of a target slice: only the VIM sees it
    hybrid = tiny_model().eval()
    sliced = tiny_model(propagation="slice").eval()
    assert sliced.vim is None and sliced.fcm is None
    assert sliced.mpffm.decoder.fused_channels == 0
    assert hybrid.mpffm.decoder.fused_channels == sum(hybrid.config.fcm_out_channels)
    with torch.no_grad():
        h1, h2 = (hybrid(vol, hints, p, 3, [4, 5])["mpffm_logits"][1] for p in (prev, prev2))
        s1, s2 = (sliced(vol, hints, p, 3, [4, 5]) for p in (prev, prev2))
    assert not torch.allclose(h1, h2)  # hybrid: the VIM features reach the decoder
    torch.testing.assert_close(s1["mpffm_logits"][1], s2["mpffm_logits"][1], rtol=0, atol=0)
    assert s1["vim_logits"] is None and s1["fcm_aux_logits"] == []
    with pytest.raises(ConfigError):
        sliced.run_vim(vol, hints, prev)


def test_no_fusion_cuts_fcm_from_the_mpffm_loss() -> None:
    vol, hints, prev = tiny_inputs()
    fused = tiny_model().train()
    total_mpffm_loss(fused.forward_train(vol, hints, prev, 3, [4, 5])).backward()
    assert grad_norm(fused.fcm.adapters) > 0

    plain = tiny_model(use_fusion=False).train()
    assert plain.fcm is not None and plain.mpffm.decoder.fused_channels == 0
    out = plain.forward_train(vol, hints, prev, 3, [4, 5])
    total_mpffm_loss(out).backward()
    assert grad_norm(plain.fcm) == 0 and grad_norm(plain.vim) == 0
    plain.zero_grad(set_to_none=True)
    out = plain.forward_train(vol, hints, prev, 3, [4, 5])
    sum(a.sum() for aux in out["fcm_aux_logits"] for a in aux).backward()
    assert grad_norm(plain.fcm.adapters) > 0  # still trained through the FCM loss


def test_no_affinity_ignores_keys() -> None:
    vol, hints, prev = tiny_inputs()
    base = tiny_model().train()
    total_mpffm_loss(base.forward_train(vol, hints, prev, 3, [4, 5])).backward()
    assert grad_norm(base.mpffm.key_encoder.key_proj) > 0
    ablated = tiny_model(use_affinity=False).train()
    total_mpffm_loss(ablated.forward_train(vol, hints, prev, 3, [4, 5])).backward()
    assert grad_norm(ablated.mpffm.key_encoder.key_proj) == 0
    assert grad_norm(ablated.mpffm.key_encoder.trunk) > 0  # skips and query value still used


def test_memory_switch_changes_the_frames_read(monkeypatch: pytest.MonkeyPatch) -> None:
    vol, hints, prev = tiny_inputs()
    seen: list[list[int]] = []
    original = HPINet.propagate_step

    def spy(self: HPINet, memory: MemoryBank, *args: Any) -> torch.Tensor:
        seen.append(list(memory.frames))
        return original(self, memory, *args)

    monkeypatch.setattr(HPINet, "propagate_step", spy)
    with_mem = tiny_model().eval()
    without = tiny_model(use_memory=False).eval()
    without.load_state_dict(with_mem.state_dict())  # same weights, same architecture
    with torch.no_grad():
        a = with_mem(vol, hints, prev, 3, [4, 5, 6])
        assert seen == [[3], [3, 4], [3, 5]]
        seen.clear()
        b = without(vol, hints, prev, 3, [4, 5, 6])
        assert seen == [[3], [4], [5]]
    torch.testing.assert_close(a["mpffm_logits"][0], b["mpffm_logits"][0])
    assert not torch.allclose(a["mpffm_logits"][2], b["mpffm_logits"][2])


# ------------------------------------------------------------------------------ training utilities
def test_checkpointing_and_bf16_autocast() -> None:
    vol, hints, prev = tiny_inputs()
    losses, grads = [], []
    for ck in (False, True):
        model = tiny_model(checkpointing=ck).train()
        out = model.forward_train(vol, hints, prev, 3, [4, 5])
        loss = out["vim_logits"].mean() + total_mpffm_loss(out)
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append(grad_norm(model))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert grads[0] == pytest.approx(grads[1], rel=1e-4)
    model = tiny_model(checkpointing=True).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.forward_train(vol, hints, prev, 3, [4, 5])
        loss = out["vim_logits"].float().mean() + total_mpffm_loss(out).float()
    loss.backward()
    assert out["mpffm_logits"][0].dtype == torch.bfloat16
    assert torch.isfinite(loss) and grad_norm(model.vim) > 0


def test_forward_train_rejects_bad_inputs() -> None:
    model = tiny_model()
    vol, hints, prev = tiny_inputs()
    with pytest.raises(PromptError, match="equals"):
        model.forward_train(vol, hints, prev, 3, [3])
    with pytest.raises(PromptError):
        model.forward_train(vol, hints, prev, 3, [7])
    with pytest.raises(PromptError):
        model.forward_train(vol, hints, prev, -1, [0])
    with pytest.raises(PromptError):
        model.forward_train(vol, hints, prev, 3, [])
    with pytest.raises(GeometryError):
        model.forward_train(vol, hints[:, :, :5], prev, 3, [4])
    with pytest.raises(DimensionalityError, match="hints"):
        model.forward_train(vol, hints[:, :1], prev, 3, [4])


# ------------------------------------------------------------------------------ config
def test_config_round_trip_and_validation() -> None:
    cfg = HPINetConfig.preset("lite", **TINY)
    again = HPINetConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert isinstance(again.vim_pools[0], tuple)
    with pytest.raises(ConfigError, match="unknown"):
        HPINetConfig.from_dict({"vim_bass": 3})
    with pytest.raises(ConfigError, match="propagation"):
        HPINetConfig(propagation="both")
    with pytest.raises(ConfigError, match="norm"):
        HPINetConfig(norm="batch")
    with pytest.raises(ConfigError, match="preset"):
        HPINetConfig.preset("huge")
    with pytest.raises(ConfigError, match="unknown"):
        HPINetConfig.preset("lite", nonsense=1)


def test_instance_norm_variant_runs() -> None:
    model = tiny_model(norm="instance").eval()
    vol, hints, prev = tiny_inputs()
    with torch.no_grad():
        out = model(vol, hints, prev, 3, [2])
    assert torch.isfinite(out["mpffm_logits"][0]).all()


def test_paper_preset_parameter_counts_match_reference() -> None:
    """Parameters of the paper preset within 1 % of our reading of the authors' code (notes §9)."""
    with torch.device("meta"):
        model = HPINet(HPINetConfig.preset("paper"))
    count = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    for got, ref in (
        (count(model.vim), 141.25),
        (count(model.sim), 39.64),
        (count(model.mpffm), 55.45),
        (count(model.fcm), 1.12),
        (count(model), 237.45),
    ):
        assert got == pytest.approx(ref, rel=0.01)
    assert model.config.key_dim == 64 and model.config.value_dim == 512
    assert model.config.top_k == 20 and model.config.default_input == (16, 512, 512)
