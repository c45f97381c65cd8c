"""quantify_mask / compare_masks: known volumes on LPS and RAS grids, labels, QA flags, expansion
flags exactly at the thresholds, JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ichseg.errors import ConfigError, GeometryError, IntensityError
from ichseg.io.volume import Intensity, Volume, Window, make_affine, reorient
from ichseg.quantify.analysis import (
    compare_masks,
    format_compare_text,
    format_quantify_text,
    is_intraventricular,
    jsonable,
    label_names_for,
    parse_label_names,
    quantify_mask,
)

SP = (0.5, 0.8, 5.0)  # voxel 2 mm³


def labelled_case(codes: str = "LPS") -> tuple[Volume, Volume]:
    """IPH box (2 x 400 voxels) with an IVH part touching it, a 1-voxel dense speck, on a scan.

    Returned on the grid ``codes`` (same world geometry for every orientation)."""
    a = np.zeros((40, 30, 8), np.uint8)
    a[10:30, 5:25, 2:4] = 2  # 800 voxels IPH = 1.6 mL
    a[10:30, 25:27, 3] = 3  # 40 voxels IVH = 0.08 mL, touching the IPH
    a[35, 2, 5] = 2  # 1 voxel speck (0.002 mL), 400 HU
    img = np.full(a.shape, 35, np.int16)
    img[a > 0] = 65
    img[35, 2, 5] = 400
    affine = make_affine(SP, "LPS", (20.0, -10.0, 40.0))
    mask = Volume(a, affine, Intensity.label())
    scan = Volume(img, affine)
    if codes != "LPS":
        mask, scan = reorient(mask, codes)[0], reorient(scan, codes)[0]
    return mask, scan


@pytest.mark.parametrize("codes", ["LPS", "RAS", "PSL"])
def test_known_volumes_labels_components_any_orientation(codes: str) -> None:
    mask, scan = labelled_case(codes)
    assert mask.axcodes == tuple(codes)
    r = quantify_mask(mask, scan)
    assert r.n_voxels == 841
    assert r.planimetric_ml == pytest.approx(841 * 0.002)
    assert r.label_names_source == "subtypes" and r.has_subtypes
    by_name = {lab.name: lab for lab in r.labels}
    assert by_name["IPH"].volume_ml == pytest.approx(1.602)
    assert by_name["IVH"].volume_ml == pytest.approx(0.08)
    assert by_name["SDH"].volume_ml == 0.0 and by_name["IPH"].n_components == 2
    big, speck = r.components
    assert big.info.volume_ml == pytest.approx(1.68) and speck.info.n_voxels == 1
    assert big.labels == {"IPH": pytest.approx(1.6), "IVH": pytest.approx(0.08)}
    assert big.mean_hu == pytest.approx(65) and speck.mean_hu == pytest.approx(400)
    # ABC/2 on the largest component: A along i of the 20x20-voxel box (10 mm x 16 mm), 2 slices
    assert r.abc2_component == 1
    assert r.abc2.n_slices == 2 and r.abc2.c_mm == pytest.approx(10.0)
    assert r.abc2.a_mm == pytest.approx(math.hypot(10.0, 17.6), abs=0.6)
    codes_flagged = r.flags
    assert codes_flagged == ["calcification", "intraventricular"]
    assert "#2" in r.check("calcification").message
    assert r.check("edge").status == "ok"


def test_lps_and_ras_give_the_same_numbers() -> None:
    lps = quantify_mask(*labelled_case("LPS")).as_dict()
    ras = quantify_mask(*labelled_case("RAS")).as_dict()
    for key in ("planimetric_ml", "n_voxels", "abc2_to_planimetric"):
        assert lps[key] == pytest.approx(ras[key]), key
    assert lps["flags"] == ras["flags"] and lps["labels"] == ras["labels"]
    for key in ("a_mm", "b_mm", "c_mm", "volume_ml", "weighted_slices"):
        assert lps["abc2"][key] == pytest.approx(ras["abc2"][key]), key
    for c0, c1 in zip(lps["components"], ras["components"], strict=True):
        assert c0["centroid_ras"] == pytest.approx(c1["centroid_ras"])
        assert c0["volume_ml"] == pytest.approx(c1["volume_ml"])


def test_abc2_on_the_whole_mask_is_stretched_by_a_far_speck() -> None:
    mask, scan = labelled_case()
    whole = quantify_mask(mask, scan, abc2_on="all")
    assert whole.abc2_component is None
    assert whole.abc2.n_slices == 3  # the speck's slice counts (weight 0)
    with pytest.raises(ConfigError):
        quantify_mask(mask, abc2_on="some")  # type: ignore[arg-type]


@pytest.mark.parametrize("codes", ["LPS", "RAS"])
def test_edge_faces_are_named_anatomically(codes: str) -> None:
    a = np.zeros((10, 12, 6), np.uint8)
    a[0:3, 4:6, 2:4] = 1  # at canonical i = 0: the patient's right
    a[5:7, 5:7, 5] = 1  # last slice: superior
    mask = Volume(a, make_affine((1.0, 1.0, 3.0)), Intensity.label())
    if codes != "LPS":
        mask = reorient(mask, codes)[0]
    r = quantify_mask(mask)
    edge = r.check("edge")
    assert edge.status == "flagged"
    assert edge.details["faces"] == ["right", "superior"]
    assert "lower bound" in edge.message and "field of view" in edge.message
    touched = {c.touches for c in r.components}
    assert touched == {("right",), ("superior",)}


def test_calcification_needs_hu() -> None:
    mask, scan = labelled_case()
    no_scan = quantify_mask(mask)
    assert no_scan.check("calcification").status == "unknown"
    assert "--scan" in no_scan.check("calcification").message
    win = Window(40, 80)
    windowed = scan.with_array(
        np.clip((scan.array - win.lo) / win.width * 255, 0, 255).astype(np.uint8),
        Intensity.windowed(win),
    )
    clipped = quantify_mask(mask, windowed).check("calcification")
    assert clipped.status == "unknown" and "clipped at 80 HU" in clipped.message
    ok_scan = scan.with_array(np.full(scan.shape, 60, np.int16))
    assert quantify_mask(mask, ok_scan).check("calcification").status == "ok"
    # a larger dense component (0.2 mL) is not a calcification candidate
    big = quantify_mask(mask, scan, calcification_max_ml=0.001).check("calcification")
    assert big.status == "ok"


def test_intraventricular_by_label_or_cannot_tell() -> None:
    mask, scan = labelled_case()
    binary = mask.with_array((mask.array > 0).astype(np.uint8))
    r = quantify_mask(binary, scan)
    assert r.label_names_source == "binary" and not r.has_subtypes
    ivh = r.check("intraventricular")
    assert ivh.status == "unknown" and "cannot be told" in ivh.message
    named = quantify_mask(binary, scan, label_names={1: "IVH"}).check("intraventricular")
    assert named.status == "flagged" and named.details["components"] == [1, 2]
    no_ivh = quantify_mask(mask.with_array(np.where(mask.array == 3, 2, mask.array)), scan)
    assert no_ivh.check("intraventricular").status == "ok"
    custom = quantify_mask(mask, scan, label_names={2: "ICH", 3: "intraventricular blood"})
    assert custom.check("intraventricular").status == "flagged"
    assert [lab.name for lab in custom.labels] == ["ICH", "intraventricular blood"]


def test_empty_mask() -> None:
    empty = Volume(np.zeros((6, 6, 3), np.uint8), make_affine(SP), Intensity.label())
    r = quantify_mask(empty)
    assert r.planimetric_ml == 0.0 and r.components == [] and r.flags == ["empty"]
    assert math.isnan(r.abc2_ratio) and r.as_dict()["abc2_to_planimetric"] is None
    assert "0 mL" in format_quantify_text(r)


def test_bad_masks_and_grids() -> None:
    mask, scan = labelled_case()
    prob = mask.with_array(np.full(mask.shape, 0.3, np.float32))
    with pytest.raises(IntensityError, match="probability"):
        quantify_mask(prob)
    with pytest.raises(IntensityError, match=">= 0"):
        quantify_mask(mask.with_array(np.full(mask.shape, -1, np.int16)))
    other = Volume(scan.array[:, :, :4], scan.affine)
    with pytest.raises(GeometryError):
        quantify_mask(mask, other)
    with pytest.raises(ConfigError):
        quantify_mask(mask, calcification_max_ml=0)
    # integer-valued float labels are fine
    fl = quantify_mask(mask.with_array(mask.array.astype(np.float32)), scan)
    assert fl.planimetric_ml == pytest.approx(841 * 0.002)


def test_label_name_parsing() -> None:
    assert parse_label_names("2=IPH, 3=IVH") == {2: "IPH", 3: "IVH"}
    assert parse_label_names(["2=IPH", "3=IVH,5=SDH"]) == {2: "IPH", 3: "IVH", 5: "SDH"}
    assert parse_label_names(None) == {} and parse_label_names([]) == {}
    for bad in ("IPH", "0=x", "256=x", "a=b", "2=", "2=a,2=b"):
        with pytest.raises(ConfigError):
            parse_label_names(bad)
    assert is_intraventricular("Hemorrhage IVH") and is_intraventricular("Intraventricular")
    assert not is_intraventricular("IPH") and not is_intraventricular("DIVHX")
    assert label_names_for([1]) == ({1: "hemorrhage"}, "binary")
    assert label_names_for([7, 9])[1] == "unnamed"
    assert label_names_for([1, 2], meta={"label_names": {"1": "IPH"}}) == (
        {1: "IPH", 2: "label 2"},
        "dicom-seg",
    )


# --- compare ------------------------------------------------------------------------------------
def box_mask(n_voxels: int, spacing=(1.0, 1.0, 10.0), codes: str = "LPS", shape=(50, 50, 4)):
    """A mask of exactly ``n_voxels`` voxels (0.01 mL each for the default spacing)."""
    a = np.zeros(shape, np.uint8)
    a.reshape(-1)[:n_voxels] = 1
    vol = Volume(a, make_affine(spacing, "LPS"), Intensity.label())
    return reorient(vol, codes)[0] if codes != "LPS" else vol


@pytest.mark.parametrize(
    ("base_ml", "follow_ml", "expected"),
    [
        (20.0, 26.0, {"dowlatshahi": False, "kazui": False, "jcm2025": True}),  # 6 mL, 30 %
        (20.0, 26.1, {"dowlatshahi": True, "kazui": False, "jcm2025": True}),  # > 6 mL
        (3.0, 3.99, {"dowlatshahi": False, "kazui": False, "jcm2025": True}),  # exactly 33 %
        (3.0, 4.0, {"dowlatshahi": True, "kazui": False, "jcm2025": True}),  # 33.3 %
        (10.0, 14.0, {"dowlatshahi": True, "kazui": True, "jcm2025": True}),  # ratio 1.4
        (10.0, 13.99, {"dowlatshahi": True, "kazui": False, "jcm2025": True}),
        (50.0, 62.5, {"dowlatshahi": True, "kazui": True, "jcm2025": True}),  # 12.5 mL, 25 %
        (50.0, 62.4, {"dowlatshahi": True, "kazui": False, "jcm2025": False}),
        (12.0, 12.0, {"dowlatshahi": False, "kazui": False, "jcm2025": False}),
    ],
)
def test_expansion_flags_exactly_at_the_thresholds(base_ml, follow_ml, expected) -> None:
    b = box_mask(round(base_ml * 100), shape=(80, 80, 10))
    f = box_mask(round(follow_ml * 100), spacing=(1.0, 1.0, 10.0), codes="RAS", shape=(80, 80, 10))
    cmp = compare_masks(b, f)
    assert cmp.baseline.volume_ml == pytest.approx(base_ml)
    assert cmp.followup.volume_ml == pytest.approx(follow_ml)
    assert cmp.expansion.flags == expected


def test_compare_on_different_grids_with_rates() -> None:
    base = box_mask(1000)  # 10 mL on 1 x 1 x 10 mm
    follow = box_mask(2000, spacing=(0.5, 0.5, 5.0), codes="RAS", shape=(60, 60, 10))  # 2.5 mL
    cmp = compare_masks(base, follow, interval_hours=5.0, onset_hours=2.0, criterion="kazui")
    e = cmp.expansion
    assert cmp.followup.volume_ml == pytest.approx(2.5) and not cmp.same_grid
    assert e.abs_change_ml == pytest.approx(-7.5) and e.rel_change == pytest.approx(-0.75)
    assert e.growth_ml_per_h == pytest.approx(-1.5) and e.uhg_ml_per_h == pytest.approx(5.0)
    assert not e.expanded and e.criterion == "kazui"
    assert any("different grids" in n for n in cmp.notes)
    assert any("slice spacing differs" in n for n in cmp.notes)
    text = format_compare_text(cmp)
    assert "-1.50 mL/h over 5 h" in text and "<- primary" in text
    doc = cmp.as_dict()
    assert doc["interval_hours"] == 5.0 and doc["baseline"]["orientation"] == "LPS"
    assert set(doc["flags"]) == {"dowlatshahi", "kazui", "jcm2025"}
    json.dumps(doc, allow_nan=False)


def test_compare_empty_baseline_is_strict_json() -> None:
    cmp = compare_masks(box_mask(0), box_mask(150))
    doc = cmp.as_dict()
    assert doc["rel_change"] is None and doc["ratio"] is None
    assert all(doc["flags"].values())  # any new bleed counts as expansion
    assert "undefined" in format_compare_text(cmp)
    json.dumps(doc, allow_nan=False)
    with pytest.raises(ConfigError):
        compare_masks(box_mask(1), box_mask(1), interval_hours=-1)


def test_jsonable() -> None:
    out = jsonable({"a": np.float32(1.5), "b": (np.int64(2), math.inf), "c": np.array([1, 2])})
    assert out == {"a": 1.5, "b": [2, None], "c": [1, 2]}
    json.dumps(quantify_mask(*labelled_case()).as_dict(), allow_nan=False)
