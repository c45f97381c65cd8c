"""Fuzzing the readers of user-made files: interaction logs and prompt files never crash with
anything but the project's typed errors, whatever JSON (or bytes) they are given."""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ichseg.errors import IchsegError
from ichseg.interaction.prompts import PromptSet
from ichseg.interaction.session import read_log

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)

_KEYS = ["format", "version", "engine", "session_config", "scan", "events", "rounds", "model"]
_OPS = ["set_volume", "prompt", "run_round", "undo", "redo", "discard_pending", "x"]


@st.composite
def log_like(draw) -> dict:
    """Mostly well-formed logs with random damage (the interesting inputs for a log reader)."""
    event = st.fixed_dictionaries(
        {"op": st.sampled_from(_OPS)},
        optional={"prompt": json_values, "meta": json_values, "volume_ml": json_values},
    )
    base = {
        "format": draw(st.sampled_from(["ichseg-interaction-log", "other", 1])),
        "version": draw(st.sampled_from([1, 2, 3, "2", None, True])),
        "engine": draw(st.one_of(json_values, st.just({"name": "random_walker", "config": {}}))),
        "session_config": draw(st.one_of(json_values, st.just({"threshold": 0.5}))),
        "events": draw(st.lists(event, max_size=5)),
        "model": draw(json_values),
    }
    drop = draw(st.lists(st.sampled_from(_KEYS), max_size=3))
    for key in drop:
        base.pop(key, None)
    extra = draw(st.dictionaries(st.text(max_size=6), json_values, max_size=2))
    return {**base, **extra}


def _write(data: bytes) -> Path:
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as fh:
        fh.write(data)
    return Path(fh.name)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(log_like(), json_values))
def test_log_reader_raises_only_typed_errors(data):
    path = _write(json.dumps(data, allow_nan=True).encode())
    try:
        read_log(path)
    except IchsegError:
        pass
    finally:
        path.unlink()


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=64))
def test_log_reader_survives_arbitrary_bytes(raw):
    path = _write(raw)
    try:
        read_log(path)
    except IchsegError:
        pass
    finally:
        path.unlink()


@st.composite
def prompt_file_like(draw) -> dict:
    prompt = st.fixed_dictionaries(
        {"type": st.sampled_from(["click", "scribble", "box", "lasso", 3])},
        optional={
            "z": json_values,
            "point": json_values,
            "points": st.one_of(json_values, st.lists(st.lists(st.floats(), max_size=3))),
            "positive": json_values,
            "width_vox": json_values,
            "radius_vox": json_values,
            "corners": json_values,
            "y": json_values,
            "x": json_values,
        },
    )
    rnd = st.fixed_dictionaries(
        {"prompts": st.lists(prompt, max_size=3)}, optional={"index": json_values}
    )
    base = {
        "version": draw(st.sampled_from([1, 2, 9, None])),
        "rounds": draw(st.lists(rnd, max_size=3)),
    }
    if draw(st.booleans()):
        base["grid"] = draw(json_values)
    return base


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(prompt_file_like(), json_values))
def test_prompt_reader_raises_only_typed_errors(data):
    with contextlib.suppress(IchsegError):
        PromptSet.from_json(json.dumps(data, allow_nan=True))
