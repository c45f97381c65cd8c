"""Patient-wise k-fold splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ichseg.data.dataset import Case, Dataset
from ichseg.data.splits import Splits, make_splits
from ichseg.errors import ConfigError


def _check(splits: Splits, patients: dict[str, str]) -> None:
    all_cases = set(patients)
    tested: list[str] = []
    for f in splits.folds:
        parts = [set(f.train), set(f.val), set(f.test)]
        assert set().union(*parts) == all_cases
        assert sum(len(p) for p in parts) == len(all_cases)
        pp = [{patients[c] for c in part} for part in parts]
        assert not (pp[0] & pp[1] or pp[0] & pp[2] or pp[1] & pp[2]), "patient crosses sets"
        tested += f.test
    assert sorted(tested) == sorted(all_cases)  # every case tested exactly once


def _grouped(n_patients: int = 12) -> dict[str, str]:
    patients: dict[str, str] = {}
    for p in range(n_patients):
        for s in range(1 + p % 3):  # 1-3 scans per patient
            patients[f"p{p:02d}_s{s}"] = f"P{p:02d}"
    return patients


def test_patient_disjoint_and_complete() -> None:
    patients = _grouped()
    splits = make_splits(list(patients), k=5, seed=3, patient_ids=patients)
    assert splits.k == 5 and len(splits) == 5 and splits.seed == 3
    _check(splits, patients)
    sizes = [len(f.test) for f in splits.folds]
    assert max(sizes) - min(sizes) <= 3  # balanced up to one patient's scans
    for f in splits.folds:
        train_patients = {patients[c] for c in f.train_val}
        assert len({patients[c] for c in f.val}) == max(1, round(0.2 * len(train_patients)))


def test_deterministic_and_seed_dependent() -> None:
    patients = _grouped(20)
    a = make_splits(list(patients), seed=0, patient_ids=patients)
    b = make_splits(list(reversed(list(patients))), seed=0, patient_ids=patients)
    assert a.to_dict() == b.to_dict()  # independent of input order
    c = make_splits(list(patients), seed=1, patient_ids=patients)
    assert [f.test for f in a.folds] != [f.test for f in c.folds]


def test_from_dataset_and_sequence_patient_ids() -> None:
    cases = [Case(f"{i:03d}", Path(f"{i}.nii"), patient_id=f"P{i // 2}") for i in range(10)]
    ds = Dataset("toy", Path("."), cases)
    s = make_splits(ds, k=5, val_fraction=0.25)
    assert s.dataset == "toy"
    _check(s, ds.patient_ids)
    ids = [c.case_id for c in cases]
    s2 = make_splits(ids, k=2, patient_ids=[f"Q{i % 5}" for i in range(10)], name="seq")
    _check(s2, {c: f"Q{int(c) % 5}" for c in ids})
    s3 = make_splits(ids, k=5, val_fraction=0.0)
    assert all(not f.val for f in s3.folds)


def test_json_roundtrip(tmp_path: Path) -> None:
    patients = _grouped(8)
    s = make_splits(
        list(patients), k=4, seed=7, val_fraction=0.3, patient_ids=patients, name="demo"
    )
    path = s.to_json(tmp_path / "sub" / "splits.json")
    data = json.loads(path.read_text())
    assert data["seed"] == 7 and data["k"] == 4 and data["val_fraction"] == 0.3
    assert data["dataset"] == "demo" and len(data["folds"]) == 4
    back = Splits.from_json(path)
    assert back.to_dict() == s.to_dict()
    assert back.fold(2) == s.fold(2)
    with pytest.raises(ConfigError, match="fold 9 does not exist"):
        back.fold(9)


def test_invalid_inputs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="k must be at least 2"):
        make_splits(["a", "b"], k=1)
    with pytest.raises(ConfigError, match="2 patient"):
        make_splits(["a", "b"], k=3)
    with pytest.raises(ConfigError, match="val_fraction"):
        make_splits(["a", "b", "c"], k=2, val_fraction=1.0)
    with pytest.raises(ConfigError, match="duplicate case ids"):
        make_splits(["a", "a", "b"], k=2)
    with pytest.raises(ConfigError, match="lacks case"):
        make_splits(["a", "b"], k=2, patient_ids={"a": "P"})
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        Splits.from_json(bad)
    bad.write_text('{"dataset": "x"}')
    with pytest.raises(ConfigError, match="malformed"):
        Splits.from_json(bad)
    with pytest.raises(ConfigError, match="not found"):
        Splits.from_json(tmp_path / "nope.json")
    s = make_splits(["a", "b", "c", "d"], k=2).to_dict()
    s["folds"][0]["test"].append(s["folds"][1]["test"][0])
    with pytest.raises(ConfigError, match="test set of folds"):
        Splits.from_dict(s)


@settings(max_examples=25, deadline=None)
@given(
    groups=st.lists(st.integers(1, 4), min_size=5, max_size=25),
    k=st.integers(2, 5),
    seed=st.integers(0, 1000),
    val=st.sampled_from([0.0, 0.1, 0.2, 0.5]),
)
def test_property_patient_wise(groups: list[int], k: int, seed: int, val: float) -> None:
    patients = {f"c{p}_{s}": f"p{p}" for p, n in enumerate(groups) for s in range(n)}
    splits = make_splits(list(patients), k=k, seed=seed, val_fraction=val, patient_ids=patients)
    _check(splits, patients)
