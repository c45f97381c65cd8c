"""Prompt types: JSON round trip, validation errors, grid/world conversions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ichseg.errors import GeometryError, InputFileError, PromptError
from ichseg.interaction.prompts import (
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
    assert kinds == {"Click", "Scribble"}


def test_docs_examples_and_written_files_validate_against_the_schema():
    jsonschema = pytest.importorskip("jsonschema")
    from ichseg.interaction.prompts import prompt_schema

    validator = jsonschema.Draft202012Validator(prompt_schema())
    written = PromptSet(_grid()).add_round([Click(1, 2, 3, True), Scribble(1, [(1, 2)], False)])
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
