"""The one session, whatever the engine: nothing lost (autosave, SIGKILL), typed errors before a
scan is loaded, bounded prompt sizes, background-only rounds, broken engine outputs, logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ichseg.errors import InputFileError, ModelOutputError, PromptError
from ichseg.interaction.engine import EngineOutput, build_engine, parse_method_spec
from ichseg.interaction.prompts import Click, Scribble
from ichseg.interaction.random_walker import RandomWalkerConfig, RandomWalkerEngine
from ichseg.interaction.session import (
    NOTE_ONLY_BACKGROUND,
    InteractiveSession,
    read_log,
    replay_events,
    resume_session,
)
from ichseg.io.nifti import write_nifti as save_nifti
from ichseg.io.volume import Volume, make_affine, to_canonical

RW = RandomWalkerConfig(margin_mm=8.0, z_margin=2)


def head(seed: int = 0) -> tuple[Volume, Volume]:
    rng = np.random.default_rng(seed)
    shape = (40, 40, 10)
    ii, jj, kk = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    r2 = ((ii - 19.5) / 18) ** 2 + ((jj - 19.5) / 18) ** 2
    img = np.full(shape, -1000.0)
    img[r2 < 1] = 1000.0
    img[r2 < 0.8] = 35.0
    bleed = ((ii - 14) / 5) ** 2 + ((jj - 22) / 4) ** 2 + ((kk - 5) / 2.2) ** 2 < 1
    img[bleed] = 72.0
    img += rng.normal(0, 2, shape) * (r2 < 0.8)
    vol = Volume(img.astype(np.int16), make_affine((1.0, 1.0, 5.0), "LPS", (3.0, 4.0, 5.0)))
    return vol, vol.as_label(bleed)


def lesion_prompt(mask: Volume, positive: bool = True) -> Scribble:
    gt = to_canonical(mask)[0].zyx()
    z = int(np.argmax(gt.reshape(gt.shape[0], -1).sum(1)))
    ys, xs = np.nonzero(gt[z])
    cy, cx = float(ys.mean()), float(xs.mean())
    return Scribble(z, [(cy - 1, cx - 2), (cy + 1, cx + 2)], positive, 1.0)


def rw_session(**kw) -> InteractiveSession:
    return InteractiveSession(RandomWalkerEngine(RW), **kw)


def test_calls_before_a_scan_raise_the_typed_error(tmp_path):
    s = rw_session()
    for call in (
        s.undo,
        s.redo,
        s.run_round,
        s.mask,
        s.results,
        lambda: s.save_log(tmp_path / "l"),
    ):
        with pytest.raises(PromptError, match="set_volume"):
            call()
    assert not s.can_undo and not s.can_redo
    assert list(tmp_path.iterdir()) == []


def test_prompt_sizes_are_bounded_in_mm():
    vol, _ = head()
    s = rw_session()
    s.set_volume(vol)
    with pytest.raises(PromptError, match=r"stroke width .* mm"):
        s.add_prompt(Scribble(5, [(10, 10), (12, 12)], True, 1e9))
    with pytest.raises(PromptError, match="click diameter"):
        s.add_prompt(Click(5, 10, 10, True, 40.0))  # 80 mm across on a 1 mm grid
    s.add_prompt(Scribble(5, [(10, 10), (12, 12)], True, 20.0))  # 20 mm is a big brush, allowed
    assert len(s.pending) == 1


def test_background_only_round_on_an_empty_mask_is_empty_and_says_so():
    vol, mask = head()
    s = rw_session()
    s.set_volume(vol)
    s.add_prompt(lesion_prompt(mask, positive=False))
    r = s.run_round()
    assert r.volume_ml == 0.0 and not r.mask.any() and r.note == NOTE_ONLY_BACKGROUND
    s.add_prompt(lesion_prompt(mask, positive=True))  # now hemorrhage is marked: a real round
    r2 = s.run_round()
    assert r2.note is None and r2.volume_ml > 0


class _BrokenEngine(RandomWalkerEngine):
    def predict(self, prompts, new_prompts, previous, state):
        out = super().predict(prompts, new_prompts, previous, state)
        out.probability[0, 0, 0] = np.nan
        return out


class _WrongShapeEngine(RandomWalkerEngine):
    def predict(self, prompts, new_prompts, previous, state):
        return EngineOutput(np.zeros((2, 2, 2), np.float32))


@pytest.mark.parametrize("engine", [_BrokenEngine(RW), _WrongShapeEngine(RW)])
def test_unusable_engine_output_is_an_error_and_not_a_mask(engine):
    vol, mask = head()
    s = InteractiveSession(engine)
    s.set_volume(vol)
    s.add_prompt(lesion_prompt(mask))
    with pytest.raises(ModelOutputError):
        s.run_round()
    assert s.round_index == 0 and not s.mask().array.any()


def test_autosave_after_every_round_and_undo_and_exact_resume(tmp_path):
    vol, mask = head()
    log = tmp_path / "case.log.json"
    s = rw_session(autosave=log)
    s.set_volume(vol)
    assert not log.exists()  # nothing to save before the first round
    s.add_prompt(lesion_prompt(mask))
    s.run_round()
    first = read_log(log)
    assert [e["op"] for e in first["events"]].count("run_round") == 1
    s.add_click(5, 14, 22, False, 1.0)
    s.run_round()
    s.undo()
    after_undo = read_log(log)
    assert after_undo["events"][-1]["op"] == "undo"
    resumed = resume_session(log, vol)
    assert resumed.round_index == 1 and resumed.can_redo
    np.testing.assert_array_equal(resumed.mask().array, s.mask().array)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_failed_save_leaves_no_temporary_file_and_keeps_the_old_log(tmp_path, monkeypatch):
    vol, mask = head()
    log = tmp_path / "log.json"
    s = rw_session()
    s.set_volume(vol)
    s.add_prompt(lesion_prompt(mask))
    s.run_round()
    s.save_log(log)
    before = log.read_text()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(InputFileError, match="No space left"):
        s.save_log(log)
    assert log.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.json"]
    with pytest.raises(InputFileError, match="does not exist"):
        s.save_log(tmp_path / "missing" / "log.json")


_CHILD = textwrap.dedent(
    """
    import sys, time
    from ichseg.interaction.random_walker import RandomWalkerConfig, RandomWalkerEngine
    from ichseg.interaction.session import InteractiveSession
    from ichseg.interaction.prompts import Click
    from ichseg.io.reader import load_volume

    scan, log = sys.argv[1], sys.argv[2]
    s = InteractiveSession(RandomWalkerEngine(RandomWalkerConfig(margin_mm=8.0, z_margin=2)),
                           autosave=log)
    s.set_volume(load_volume(scan))
    for n, (z, y, x, pos) in enumerate([(5, 14, 22, True), (4, 14, 22, True), (6, 30, 30, False),
                                        (3, 14, 21, True), (5, 16, 22, True)]):
        s.add_prompt(Click(z, y, x, pos, 1.0))
        s.run_round()
        print(f"done {n + 1}", flush=True)
        if n == 2:
            s.add_prompt(Click(7, 14, 22, True, 1.0))  # pending, never run: may be lost
            print("waiting", flush=True)
            time.sleep(60)
    """
)


def test_sigkill_mid_session_loses_no_completed_round(tmp_path):
    vol, _ = head()
    scan = tmp_path / "scan.nii.gz"
    save_nifti(vol, scan)
    log = tmp_path / "autosave.json"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(scan), str(log)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    done = 0
    for line in child.stdout:
        if line.startswith("done"):
            done = int(line.split()[1])
        if line.strip() == "waiting":
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL and done == 3
    data = read_log(log)
    assert [e["op"] for e in data["events"]].count("run_round") == done
    resumed = resume_session(log, vol)
    assert resumed.round_index == done
    # the same three rounds, run here, give the same mask
    ref = rw_session()
    ref.set_volume(vol)
    for z, y, x, pos in [(5, 14, 22, True), (4, 14, 22, True), (6, 30, 30, False)]:
        ref.add_prompt(Click(z, y, x, pos, 1.0))
        ref.run_round()
    np.testing.assert_array_equal(resumed.mask().array, ref.mask().array)


def test_v1_logs_are_upgraded_and_replay_with_their_old_behaviour(tmp_path):
    v1 = {
        "format": "ichseg-interaction-log",
        "version": 1,
        "model": {"name": "hpinet", "weights": "w.pt"},
        "session_config": {"threshold": 0.5, "stroke_radius_mm": 10.0, "click_radius": 2.0},
        "events": [
            {"op": "set_volume", "meta": {"shape_ijk": [1, 1, 1], "affine": np.eye(4).tolist()}}
        ],
    }
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(v1))
    data = read_log(path)
    assert data["version"] == 2 and data["engine"]["name"] == "hpinet"
    cfg = data["engine"]["config"]
    assert cfg["stroke_radius_mm"] == 10.0 and cfg["feed_previous"] is True  # legacy default
    assert data["session_config"]["enforce_prompts"] is False  # v1 did not enforce prompts
    assert data["engine"]["model"]["weights"] == "w.pt"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("events"),
        lambda d: d.update(events=[]),
        lambda d: d.pop("engine"),
        lambda d: d.pop("session_config"),
        lambda d: d.update(surprise=1),
        lambda d: d["events"].append({"op": "teleport"}),
        lambda d: d["events"].append({"op": "prompt", "prompt": {"type": "click", "z": "x"}}),
        lambda d: d["session_config"].update(threshold=7),
        lambda d: d["session_config"].update(bogus=1),
        lambda d: d.update(version="2"),
        lambda d: d.update(version=99),
    ],
)
def test_malformed_logs_are_one_typed_error(tmp_path, mutate):
    vol, mask = head()
    s = rw_session()
    s.set_volume(vol)
    s.add_prompt(lesion_prompt(mask))
    s.run_round()
    data = s.log()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputFileError, match=r"bad\.json"):
        read_log(path)


def test_non_utf8_and_non_json_logs(tmp_path):
    bad = tmp_path / "bin.json"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputFileError, match="UTF-8"):
        read_log(bad)
    bad.write_text("{not json")
    with pytest.raises(InputFileError, match="invalid JSON"):
        read_log(bad)


def test_one_session_api_for_every_engine(tmp_path):
    """The random walker and a (tiny) ICH-HPINet go through the same session code: the log
    records each engine's name and options, and replay rebuilds it from the log alone."""
    vol, mask = head()
    for spec in ("random_walker:margin_mm=8,z_margin=2",):
        engine = build_engine(spec)
        s = InteractiveSession(engine)
        s.set_volume(vol)
        s.add_prompt(lesion_prompt(mask))
        s.run_round()
        path = s.save_log(tmp_path / "log.json")
        data = read_log(path)
        assert data["engine"]["name"] == parse_method_spec(spec).name
        assert data["engine"]["config"]["margin_mm"] == 8
        again = resume_session(path, vol, autosave=False)
        np.testing.assert_array_equal(again.mask().array, s.mask().array)


def test_log_records_scan_hash_and_path_relative_to_the_log(tmp_path):
    vol, mask = head()
    scan = tmp_path / "data" / "scan.nii.gz"
    scan.parent.mkdir()
    save_nifti(vol, scan)
    from ichseg.io.reader import load_volume

    loaded = load_volume(scan)
    s = rw_session()
    s.set_volume(loaded)
    s.add_prompt(lesion_prompt(mask))
    s.run_round()
    (tmp_path / "logs").mkdir()
    data = read_log(s.save_log(tmp_path / "logs" / "log.json"))
    assert data["scan"]["source_relative_to_log"] == str(Path("..") / "data" / "scan.nii.gz")
    assert len(data["scan"]["sha256"]) == 64
    other, _ = head(seed=1)
    with pytest.raises(PromptError):
        replay_events(rw_session(), data, Volume(other.array[:, :, :8], other.affine))
