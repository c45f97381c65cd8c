"""Prompt types: JSON round trip, validation errors, grid/world conversions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ichseg.errors import GeometryError, InputFileError, PromptError
from ichseg.interaction.prompts import (
    BOX_FIELDS,
    Box,
    Click,
    Click2D,
    GridRef,
    InteractionRound,
    PromptSet,
    Scribble,
    Scribble2D,
    WorldPrompt,
    convert_prompt,
    prompt_from_dict,
    prompt_from_world,
    prompt_to_world,
    rescale_prompt,
    validate,
)
from ichseg.io.volume import Volume, make_affine, reorient

SHAPE = (16, 48, 48)


def _grid() -> GridRef:
    aff = make_affine((0.5, 0.5, 6.0), "LPS", origin=(10.0, -20.0, 30.0))
    return GridRef(SHAPE, aff)


def test_prompt_set_json_round_trip(tmp_path):
    grid = _grid()
    ps = PromptSet(grid)
    ps = ps.add_round(
        [Click(3, 10.0, 12.5, True, 2.0), Scribble(3, [(1, 2), (4.5, 6)], False, 3.0)],
        {"slice": np.int64(3), "score": np.float32(0.5), "ok": np.bool_(True)},
    )
    ps = ps.add_round([Scribble(7, ((20.0, 20.0),), True)])
    text = ps.to_json()
    json.loads(text)  # plain JSON
    back = PromptSet.from_json(text)
    assert back == ps
    assert back.grid == grid and back.grid.axcodes == ("L", "P", "S")
    assert back.rounds[0].info == {"slice": 3, "score": 0.5, "ok": True}
    assert [r.index for r in back.rounds] == [0, 1]
    assert len(back.all_prompts()) == 3
    assert back.rounds[0].slices == (3,)
    path = ps.save(tmp_path / "p.json")
    assert PromptSet.load(path) == ps
    assert prompt_from_dict(Click(1, 2, 3, False).to_dict()) == Click(1, 2.0, 3.0, False)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Click(1, float("nan"), 3, True),
        lambda: Click(1.5, 2, 3, True),
        lambda: Click(True, 2, 3, True),
        lambda: Click(1, 2, 3, "yes"),
        lambda: Click(1, 2, 3, True, -1.0),
        lambda: Click(1, "2", 3, True),
        lambda: Scribble(1, [], True),
        lambda: Scribble(1, [(1, 2, 3)], True),
        lambda: Scribble(1, [(1, float("inf"))], True),
        lambda: Scribble(1, [(1, 2)], True, 0.0),
        lambda: Scribble2D("ab", True),
        lambda: prompt_from_dict({"type": "box"}),
        lambda: prompt_from_dict({"type": "click", "z": 1, "y": 2}),
        lambda: prompt_from_dict([1, 2]),
        lambda: PromptSet.from_json("{not json"),
        lambda: PromptSet.from_dict({"version": 99}),
        lambda: InteractionRound(0, (Click2D(1, 2, True),)),
    ],
)
def test_malformed_prompts_raise_prompt_error(make):
    with pytest.raises(PromptError):
        make()


@pytest.mark.parametrize(
    "prompt",
    [
        Click(16, 5, 5, True),
        Click(-1, 5, 5, True),
        Click(0, 48.0, 5, True),
        Click(0, 5, -0.6, True),
        Scribble(2, [(5, 5), (5, 60)], False),
    ],
)
def test_validate_out_of_bounds(prompt):
    with pytest.raises(PromptError, match="outside"):
        validate(prompt, SHAPE)


def test_validate_accepts_edges_and_checks_shape_kind():
    validate(Click(15, 47.4, -0.4, True), SHAPE)
    validate(Scribble2D([(0, 0), (47, 47)], True), SHAPE[1:])
    with pytest.raises(PromptError):
        validate(Click(0, 1, 1, True), (48, 48))
    with pytest.raises(PromptError):
        validate("click", SHAPE)  # type: ignore[arg-type]
    with pytest.raises(PromptError):
        PromptSet(_grid(), (InteractionRound(0, (Click(20, 1, 1, True),)),))


def test_missing_prompt_file(tmp_path):
    with pytest.raises(InputFileError):
        PromptSet.load(tmp_path / "nope.json")


def test_grid_axcodes_must_match_affine():
    with pytest.raises(GeometryError):
        GridRef(SHAPE, make_affine((1, 1, 1), "LPS"), ("R", "A", "S"))


def test_world_round_trip_uses_ijk_order():
    grid = _grid()
    vol = Volume(np.zeros(SHAPE[::-1]), grid.affine_array)
    assert GridRef.from_volume(vol) == grid
    c = Click(5, 10.0, 20.0, True, 4.0)
    w = prompt_to_world(c, grid)
    # (z, y, x) -> voxel (i, j, k) = (x, y, z)
    np.testing.assert_allclose(w.points_ras[0], vol.voxel_to_world([[20.0, 10.0, 5.0]])[0])
    assert w.size_mm == pytest.approx(2.0)
    back = prompt_from_world(WorldPrompt.from_dict(w.to_dict()), grid)
    assert back.z == 5 and back.y == pytest.approx(10.0) and back.x == pytest.approx(20.0)
    assert back.radius_vox == pytest.approx(4.0)


def test_convert_prompt_to_reoriented_grid_hits_same_voxel():
    rng = np.random.default_rng(0)
    vol = Volume(rng.random(SHAPE[::-1]), make_affine((0.5, 0.5, 6.0), "LPS", (3, 4, 5)))
    ras, _ = reorient(vol, "RAS")
    src, dst = GridRef.from_volume(vol), GridRef.from_volume(ras)
    s = Scribble(4, [(3.0, 7.0), (10.0, 30.0), (40.0, 2.0)], True, 3.0)
    t = convert_prompt(s, src, dst)
    for (y0, x0), (y1, x1) in zip(s.points, t.points, strict=True):
        a = vol.zyx()[s.z, int(y0), int(x0)]
        b = ras.zyx()[t.z, round(y1), round(x1)]
        assert a == b
    assert t.width_vox == pytest.approx(3.0)


def test_scribble_not_on_one_slice_of_target_grid():
    vol = Volume(np.zeros(SHAPE[::-1]), make_affine((1, 1, 1), "LPS"))
    sag, _ = reorient(vol, "LSP")  # axial y becomes the slice axis
    s = Scribble(4, [(3.0, 7.0), (10.0, 7.0)], True)
    with pytest.raises(PromptError, match="single axial slice"):
        convert_prompt(s, GridRef.from_volume(vol), GridRef.from_volume(sag))


def test_rescale_prompt_matches_grid_conversion():
    grid = _grid()
    c = Click(2, 10.5, 21.0, False, 4.0)
    half = rescale_prompt(c, 0.5)
    assert (half.y, half.x, half.radius_vox) == (5.0, 10.25, 2.0)
    via_world = convert_prompt(c, grid, grid.rescaled_inplane(0.5))
    assert grid.rescaled_inplane(0.5).shape_zyx == (16, 24, 24)
    assert via_world.y == pytest.approx(half.y) and via_world.x == pytest.approx(half.x)
    assert via_world.radius_vox == pytest.approx(half.radius_vox)
    s = rescale_prompt(Scribble(1, [(0.5, 0.5)], True, 1.0), (0.5, 2.0))
    assert s.points[0] == (0.0, 1.5) and s.width_vox == 1.25
    with pytest.raises(PromptError):
        rescale_prompt(c, 0.0)


# --- file format (issue 9 item 11) -----------------------------------------------------------
DOCS = Path(__file__).resolve().parents[2] / "docs" / "prompts.md"


def test_click_uses_the_scribble_point_notation_and_old_files_still_read():
    d = Click(3, 10.0, 12.5, True, 2.0).to_dict()
    assert d["point"] == [10.0, 12.5] and "y" not in d and "x" not in d
    assert Scribble(3, [(10.0, 12.5)], True).to_dict()["points"] == [d["point"]]
    assert prompt_from_dict(d) == Click(3, 10.0, 12.5, True, 2.0)
    legacy = {"type": "click", "z": 3, "y": 10.0, "x": 12.5, "positive": True}
    assert prompt_from_dict(legacy) == Click(3, 10.0, 12.5, True)
    old_file = {"format": "ichseg-prompts", "version": 1, "rounds": [{"prompts": [legacy]}]}
    assert PromptSet.from_dict(old_file).all_prompts() == [Click(3, 10.0, 12.5, True)]
    assert PromptSet().to_dict()["version"] == 2
    with pytest.raises(PromptError, match="not both"):
        prompt_from_dict({**legacy, "point": [1, 2]})
    with pytest.raises(PromptError, match=r"\[y, x\] pair"):
        prompt_from_dict({"type": "click", "z": 3, "point": [1, 2, 3], "positive": True})


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (
            {
                "rounds": [
                    {
                        "prompts": [
                            {
                                "type": "click",
                                "z": 1,
                                "point": [2, 3],
                                "positive": True,
                                "raduis_vox": 3,
                            }
                        ]
                    }
                ]
            },
            ["rounds[0].prompts[0]", "unknown field", "raduis_vox"],
        ),
        (
            {"rounds": [{"prompts": [{"type": "scribble", "z": 1, "points": [[1, 2]]}]}]},
            ["rounds[0].prompts[0]", "missing the field 'positive'"],
        ),
        ({"rounds": [{"promts": []}]}, ["rounds[0]", "promts"]),
        ({"round": []}, ["prompt set", "round"]),
        ({"format": "other", "rounds": []}, ["format"]),
        ({"version": True, "rounds": []}, ["version"]),
        ({"rounds": [{"prompts": [{"z": 1}]}]}, ["rounds[0].prompts[0]", '"type"']),
        ({"grid": {"shape_zyx": 3, "affine": 1}, "rounds": []}, ["grid"]),
    ],
)
def test_prompt_file_errors_name_the_place(tmp_path, data, words):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PromptError) as exc:
        PromptSet.load(path)
    msg = str(exc.value)
    assert msg.startswith(str(path)) and "docs/prompts.md" in msg
    for w in words:
        assert w in msg, msg


def test_prompt_outside_the_files_grid_names_its_place():
    ps = PromptSet(_grid()).add_round([Click(1, 2, 3, True), Click(2, 2, 3, True)]).to_dict()
    ps["rounds"][0]["prompts"][1]["z"] = 99
    with pytest.raises(PromptError, match=r"rounds\[0\]\.prompts\[1\]: prompt slice z=99"):
        PromptSet.from_dict(ps)


def test_load_refuses_a_folder(tmp_path):
    with pytest.raises(InputFileError, match="is a folder"):
        PromptSet.load(tmp_path)


def test_schema_is_packaged_and_matches_the_parser():
    from ichseg.interaction import prompts as mod

    schema = mod.prompt_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    defs = schema["$defs"]
    assert set(defs["click"]["properties"]) == mod.CLICK_FIELDS
    assert set(defs["legacy_click"]["properties"]) == mod.LEGACY_CLICK_FIELDS
    assert set(defs["scribble"]["properties"]) == mod.SCRIBBLE_FIELDS
    assert set(defs["round"]["properties"]) == mod.ROUND_FIELDS
    assert set(schema["properties"]) == mod.PROMPT_SET_FIELDS
    assert set(defs["grid"]["properties"]) == mod.GRID_FIELDS
    assert schema["properties"]["version"]["enum"] == list(mod.SUPPORTED_PROMPT_VERSIONS)
    assert schema["properties"]["format"]["const"] == mod.PROMPT_FILE_FORMAT
    for kind in ("click", "scribble"):
        assert set(defs[kind]["required"]) == {"type", "z", "positive"} | (
            {"point"} if kind == "click" else {"points"}
        )
    assert set(defs["box"]["properties"]) == BOX_FIELDS
    assert set(defs["box"]["required"]) == {"type", "z", "corners"}
    assert {"$ref": "#/$defs/box"} in defs["prompt"]["oneOf"]


def _doc_examples() -> list[dict]:
    import re

    return [json.loads(b) for b in re.findall(r"```json\n(.*?)```", DOCS.read_text(), re.S)]


def test_docs_examples_parse():
    examples = _doc_examples()
    assert len(examples) >= 2
    kinds = set()
    for ex in examples:
        ps = PromptSet.from_dict(ex)
        assert ps.rounds and all(r.prompts for r in ps.rounds)
        kinds |= {type(p).__name__ for p in ps.all_prompts()}
    assert kinds == {"Click", "Scribble", "Box"}


def test_docs_examples_and_written_files_validate_against_the_schema():
    import jsonschema

    from ichseg.interaction.prompts import prompt_schema

    validator = jsonschema.Draft202012Validator(prompt_schema())
    written = PromptSet(_grid()).add_round(
        [Click(1, 2, 3, True), Scribble(1, [(1, 2)], False), Box(1, 0.5, 1.5, 9.5, 7.5, 1)]
    )
    for ex in [*_doc_examples(), written.to_dict()]:
        assert not list(validator.iter_errors(ex))


def test_docs_coordinate_recipe_maps_file_voxels_to_canonical():
    vol = Volume(np.zeros(SHAPE[::-1]), make_affine((0.5, 0.5, 6.0), "LPS", (3, 4, 5)))
    ras_vol, _ = reorient(vol, "RAS")  # a file stored RAS
    from ichseg.io.volume import to_canonical

    grid = GridRef.from_volume(to_canonical(ras_vol)[0])
    i, j, k = 5, 7, 2  # a voxel of the RAS file
    ras = ras_vol.affine[:3, :3] @ np.array([i, j, k]) + ras_vol.affine[:3, 3]
    z, y, x = grid.ras_to_zyx(ras[None])[0]
    ras_vol.array[i, j, k] = 1.0
    assert to_canonical(ras_vol)[0].zyx()[round(z), round(y), round(x)] == 1.0


# ------------------------------------------------------------------------------------ boxes
def test_box_json_round_trip_and_fields(tmp_path):
    b = Box(3, 9.5, 11.5, 20.5, 30.5)
    d = b.to_dict()
    assert d == {"type": "box", "z": 3, "corners": [[9.5, 11.5], [20.5, 30.5]], "ring_vox": 2}
    assert prompt_from_dict(d) == b
    assert prompt_from_dict({"type": "box", "z": 3, "corners": [[9.5, 11.5], [20.5, 30.5]]}) == b
    assert prompt_from_dict({**d, "ring_vox": 1.0}).ring_vox == 1
    assert b.positive is False and b.pixel_ranges() == ((10, 20), (12, 30))
    assert b.points_zyx().shape == (4, 3) and set(b.points_zyx()[:, 0]) == {3.0}
    ps = PromptSet(_grid()).add_round([b, Click(3, 15, 20, True)])
    back = PromptSet.load(ps.save(tmp_path / "p.json"))
    assert back == ps and isinstance(back.rounds[0].prompts[0], Box)
    with pytest.raises(PromptError, match="unknown field"):
        prompt_from_dict({**d, "positive": True})
    with pytest.raises(PromptError, match="missing the field 'corners'"):
        prompt_from_dict({"type": "box", "z": 3})
    for corners in ([[1, 2]], [[1, 2], [3]], "ab", [[1, 2], [3, "x"]]):
        with pytest.raises(PromptError):
            prompt_from_dict({"type": "box", "z": 3, "corners": corners})
    with pytest.raises(PromptError, match="'click', 'scribble' or 'box'"):
        prompt_from_dict({"type": "lasso"})


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((1, 5.0, 5.0, 5.0, 9.0), "y0 < y1"),
        ((1, 5.0, 9.0, 8.0, 2.0), "x0 < x1"),
        ((1, float("nan"), 1.0, 4.0, 5.0), "finite"),
        ((1, 1.0, 1.0, float("inf"), 5.0), "finite"),
        ((1, 2.2, 1.0, 2.8, 5.0), "no pixel centre"),
        ((1.5, 1.0, 1.0, 4.0, 5.0), "integer slice"),
        ((1, 1.0, 1.0, 4.0, 5.0, 0), "ring_vox"),
        ((1, 1.0, 1.0, 4.0, 5.0, 1.5), "ring_vox"),
        ((1, 1.0, 1.0, 4.0, 5.0, True), "ring_vox"),
    ],
)
def test_box_intrinsic_validation(args, match):
    with pytest.raises(PromptError, match=match):
        Box(*args)


def test_box_validated_against_the_grid():
    grid = _grid()  # (16, 48, 48)
    validate(Box(0, -0.5, -0.5, 47.5, 47.5), grid)  # the whole slice: edges at -0.5 / 47.5
    for bad, match in (
        (Box(16, 1, 1, 4, 5), "outside the volume"),
        (Box(-1, 1, 1, 4, 5), "outside the volume"),
        (Box(2, -0.6, 1, 4, 5), "not inside"),
        (Box(2, 1, 1, 4, 47.6), "not inside"),
    ):
        with pytest.raises(PromptError, match=match):
            validate(bad, grid)
    with pytest.raises(PromptError, match=r"rounds\[0\]\.prompts\[0\].*not inside"):
        PromptSet.from_dict(
            {
                "grid": grid.to_dict(),
                "rounds": [{"prompts": [{"type": "box", "z": 1, "corners": [[0, 0], [9, 60]]}]}],
            }
        )


def test_box_around_a_mask_and_its_geometry():
    m = np.zeros((48, 48), bool)
    m[10:14, 20:31] = True
    b = Box.around(m, 4, ring_vox=1)
    assert (b.y0, b.x0, b.y1, b.x1, b.ring_vox) == (9.5, 19.5, 13.5, 30.5, 1)
    with pytest.raises(PromptError, match="empty"):
        Box.around(np.zeros((4, 4)), 0)
    # resampling maps pixel edges to pixel edges; the world round trip is exact
    r = rescale_prompt(b, 2.0)
    assert (r.y0, r.x0, r.y1, r.x1, r.ring_vox) == (19.5, 39.5, 27.5, 61.5, 2)
    grid = _grid()
    w = prompt_to_world(b, grid)
    assert w.kind == "box" and len(w.points_ras) == 4 and w.positive is False
    assert WorldPrompt.from_dict(w.to_dict()) == w
    assert prompt_from_world(w, grid) == b
    ras_grid = GridRef.from_volume(
        reorient(Volume(np.zeros(SHAPE[::-1]), grid.affine_array), "RAS")[0]
    )
    there = convert_prompt(b, grid, ras_grid)  # flipped in-plane axes: corners re-sorted
    assert isinstance(there, Box) and there.y0 < there.y1 and there.x0 < there.x1
    assert convert_prompt(there, ras_grid, grid) == b


def _box_phantom():
    """Canonical LPS (6, 40, 40) scan: a 70 HU square bleed (rows/cols 15..24, slices 2..4) in
    35 HU brain, touching on slice 3 a 70 HU strip below it (rows 25..34) that is not blood."""
    img = np.full((40, 40, 6), 35.0)  # (i, j, k) = (x, y, z)
    img[15:25, 15:25, 2:5] = 70.0
    img[15:25, 25:35, 3] = 70.0
    return Volume(img.astype(np.int16), make_affine((1.0, 1.0, 5.0), "LPS", (0, 0, 0)))


def test_random_walker_stays_inside_the_box_on_its_slice():
    from ichseg.interaction.random_walker import RandomWalkerConfig, RandomWalkerEngine
    from ichseg.interaction.session import InteractiveSession

    rw = RandomWalkerConfig(margin_mm=12.0, downsample=1)
    plain = InteractiveSession(RandomWalkerEngine(rw))
    plain.set_volume(_box_phantom())
    plain.add_click(3, 20, 20, True)
    free = plain.run_round().mask.transpose(2, 1, 0)  # (z, y, x)
    assert free[3, 25:29, 16:24].mean() > 0.7  # without a box it leaks into the strip

    boxed = InteractiveSession(RandomWalkerEngine(rw))
    boxed.set_volume(_box_phantom())
    boxed.add_box(3, 14.5, 14.5, 24.5, 24.5)  # pixels 15..24 inside
    boxed.add_click(3, 20, 20, True)
    outside = boxed.engine.box_outside(boxed.pending)[3]
    assert outside[15:25, 15:25].sum() == 0 and outside.sum() == 40 * 40 - 100
    res = boxed.run_round()
    mask = res.mask.transpose(2, 1, 0)
    inside = ~outside
    assert mask[3][~inside].sum() == 0  # nothing outside the box on its slice
    assert mask[3, 15:24, 15:25].all()  # (row 24 borders the strip's background seeds)
    assert mask[2, 16:24, 16:24].all()  # neighbouring slices are not cut by the box
    assert res.interacted_slices == [3]


def test_session_box_checks_and_box_alone(tmp_path):
    from ichseg.interaction.random_walker import RandomWalkerEngine
    from ichseg.interaction.session import NOTE_ONLY_BACKGROUND, InteractiveSession

    s = InteractiveSession(RandomWalkerEngine())
    s.set_volume(_box_phantom())
    with pytest.raises(PromptError, match="not inside"):
        s.add_box(3, 1, 1, 45, 5)
    with pytest.raises(PromptError, match="box ring width 40 px"):
        s.add_box(3, 10, 10, 20, 20, ring=40)  # 40 mm > max_prompt_size_mm
    s.add_box(3, 10.5, 10.5, 29.5, 29.5)
    res = s.run_round()  # a box alone marks no hemorrhage
    assert res.note == NOTE_ONLY_BACKGROUND and res.mask.sum() == 0


def test_box_prompt_file_end_to_end_with_the_random_walker(tmp_path):
    """A prompt file with a box (as ``ichseg segment`` reads it) through a session, its log
    and a replay."""
    from ichseg.interaction.random_walker import RandomWalkerConfig, RandomWalkerEngine
    from ichseg.interaction.session import InteractiveSession, read_log, replay_events

    path = tmp_path / "prompts.json"
    path.write_text(
        json.dumps(
            {
                "rounds": [
                    {
                        "prompts": [
                            {"type": "box", "z": 3, "corners": [[14.5, 14.5], [24.5, 24.5]]},
                            {"type": "click", "z": 3, "point": [20, 20], "positive": True},
                        ]
                    },
                    {"prompts": [{"type": "click", "z": 2, "point": [20, 20], "positive": True}]},
                ]
            }
        )
    )
    ps = PromptSet.load(path)
    rw = RandomWalkerConfig(margin_mm=12.0, downsample=1)
    session = InteractiveSession(RandomWalkerEngine(rw))
    session.set_volume(_box_phantom())
    for rnd in ps.rounds:
        session.add_prompts(rnd.prompts)
        session.run_round()
    mask = session.mask().array.transpose(2, 1, 0)
    assert mask[3, :15].sum() == 0 and mask[3, 25:].sum() == 0
    assert mask[3, 15:24, 15:25].all()
    log = session.save_log(tmp_path / "log.json")
    data = read_log(log)
    assert any(ev.get("prompt", {}).get("type") == "box" for ev in data["events"])
    again = InteractiveSession(RandomWalkerEngine(rw))
    replay_events(again, data, _box_phantom())
    assert np.array_equal(again.mask().array, session.mask().array)


def test_segment_cli_reads_box_prompts(tmp_path):
    """``ichseg segment`` with a box + click prompt file (tiny checkpoint), then ``replay``."""
    import torch
    from test_interaction_session import TINY, phantom
    from typer.testing import CliRunner

    from ichseg.cli import app, register_commands
    from ichseg.io.nifti import write_nifti
    from ichseg.io.volume import to_canonical
    from ichseg.models.registry import build_model, save_model

    register_commands()
    torch.manual_seed(0)
    ckpt = save_model(build_model("hpinet", "lite", **TINY), tmp_path / "tiny.pt")
    vol, mask = phantom()
    scan = write_nifti(vol, tmp_path / "scan.nii.gz")
    gt = to_canonical(mask)[0].zyx()
    z = int(np.argmax(gt.reshape(gt.shape[0], -1).sum(1)))
    ys, xs = np.nonzero(gt[z])
    box = Box.around(gt[z], z)
    click = Click(z, float(np.median(ys)), float(np.median(xs)), True)
    prompts = PromptSet().add_round([box, click]).save(tmp_path / "prompts.json")
    out, log = tmp_path / "mask.nii.gz", tmp_path / "log.json"
    runner = CliRunner()
    args = ["segment", str(scan), "--prompts", str(prompts), "--out", str(out)]
    res = runner.invoke(app, [*args, "--weights", str(ckpt), "--log-out", str(log)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "round 1" in res.output
    assert '"type": "box"' in log.read_text()
    res = runner.invoke(app, ["replay", str(log), "--out", str(tmp_path / "again.nii.gz")])
    assert res.exit_code == 0, res.output + repr(res.exception)
