"""Synthetic head-CT phantoms: determinism, tissue HU, masks, lesion bookkeeping, dataset layout."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ichseg.cli import app, register_commands
from ichseg.data.subtypes import PHYSIONET_CSV_COLUMNS, PHYSIONET_SUBTYPE_COLUMNS, Subtype
from ichseg.data.synthetic import (
    PhantomConfig,
    SyntheticCase,
    Tissue,
    generate_case,
    write_dataset,
)
from ichseg.data.synthetic_fields import local_std
from ichseg.errors import ConfigError, DatasetLayoutError
from ichseg.io.nifti import read_nifti
from ichseg.io.volume import IntensityKind

SMALL = PhantomConfig.for_shape((64, 64, 12))
MEDIUM = PhantomConfig.for_shape((128, 128, 16), hemorrhage_free_fraction=1.0)


def only(subtype: Subtype, **kw: object) -> PhantomConfig:
    probs = {s: (1.0 if s == subtype else 0.0) for s in Subtype}
    return PhantomConfig.for_shape(
        (96, 96, 14), subtype_probabilities=probs, hemorrhage_free_fraction=0.0, **kw
    )


def check_consistent(case: SyntheticCase) -> None:
    """Invariants every case must satisfy."""
    img, mask, sub = case.image, case.mask, case.subtype_mask
    assert img.array.dtype == np.int16 and img.intensity.kind == IntensityKind.HU
    assert mask.array.dtype == np.uint8 and sub.array.dtype == np.uint8
    assert img.axcodes == ("L", "P", "S")
    assert img.same_geometry(mask) and img.same_geometry(sub)
    assert set(np.unique(mask.array)) <= {0, 1}
    assert set(np.unique(sub.array)) <= {0} | {int(s) for s in Subtype}
    np.testing.assert_array_equal(mask.array, (sub.array > 0).astype(np.uint8))
    assert len(case.slice_subtypes) == img.shape[2]
    for k, present in enumerate(case.slice_subtypes):
        labels = {Subtype(int(v)) for v in np.unique(sub.array[:, :, k]) if v}
        assert present == labels, k
    vox = img.voxel_volume_ml
    total = int(mask.array.sum())
    assert case.info["volume_ml"] == pytest.approx(total * vox)
    assert sum(e["voxels"] for e in case.info["lesions"]) == total
    for e in case.info["lesions"]:
        assert e["volume_ml"] == pytest.approx(e["voxels"] * vox)
        assert e["voxels"] > 0
    assert case.info["hemorrhage"] == (total > 0)


# ------------------------------------------------------------------------------------ config
def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="shape"):
        PhantomConfig(shape=(4, 64, 12))
    with pytest.raises(ConfigError, match="inplane_spacing_mm"):
        PhantomConfig(inplane_spacing_mm=(0.5, 0.4))
    with pytest.raises(ConfigError, match="hemorrhage_free_fraction"):
        PhantomConfig(hemorrhage_free_fraction=1.5)
    with pytest.raises(ConfigError, match="unknown subtype"):
        PhantomConfig(subtype_probabilities={"XYZ": 0.5})
    with pytest.raises(ConfigError, match="at least one subtype"):
        PhantomConfig(subtype_probabilities={s: 0.0 for s in Subtype})
    with pytest.raises(ConfigError, match="seed"):
        generate_case(SMALL, seed=-1)
    with pytest.raises(ConfigError, match="index"):
        generate_case(SMALL, seed=0, index=-2)


def test_config_round_trip_and_for_shape() -> None:
    cfg = PhantomConfig.for_shape((64, 64, 12), noise_hu=3.0)
    assert cfg.shape == (64, 64, 12) and cfg.noise_hu == 3.0
    assert cfg.inplane_spacing_mm == pytest.approx((0.43 * 8, 0.5 * 8))
    assert cfg.slice_spacing_mm == pytest.approx((4.8 * 32 / 12, 6.0 * 32 / 12))
    data = json.loads(json.dumps(cfg.to_dict()))
    assert PhantomConfig.from_dict(data) == cfg
    assert PhantomConfig(subtype_probabilities={"iph": 1.0}).subtype_probabilities == {
        Subtype.IPH: 1.0
    }
    with pytest.raises(ConfigError, match="unknown PhantomConfig field"):
        PhantomConfig.from_dict({"nonsense": 1})


# ------------------------------------------------------------------------------- generation
def test_deterministic_per_seed_and_index() -> None:
    a = generate_case(SMALL, seed=11, index=2)
    b = generate_case(SMALL, seed=11, index=2)
    np.testing.assert_array_equal(a.image.array, b.image.array)
    np.testing.assert_array_equal(a.subtype_mask.array, b.subtype_mask.array)
    np.testing.assert_array_equal(a.image.affine, b.image.affine)
    assert json.dumps(a.info, sort_keys=True) == json.dumps(b.info, sort_keys=True)
    c = generate_case(SMALL, seed=11, index=3)
    d = generate_case(SMALL, seed=12, index=2)
    assert not np.array_equal(a.image.array, c.image.array)
    assert not np.array_equal(a.image.array, d.image.array)
    for case in (a, c, d):
        check_consistent(case)


def test_geometry_follows_config() -> None:
    case = generate_case(SMALL, seed=3, index=0)
    sx, sy, sz = case.image.spacing
    assert case.image.shape == (64, 64, 12)
    assert sx == pytest.approx(sy)
    assert SMALL.inplane_spacing_mm[0] <= sx <= SMALL.inplane_spacing_mm[1]
    assert SMALL.slice_spacing_mm[0] <= sz <= SMALL.slice_spacing_mm[1]
    assert case.info["spacing_mm"] == pytest.approx([sx, sy, sz])


def test_tissue_hounsfield_units() -> None:
    brain, csf, bone, air, blood = [], [], [], [], []
    for index in range(2):
        case = generate_case(MEDIUM, seed=5, index=index, tissue_map=True)
        check_consistent(case)
        assert case.tissue is not None and case.tissue.same_geometry(case.image)
        img, t = case.image.array, case.tissue.array
        brain.append(np.median(img[t == Tissue.BRAIN]))
        csf.append(np.median(img[t == Tissue.CSF]))
        bone.append(np.median(img[t == Tissue.BONE]))
        air.append(np.median(img[t == Tissue.AIR]))
        assert not (t == Tissue.HEMORRHAGE).any()
    assert all(25 <= v <= 45 for v in brain), brain
    assert all(0 <= v <= 15 for v in csf), csf
    assert all(v > 700 for v in bone), bone
    assert all(abs(v + 1000) <= 10 for v in air), air
    for index in range(2):  # IPH-only cases for the hematoma density
        cfg = only(Subtype.IPH, edema_probability=0.0)
        case = generate_case(cfg, seed=8, index=index, tissue_map=True)
        assert case.tissue is not None
        np.testing.assert_array_equal(case.tissue.array == Tissue.HEMORRHAGE, case.mask.array > 0)
        blood.append(np.median(case.image.array[case.mask.array > 0]))
    assert blood and all(50 <= v <= 90 for v in blood), blood


def test_noise_is_correlated_and_calibrated() -> None:
    cfg = PhantomConfig(shape=(160, 160, 4), hemorrhage_free_fraction=1.0, noise_jitter=(1, 1))
    case = generate_case(cfg, seed=2, index=0, tissue_map=True)
    assert case.tissue is not None
    img = case.image.array.astype(np.float64)
    k = 2
    brain = case.tissue.array[:, :, k] == Tissue.BRAIN
    from scipy import ndimage

    core = ndimage.binary_erosion(brain, iterations=4)
    assert core.sum() > 500
    sd = local_std(img[:, :, k])[core]
    assert 1.6 <= float(np.median(sd)) <= 3.8
    # neighbouring pixels are correlated (reconstruction-kernel-like texture)
    r = img[:, :, k] - ndimage.uniform_filter(img[:, :, k], 9)
    a, b = r[1:, :][core[1:, :] & core[:-1, :]], r[:-1, :][core[1:, :] & core[:-1, :]]
    assert np.corrcoef(a, b)[0, 1] > 0.3


def test_hemorrhage_free_cases_have_empty_masks() -> None:
    cfg = PhantomConfig.for_shape((64, 64, 12), hemorrhage_free_fraction=1.0)
    for index in range(2):
        case = generate_case(cfg, seed=4, index=index)
        check_consistent(case)
        assert not case.mask.array.any() and not case.subtype_mask.array.any()
        assert case.info["lesions"] == [] and all(not s for s in case.slice_subtypes)


@pytest.mark.parametrize("subtype", list(Subtype))
def test_each_subtype_is_generated(subtype: Subtype) -> None:
    cfg = only(subtype, volume_ml_median=12.0)
    found = False
    for index in range(3):
        case = generate_case(cfg, seed=21, index=index)
        check_consistent(case)
        labels = set(np.unique(case.subtype_mask.array)) - {0}
        assert labels <= {int(subtype)}
        if labels:
            found = True
            entry = case.info["lesions"][0]
            assert entry["subtype"] == subtype.name
            assert entry["volume_ml"] > 0 and len(entry["centre_ras_mm"]) == 3
            k = round(entry["centre_voxel_ijk"][2])
            assert 0 <= k < case.image.shape[2]
    assert found


def test_lesion_volume_follows_target() -> None:
    cfg = only(Subtype.IPH, extra_iph_probability=0.0, volume_log_sigma=(0.01, 0.01))
    case = generate_case(cfg, seed=9, index=0)
    check_consistent(case)
    target = case.info["target_volume_ml"]
    assert case.info["volume_ml"] == pytest.approx(target, rel=0.05)


# ------------------------------------------------------------------------------------ dataset
def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


def test_write_dataset_layout(tmp_path: Path) -> None:
    out = write_dataset(tmp_path / "ds", 3, seed=7, config=SMALL, progress=False)
    for sub in ("ct_scans", "masks", "masks_subtype"):
        assert sorted(p.name for p in (out / sub).iterdir()) == ["001.nii", "002.nii", "003.nii"]
    rows = read_csv(out / "hemorrhage_diagnosis_raw_ct.csv")
    assert tuple(rows[0]) == PHYSIONET_CSV_COLUMNS
    body = [dict(zip(rows[0], map(int, r), strict=True)) for r in rows[1:]]
    assert len(body) == 3 * 12
    for n in (1, 2, 3):
        img = read_nifti(out / "ct_scans" / f"{n:03d}.nii")
        sub = read_nifti(out / "masks_subtype" / f"{n:03d}.nii")
        mask = read_nifti(out / "masks" / f"{n:03d}.nii")
        assert img.array.dtype == np.int16 and mask.array.dtype == np.uint8
        assert img.meta["qform_code"] == 1 and img.meta["sform_code"] == 1
        np.testing.assert_array_equal(mask.array, sub.array > 0)
        mine = generate_case(SMALL, 7, n - 1)  # case n-1 regardless of how many were written
        np.testing.assert_array_equal(img.array, mine.image.array)
        np.testing.assert_allclose(img.affine, mine.image.affine, atol=1e-5)
        for r in (r for r in body if r["PatientNumber"] == n):
            k = r["SliceNumber"] - 1
            present = {Subtype(int(v)) for v in np.unique(sub.array[:, :, k]) if v}
            for st, col in PHYSIONET_SUBTYPE_COLUMNS.items():
                assert r[col] == int(st in present)
            assert r["No_Hemorrhage"] == int(not present) and r["Fracture_Yes_No"] == 0
    demo = read_csv(out / "patient_demographics.csv")
    assert demo[0] == ["Patient Number", "Age (years)", "Gender"] and len(demo) == 4
    assert all(r[2] in ("Male", "Female") for r in demo[1:])
    meta = json.loads((out / "synthetic_dataset.json").read_text())
    assert meta["seed"] == 7 and meta["n_cases"] == 3 and len(meta["cases"]) == 3
    assert PhantomConfig.from_dict(meta["config"]) == SMALL
    from ichseg.data import open_physionet

    ds = open_physionet(out)
    assert ds.case_ids == ["001", "002", "003"]
    with pytest.raises(DatasetLayoutError, match="already holds a dataset"):
        write_dataset(out, 1, seed=7, config=SMALL, progress=False)
    write_dataset(out, 1, seed=8, config=SMALL, progress=False, overwrite=True)
    with pytest.raises(ConfigError, match="n_cases"):
        write_dataset(tmp_path / "x", 0, config=SMALL, progress=False)


def test_cli_synth(tmp_path: Path) -> None:
    register_commands()
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "synth",
            "--out",
            str(tmp_path / "d"),
            "--cases",
            "2",
            "--seed",
            "3",
            "--shape",
            "48x48x8",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "d" / "ct_scans" / "002.nii").is_file()
    img = read_nifti(tmp_path / "d" / "ct_scans" / "001.nii")
    assert img.shape == (48, 48, 8)
    res = runner.invoke(app, ["synth", "--out", str(tmp_path / "e"), "--shape", "48x48"])
    assert isinstance(res.exception, ConfigError)
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("hemorrhage_free_fraction: 1.0\nnoise_hu: 1.0\n")
    res = runner.invoke(
        app,
        [
            "synth",
            "--out",
            str(tmp_path / "f"),
            "--cases",
            "1",
            "--shape",
            "48x48x8",
            "--config",
            str(cfg_file),
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert not read_nifti(tmp_path / "f" / "masks" / "001.nii").array.any()
