"""Interactive session (Algorithm 1): rounds, stop rules, memory, undo/redo, replay, geometry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from models_tiny import TINY32 as TINY

from ichseg.errors import ConfigError, PromptError
from ichseg.interaction.hpinet_engine import HPINetEngine, HPINetEngineConfig
from ichseg.interaction.prompts import Click, Scribble
from ichseg.interaction.session import InteractiveSession, SessionConfig, read_log, replay_events
from ichseg.io.volume import Intensity, Volume, make_affine, reorient
from ichseg.models.registry import build_model


def phantom(axcodes="LPS", depth=10):
    shape = (40, 40, depth)
    ii, jj, kk = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    img = np.full(shape, -1000.0)
    head = ((ii - 19.5) / 18) ** 2 + ((jj - 19.5) / 18) ** 2 < 1
    img[head] = 1000.0
    img[((ii - 19.5) / 16) ** 2 + ((jj - 19.5) / 16) ** 2 < 1] = 35.0
    bleed = ((ii - 14) / 5) ** 2 + ((jj - 22) / 4) ** 2 + ((kk - depth // 2) / 2.2) ** 2 < 1
    img[bleed] = 70.0
    vol = Volume(img.astype(np.int16), make_affine((1.0, 1.0, 5.0), "LPS", (3, 4, 5)))
    mask = vol.as_label(bleed)
    if axcodes != "LPS":
        vol, _ = reorient(vol, axcodes)
        mask, _ = reorient(mask, axcodes)
    return vol, mask


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("hpinet", "lite", **TINY)


def hp(model, **options):
    """A session around the HPINet engine with these engine options."""
    return InteractiveSession(HPINetEngine(model, HPINetEngineConfig(**options)))


def lesion_scribble(session, mask_vol):
    from ichseg.io.volume import to_canonical

    gt = to_canonical(mask_vol)[0].zyx()
    z = int(np.argmax(gt.reshape(gt.shape[0], -1).sum(1)))
    ys, xs = np.nonzero(gt[z])
    return Scribble(z, list(zip(ys[:4].tolist(), xs[:4].tolist(), strict=True)), True, 2.0)


def test_round_requires_volume_and_prompts(model):
    s = InteractiveSession(model)
    with pytest.raises(PromptError):
        s.add_click(0, 1, 1)
    vol, _ = phantom()
    s.set_volume(vol)
    with pytest.raises(PromptError):
        s.run_round()
    with pytest.raises(PromptError):
        s.add_click(99, 1, 1)  # outside the scan


def test_round_outputs_on_original_grid_and_propagates(model):
    vol, mask = phantom()
    s = InteractiveSession(model)
    s.set_volume(vol)
    s.add_prompt(lesion_scribble(s, mask))
    r = s.run_round()
    assert r.probability.shape == vol.shape and r.mask.shape == vol.shape
    assert r.index == 1 and r.interacted_slices == [vol.shape[2] // 2]
    assert r.interacted_slices[0] not in r.propagated_slices
    m = s.mask()
    assert m.same_geometry(vol) and m.is_label
    assert r.volume_ml == pytest.approx(r.mask.sum() * vol.voxel_volume_ml)


def test_stop_rules_limit_propagation(model):
    vol, mask = phantom(depth=12)
    sc = lesion_scribble(None, mask)
    s = hp(model, max_distance=2, stop_after_empty=99)
    s.set_volume(vol)
    s.add_prompt(sc)
    r = s.run_round()
    assert set(r.propagated_slices) <= {sc.z - 2, sc.z - 1, sc.z + 1, sc.z + 2}
    assert len(r.propagated_slices) == 4
    # stop at an interacted slice: prompts on z and z+3 -> no chain crosses the other slice
    s2 = hp(model, stop_after_empty=99)
    s2.set_volume(vol)
    s2.add_prompt(sc)
    s2.add_prompt(Click(sc.z + 3, sc.points[0][0], sc.points[0][1], True, 2.0))
    r2 = s2.run_round()
    assert set(r2.propagated_slices) == set(range(12)) - {sc.z, sc.z + 3}


def test_correction_rounds_update_only_near_the_corrected_slice(model):
    vol, mask = phantom(depth=16)
    sc = lesion_scribble(None, mask)
    s = hp(model, stop_after_empty=99, correction_max_distance=1)
    s.set_volume(vol)
    s.add_prompt(sc)
    r1 = s.run_round()  # the first round is not a correction: chains run to both ends
    assert set(r1.propagated_slices) == set(range(16)) - {sc.z}
    z2 = sc.z + 4
    s.add_click(z2, sc.points[0][0], sc.points[0][1], False)
    r2 = s.run_round()
    assert r2.propagated_slices == [z2 - 1, z2 + 1]
    far = [z for z in range(16) if abs(z - z2) > 1 and z != sc.z]
    # slices beyond the limit keep the previous round exactly (original axis 2 = slices)
    np.testing.assert_array_equal(r2.probability[:, :, far], r1.probability[:, :, far])


def test_stroke_refinement_runs_on_prompted_slices_in_network_pixels(model, monkeypatch):
    import ichseg.interaction.stroke_refine as stroke_refine

    calls = []

    def spy(image, prob, positive, negative, *, radius, beta):
        calls.append((image.shape, bool(positive.any()), bool(negative.any()), radius, beta))
        return np.zeros_like(prob)

    monkeypatch.setattr(stroke_refine, "refine_slice", spy)
    vol, mask = phantom()
    sc = lesion_scribble(None, mask)
    assert HPINetEngineConfig().stroke_radius_mm == 0.0  # the network alone by default
    plain = hp(model, stroke_radius_mm=0.0)
    plain.set_volume(vol)
    plain.add_prompt(sc)
    plain.run_round()
    assert calls == []  # 0 switches it off
    s = hp(model, stroke_radius_mm=3.0, stroke_beta=100.0)
    s.set_volume(vol)
    s.add_prompt(sc)
    s.add_click(sc.z + 2, 3, 3, False)
    r = s.run_round()
    spacing = min(s.engine.grid.spacing_zyx[1:])
    assert calls == [
        ((32, 32), True, False, 3.0 / spacing, 100.0),
        ((32, 32), False, True, 3.0 / spacing, 100.0),
    ]
    # the refined (here: emptied) slices are what the round reports, strokes still enforced
    assert r.mask[:, :, sc.z + 2].sum() == 0


def test_prompts_accumulate_and_memory_grows(model):
    vol, mask = phantom()
    s = InteractiveSession(model)
    s.set_volume(vol)
    sc = lesion_scribble(s, mask)
    s.add_prompt(sc)
    s.run_round()
    s.add_click(sc.z + 1, sc.points[0][0], sc.points[0][1], False)
    r2 = s.run_round()
    assert len(s.prompts) == 2 and r2.index == 2
    assert set(s.state.engine_state.memory) == {sc.z, sc.z + 1}
    assert s.state.interacted == (sc.z, sc.z + 1)


def test_undo_redo_and_replay_is_exact(model, tmp_path):
    vol, mask = phantom()
    s = InteractiveSession(model)
    s.set_volume(vol)
    sc = lesion_scribble(s, mask)
    s.add_prompt(sc)
    r1 = s.run_round()
    s.add_click(sc.z - 1, sc.points[0][0], sc.points[0][1], True)
    s.run_round()
    s.undo()
    assert s.round_index == 1 and s.volume_ml == pytest.approx(r1.volume_ml)
    s.redo()
    assert s.round_index == 2
    s.undo()
    s.add_click(sc.z + 2, sc.points[0][0], sc.points[0][1], False)
    s.run_round()
    assert not s.can_redo  # a new round after undo drops the redo tail
    with pytest.raises(PromptError):
        s.redo()
    path = s.save_log(tmp_path / "log.json")
    log = read_log(path)
    assert [e["op"] for e in log["events"]].count("run_round") == 3
    s2 = InteractiveSession(model)
    replay_events(s2, log, vol)
    assert np.array_equal(s2.mask().array, s.mask().array)
    assert np.array_equal(s2.probability().array, s.probability().array)
    json.loads(path.read_text())


def test_replay_refuses_other_geometry(model):
    vol, mask = phantom()
    s = InteractiveSession(model)
    s.set_volume(vol)
    s.add_prompt(lesion_scribble(s, mask))
    s.run_round()
    other, _ = phantom(depth=8)
    with pytest.raises(PromptError):
        replay_events(InteractiveSession(model), s.log(), other)


def test_lps_and_ras_inputs_give_the_same_world_mask(model):
    """Same anatomy stored LPS or RAS: canonical prompts are identical, masks agree in world space."""
    lps, mask_lps = phantom("LPS")
    ras, mask_ras = phantom("RAS")
    out = {}
    for name, vol, m in (("lps", lps, mask_lps), ("ras", ras, mask_ras)):
        s = InteractiveSession(model)
        s.set_volume(vol)
        s.add_prompt(lesion_scribble(s, m))
        s.run_round()
        res = s.mask()
        assert res.same_geometry(vol)
        ijk = np.argwhere(res.array > 0)
        out[name] = {tuple(np.round(p, 3)) for p in res.voxel_to_world(ijk)} if len(ijk) else set()
        assert out[name] == out.get("lps", out[name])


def test_suggest_next_slice_skips_prompted(model):
    vol, mask = phantom()
    s = InteractiveSession(model)
    s.set_volume(vol)
    sc = lesion_scribble(s, mask)
    s.add_prompt(sc)
    s.run_round()
    z = s.suggest_next_slice()
    assert z is None or (z != sc.z and 0 <= z < vol.shape[2])


def test_probability_is_float_and_in_range(model):
    vol, mask = phantom()
    s = InteractiveSession(model)
    s.set_volume(vol)
    s.add_prompt(lesion_scribble(s, mask))
    s.run_round()
    p = s.probability()
    assert p.array.dtype == np.float32 and p.array.min() >= 0 and p.array.max() <= 1
    assert p.intensity != Intensity.label()


def _previous_seen_by_sim(model, monkeypatch, config):
    """Run two rounds; return the session and the previous-mask input the SIM got in round 2."""
    vol, mask = phantom()
    s = InteractiveSession(HPINetEngine(model, config))
    s.set_volume(vol)
    sc = lesion_scribble(s, mask)
    s.add_prompt(sc)
    s.run_round()
    seen = []
    real = model.run_sim

    def spy(image, hints, prev, new=None):
        seen.append(prev.detach().clone())
        return real(image, hints, prev, new)

    monkeypatch.setattr(model, "run_sim", spy)
    s.add_prompt(sc)
    s.run_round()
    return s, sc.z, seen[0]


@pytest.mark.parametrize("as_mask", [False, True])
def test_previous_round_fed_as_mask_or_probability(model, monkeypatch, as_mask):
    cfg = HPINetEngineConfig(previous_as_mask=as_mask, feed_previous=True)
    s, z, prev = _previous_seen_by_sim(model, monkeypatch, cfg)
    expected = torch.from_numpy(
        s._states[1].engine_state.prob[[z]]
    )  # round-1 probability on the slice
    if as_mask:
        expected = (expected >= 0.5).float()
        assert set(torch.unique(prev).tolist()) <= {0.0, 1.0}
    assert torch.allclose(prev[:, 0], expected)


@pytest.mark.parametrize("axcodes", ["LPS", "RAS"])
def test_prompted_voxels_are_enforced_in_the_result(model, axcodes):
    from ichseg.io.volume import to_canonical

    vol, mask = phantom(axcodes)
    s = InteractiveSession(model)
    s.set_volume(vol)
    canon, reo = to_canonical(vol)
    gt = to_canonical(mask)[0].zyx()
    z = int(np.argmax(gt.reshape(gt.shape[0], -1).sum(1)))
    s.add_click(z, 2, 2, True, 1.0)  # a "positive" click far outside the lesion
    s.add_click(z, 22, 14, False, 1.0)  # a "negative" click inside it
    r = s.run_round()
    marks = np.zeros(canon.zyx().shape, np.uint8)
    marks[z, 2, 2], marks[z, 22, 14] = 1, 2
    back = reo.undo(np.ascontiguousarray(marks.transpose(2, 1, 0)))
    assert r.mask[back == 1].all() and r.probability[back == 1].min() == 1.0
    assert not r.mask[back == 2].any() and r.probability[back == 2].max() == 0.0
    off = InteractiveSession(model, SessionConfig(enforce_prompts=False))
    off.set_volume(vol)
    off.add_prompts(s.prompts)
    assert off.run_round().probability[back == 1].max() < 1.0


def test_previous_round_fed_by_default_and_switchable(model, monkeypatch):
    assert HPINetEngineConfig().feed_previous is True  # the paper's Algorithm 1
    off = HPINetEngineConfig(feed_previous=False)
    s, z, prev = _previous_seen_by_sim(model, monkeypatch, off)
    assert s._states[1].engine_state.prob[z].max() > 0  # there was a previous round to feed
    assert float(prev.abs().max()) == 0.0


@pytest.mark.parametrize(
    "bad",
    [
        {"stroke_radius_mm": -1.0},
        {"stroke_beta": 0.0},
        {"correction_max_distance": 0},
        {"max_distance": 0},
        {"threshold": 1.0},
    ],
)
def test_bad_engine_options_are_named(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        HPINetEngineConfig(**bad)


@pytest.mark.parametrize("bad", [{"threshold": 0.0}, {"max_prompt_size_mm": -1.0}])
def test_bad_session_options_are_named(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        SessionConfig(**bad)


def test_precision_is_resolved_in_the_config_and_close_to_float32(model):
    import torch

    from ichseg.interaction.hpinet_engine import resolve_precision

    with pytest.raises(ConfigError, match="precision"):
        HPINetEngineConfig(precision="float16")
    cpu = torch.device("cpu")
    assert resolve_precision("float32", cpu) == "float32"
    assert resolve_precision("auto", cpu) in ("float32", "bfloat16")
    auto = HPINetEngine(model, HPINetEngineConfig())
    assert auto.config_dict()["precision"] == resolve_precision("auto", cpu)  # never "auto"
    vol, mask = phantom()
    probs = {}
    for precision in ("float32", "bfloat16"):
        s = hp(model, precision=precision)
        s.set_volume(vol)
        s.add_prompt(lesion_scribble(s, mask))
        probs[precision] = s.run_round().probability
        assert probs[precision].dtype == np.float32
        assert s.engine.config_dict()["precision"] == precision
    assert np.abs(probs["float32"] - probs["bfloat16"]).max() < 0.05


def test_vim_weight_one_is_the_vim_output_without_propagation(model, monkeypatch):
    vol, mask = phantom()
    sc = lesion_scribble(None, mask)
    s = hp(model, vim_weight=1.0)
    s.set_volume(vol)
    assert s.engine.keys is None  # no memory keys encoded: the propagation is not used
    s.add_prompt(sc)
    r = s.run_round()
    assert "propagation" not in r.timings and "sim" not in r.timings
    # the same round with the paper's propagation: a different answer from the same network
    p = hp(model, vim_weight=0.0)
    p.set_volume(vol)
    p.add_prompt(sc)
    assert not np.allclose(p.run_round().probability, r.probability)
    # hpinet_refined's stroke refinement still runs, on every prompted slice of the VIM output
    import ichseg.interaction.stroke_refine as stroke_refine

    calls = []

    def spy(image, prob, positive, negative, *, radius, beta):
        calls.append(bool(positive.any()))
        return np.zeros_like(prob)

    monkeypatch.setattr(stroke_refine, "refine_slice", spy)
    q = hp(model, vim_weight=1.0, stroke_radius_mm=3.0)
    q.set_volume(vol)
    q.add_prompt(sc)
    q.run_round()
    q.add_click(sc.z + 2, 3, 3, False)
    out = q.run_round()
    assert calls == [True, True, False]  # round 1: one slice; round 2: both prompted slices
    assert out.mask[:, :, sc.z + 2].sum() == 0
