"""Round 0 from an existing mask (automatic, then corrected): session, both engines, log replay."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models_tiny import TINY32

from ichseg.errors import GeometryError, InputFileError, PromptError
from ichseg.interaction.engine import EngineOutput
from ichseg.interaction.hpinet_engine import HPINetEngine, HPINetEngineConfig
from ichseg.interaction.prompts import Scribble
from ichseg.interaction.random_walker import RandomWalkerEngine, RandomWalkerState
from ichseg.interaction.session import (
    InteractiveSession,
    decode_mask,
    encode_mask,
    read_log,
    replay_events,
    resume_session,
)
from ichseg.io.volume import Volume, make_affine, reorient, to_canonical
from ichseg.models.registry import build_model


def phantom(depth: int = 10) -> tuple[Volume, Volume]:
    """A 40 x 40 x depth head (RAS storage, so canonical LPS differs) with one bleed."""
    shape = (40, 40, depth)
    ii, jj, kk = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    img = np.full(shape, -1000.0)
    img[((ii - 19.5) / 18) ** 2 + ((jj - 19.5) / 18) ** 2 < 1] = 1000.0
    img[((ii - 19.5) / 16) ** 2 + ((jj - 19.5) / 16) ** 2 < 1] = 35.0
    bleed = ((ii - 14) / 5) ** 2 + ((jj - 22) / 4) ** 2 + ((kk - depth // 2) / 2.2) ** 2 < 1
    img[bleed] = 70.0
    vol = Volume(img.astype(np.int16), make_affine((1.0, 1.0, 5.0), "LPS", (3, 4, 5)))
    mask, _ = reorient(vol.as_label(bleed.astype(np.uint8)), "RAS")
    vol, _ = reorient(vol, "RAS")
    return vol, mask


def canon(vol: Volume, arr: np.ndarray) -> np.ndarray:
    return to_canonical(vol.as_label(arr))[0].zyx() > 0


def scribble_in(vol: Volume, gt: Volume, positive: bool = True) -> Scribble:
    """A short stroke inside the GT on its largest canonical slice."""
    g = canon(vol, gt.array)
    z = int(np.argmax(g.reshape(g.shape[0], -1).sum(1)))
    ys, xs = np.nonzero(g[z])
    yc = int(np.median(ys))
    row = xs[ys == yc]
    xc = int(np.median(row))
    return Scribble(z, [(yc, xc - 1), (yc, xc), (yc, xc + 1)], positive, 2.0)


class SpyEngine:
    """Records what the session passes; returns the previous round (or zeros) unchanged."""

    name = "spy"

    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray | None, object]] = []

    def config_dict(self) -> dict:
        return {}

    def model_info(self) -> dict:
        return {}

    def encode(self, canonical: Volume) -> None:
        self.shape = canonical.zyx().shape

    def predict(self, prompts, new_prompts, previous, state) -> EngineOutput:
        self.calls.append((None if previous is None else previous.copy(), state))
        prob = np.zeros(self.shape, np.float32) if previous is None else previous
        return EngineOutput(prob, state="after")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("hpinet", "lite", **TINY32)


def test_round0_is_the_previous_result_of_round1():
    vol, gt = phantom()
    engine = SpyEngine()
    s = InteractiveSession(engine)
    s.set_volume(vol)
    r0 = s.start_from_mask(gt, "test-model")
    assert r0.index == 0 and s.round_index == 0 and s.initial_source == "test-model"
    np.testing.assert_array_equal(s.mask().array, gt.array)
    assert s.mask().same_geometry(vol)
    assert r0.volume_ml == pytest.approx(gt.array.sum() * vol.voxel_volume_ml)
    s.add_prompt(scribble_in(vol, gt))
    r1 = s.run_round()
    assert r1.index == 1 and s.round_index == 1
    previous, state = engine.calls[0]
    np.testing.assert_array_equal(previous > 0.5, canon(vol, gt.array))  # canonical grid
    assert state is None  # the spy has no start_state
    assert [r.index for r in s.results()] == [0, 1]


def test_round0_undo_redo_and_refusals():
    vol, gt = phantom()
    s = InteractiveSession(SpyEngine())
    s.set_volume(vol)
    other = Volume(gt.array, make_affine((2.0, 1.0, 5.0), "RAS"))
    with pytest.raises(GeometryError):
        s.start_from_mask(other, "bad")
    s.start_from_mask(gt, "m")
    with pytest.raises(PromptError, match="undo to the start"):
        s.start_from_mask(gt, "again")
    s.undo()
    assert s.round_index == 0 and not s.mask().array.any() and s.initial_source is None
    s.redo()
    np.testing.assert_array_equal(s.mask().array, gt.array)
    s.undo()
    s.add_prompt(scribble_in(vol, gt))
    with pytest.raises(PromptError, match="pending"):
        s.start_from_mask(gt, "m")


def test_mask_encoding_roundtrip_and_corruption():
    rng = np.random.default_rng(0)
    arr = (rng.random((7, 5, 3)) > 0.7).astype(np.uint8)
    rec = encode_mask(arr)
    np.testing.assert_array_equal(decode_mask(rec), arr)
    with pytest.raises(InputFileError):
        decode_mask({**rec, "voxels": rec["voxels"] + 1})
    with pytest.raises(InputFileError):
        decode_mask({**rec, "data": "not base64!"})


def test_hpinet_uses_initial_mask(model):
    vol, gt = phantom()
    # round 0: the GT plus a false-positive slab on the first canonical slice, far from the
    # stroke; chains stop 1 slice from it, so that slice keeps round 0
    extra = canon(vol, gt.array).copy()
    extra[0, 5:15, 5:15] = True
    _, reo = to_canonical(vol)
    arr0 = reo.undo(np.ascontiguousarray(extra.transpose(2, 1, 0))).astype(np.uint8)
    engine = HPINetEngine(model, HPINetEngineConfig(max_distance=1))
    s = InteractiveSession(engine)
    s.set_volume(vol)
    s.start_from_mask(vol.as_label(arr0), "auto")
    state0 = s.state.engine_state
    assert state0.prob.shape == engine.grid.model_shape and state0.prob.max() == 1.0
    s.add_prompt(scribble_in(vol, gt))
    r1 = s.run_round()
    got = canon(vol, r1.mask)
    assert got[0, 6:14, 6:14].all()  # unreached slice kept the initial mask
    # without the initial mask that slice is empty
    plain = InteractiveSession(HPINetEngine(model, HPINetEngineConfig(max_distance=1)))
    plain.set_volume(vol)
    plain.add_prompt(scribble_in(vol, gt))
    assert not canon(vol, plain.run_round().mask)[0].any()


def test_random_walker_keeps_mask_away_from_corrections():
    vol, gt = phantom(depth=14)
    g = canon(vol, gt.array)
    init = g.copy()
    init[0, 20:26, 20:26] = True  # a false positive >= 20 mm (4 slices) from the lesion
    _, reo = to_canonical(vol)
    arr0 = reo.undo(np.ascontiguousarray(init.transpose(2, 1, 0))).astype(np.uint8)
    engine = RandomWalkerEngine()
    s = InteractiveSession(engine)
    s.set_volume(vol)
    s.start_from_mask(vol.as_label(arr0), "auto")
    assert isinstance(s.state.engine_state, RandomWalkerState)
    s.add_prompt(scribble_in(vol, gt))
    r1 = canon(vol, s.run_round().mask)
    assert r1[0, 20:26, 20:26].all()  # kept: no prompt near it
    assert (r1 & g).sum() >= 0.75 * g.sum() and (r1[1:] & ~g[1:]).sum() <= 0.1 * g.sum()
    # a negative stroke on the false positive removes it; the lesion stays as it was
    s.add_prompt(Scribble(0, [(22, 22), (23, 23), (24, 24)], False, 2.0))
    r2 = canon(vol, s.run_round().mask)
    assert not r2[0, 20:26, 20:26].any()
    np.testing.assert_array_equal(r2[1:], r1[1:])
    # the legacy path (no initial mask) never sees the false positive at all
    plain = InteractiveSession(RandomWalkerEngine())
    plain.set_volume(vol)
    plain.add_prompt(scribble_in(vol, gt))
    assert not canon(vol, plain.run_round().mask)[0].any()


@pytest.mark.parametrize("which", ["hpinet", "random_walker"])
def test_log_replay_and_resume_reproduce_round0(tmp_path, model, which):
    vol, gt = phantom()
    make = (lambda: HPINetEngine(model)) if which == "hpinet" else (lambda: RandomWalkerEngine())
    log = tmp_path / "s.log.json"
    s = InteractiveSession(make(), autosave=log)
    s.set_volume(vol)
    shrunk = gt.array.copy()
    shrunk[:, :, : shrunk.shape[2] // 2] = 0  # the automatic mask missed half the bleed
    s.start_from_mask(gt.as_label(shrunk), "unet:w.pt")
    s.add_prompt(scribble_in(vol, gt))
    s.run_round()
    data = read_log(log)
    assert data["version"] == 3
    assert [e["op"] for e in data["events"]][:2] == ["set_volume", "initial_mask"]
    assert [r["index"] for r in data["rounds"]] == [0, 1]
    again = InteractiveSession(make())
    replay_events(again, data, vol)
    np.testing.assert_array_equal(again.results()[0].mask, shrunk)
    np.testing.assert_array_equal(again.mask().array, s.mask().array)
    resumed = resume_session(log, vol, autosave=False) if which == "random_walker" else None
    if resumed is not None:
        assert resumed.initial_source == "unet:w.pt"
        np.testing.assert_array_equal(resumed.mask().array, s.mask().array)


def test_strokes_missing_the_starting_mask_warn_the_user():
    vol, gt = phantom()
    wrong = np.zeros_like(gt.array)
    wrong[2:6, 2:8, 2:8] = 1  # a "false positive" far from the bleed (>= 18 mm)
    s = InteractiveSession(SpyEngine())
    s.set_volume(vol)
    s.start_from_mask(gt.with_array(wrong), "unet:runs/unet/best.pt")
    s.add_prompt(scribble_in(vol, gt))
    note = s.run_round().note
    assert note is not None and "missed this bleed" in note and "unet:runs/unet/best.pt" in note
    assert "1 component(s)" in note
    s.add_prompt(scribble_in(vol, gt))  # only the first round after the start is checked
    assert s.run_round().note is None
    # a stroke that corrects the starting mask (on it) gets no warning
    s = InteractiveSession(SpyEngine())
    s.set_volume(vol)
    s.start_from_mask(gt, "m")
    s.add_prompt(scribble_in(vol, gt))
    assert s.run_round().note is None


def test_strokes_miss_mask_counts_neighbouring_slices_in_mm():
    from ichseg.interaction.session import strokes_miss_mask

    mask = np.zeros((6, 20, 20), bool)
    mask[2, 5:8, 5:8] = True
    strokes = np.zeros_like(mask)
    strokes[3, 6, 6] = True  # one slice above the mask
    assert not strokes_miss_mask(mask, strokes, (4.0, 1.0, 1.0))  # 4 mm away: near
    assert strokes_miss_mask(mask, strokes, (6.0, 1.0, 1.0))  # 6 mm slices: too far
    strokes[:] = False
    strokes[2, 6, 12] = True  # same slice, 5 mm to the right of the mask's edge (x=7)
    assert not strokes_miss_mask(mask, strokes, (5.0, 1.0, 1.0))
    assert strokes_miss_mask(mask, strokes, (5.0, 1.0, 1.2))  # 6 mm in-plane
    assert not strokes_miss_mask(np.zeros_like(mask), strokes, (5.0, 1.0, 1.0))  # no mask
