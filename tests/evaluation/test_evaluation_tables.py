"""Tests for ichseg.evaluation.tables on a tiny synthetic results frame with known answers."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from ichseg.errors import ConfigError, InputFileError
from ichseg.evaluation import tables as T
from ichseg.evaluation.statistics import bootstrap_ci

# method -> fold -> case -> dice per round (method B's case c1 stopped after round 1)
DICE = {
    "A": {
        0: {"c1": [0.70, 0.82, 0.91], "c2": [0.60, 0.86, 0.88]},
        1: {"c3": [0.85, 0.90, 0.95], "c4": [0.50, 0.60, 0.70]},
    },
    "B": {
        0: {"c1": [0.81], "c2": [0.50, 0.60, 0.79]},
        1: {"c3": [0.90, 0.91, 0.92], "c4": [0.30, 0.40, 0.50]},
    },
}


@pytest.fixture
def frame() -> pd.DataFrame:
    rows = []
    for method, folds in DICE.items():
        for fold, cases in folds.items():
            for case, values in cases.items():
                for r, d in enumerate(values, start=1):
                    hd = math.nan if (method, case, r) == ("A", "c4", 3) else 10.0 * (1 - d)
                    rows.append(
                        {"method": method, "fold": fold, "case_id": case, "round": r}
                        | {"dice": d, "hd95": hd}
                    )
    return pd.DataFrame(rows)


def test_at_round_carries_last_value_forward(frame: pd.DataFrame) -> None:
    final = T.at_round(frame, "final")
    assert len(final) == 8
    b_c1 = final[(final.method == "B") & (final.case_id == "c1")]
    assert b_c1["dice"].item() == 0.81 and b_c1["round"].item() == 1
    r2 = T.at_round(frame, 2)
    assert r2[(r2.method == "B") & (r2.case_id == "c1")]["dice"].item() == 0.81
    assert r2[(r2.method == "A") & (r2.case_id == "c1")]["dice"].item() == 0.82
    with pytest.raises(ConfigError):
        T.at_round(frame, 0)


def test_table_methods_cells(frame: pd.DataFrame) -> None:
    table = T.table_methods(frame, metrics=["dice", "hd95"], decimals=3)
    assert list(table.index) == ["A", "B"] and list(table.columns) == ["dice", "hd95"]
    ci = bootstrap_ci([0.91, 0.88, 0.95, 0.70])
    std = abs(0.895 - 0.825) / math.sqrt(2)
    assert table.loc["A", "dice"] == f"0.860 ± {std:.3f} [{ci.lo:.3f}, {ci.hi:.3f}]"
    assert table.loc["A", "hd95"].endswith("(NaN: 1)")
    s = T.summarize_methods(frame, ["dice", "hd95"])
    row = s[(s.method == "A") & (s.metric == "hd95")].iloc[0]
    assert (row.n_cases, row.n_nan, row.n_folds) == (3, 1, 2)
    # fold 1 has only c3 left for hd95: fold means (0.9+1.2)/2 and 0.5
    assert row["mean"] == pytest.approx(((0.9 + 1.2) / 2 + 0.5) / 2)


def test_table_methods_single_fold_and_round_selection(frame: pd.DataFrame) -> None:
    one_fold = frame.drop(columns="fold")
    one_fold["case_id"] = one_fold["case_id"] + "x"
    t = T.table_methods(one_fold, ["dice"], round=1, decimals=2)
    ci = bootstrap_ci([0.70, 0.60, 0.85, 0.50])
    assert t.loc["A", "dice"] == f"0.66 [{ci.lo:.2f}, {ci.hi:.2f}]"


def test_table_rounds_known_means(frame: pd.DataFrame) -> None:
    t = T.table_rounds(frame, "dice")
    assert list(t.columns) == ["round 1", "round 2", "round 3"]
    assert t.loc["A", "round 1"] == pytest.approx(((0.70 + 0.60) / 2 + (0.85 + 0.50) / 2) / 2)
    assert t.loc["A", "round 3"] == pytest.approx(0.86)
    assert t.loc["B", "round 3"] == pytest.approx(((0.81 + 0.79) / 2 + (0.92 + 0.50) / 2) / 2)
    assert list(T.table_rounds(frame, "dice", rounds=[2]).columns) == ["round 2"]


def test_noc_known_answers(frame: pd.DataFrame) -> None:
    t = T.noc(frame, thresholds=(0.80, 0.90))
    assert t.loc["A", "NoC@80"] == pytest.approx((2 + 2 + 1 + 3) / 4)
    assert t.loc["A", "failed@80"] == 1
    assert t.loc["A", "NoC@90"] == pytest.approx((3 + 3 + 2 + 3) / 4)
    assert t.loc["A", "failed@90"] == 2
    assert t.loc["B", "NoC@80"] == pytest.approx((1 + 3 + 1 + 3) / 4)
    assert t.loc["B", "failed@80"] == 2
    assert t["n_cases"].tolist() == [4, 4]
    # a lower round budget: rounds beyond it do not count
    t2 = T.noc(frame, thresholds=(0.90,), max_rounds=2)
    assert t2.loc["A", "NoC@90"] == pytest.approx((2 + 2 + 2 + 2) / 4)
    assert t2.loc["A", "failed@90"] == 3
    with pytest.raises(ConfigError):
        T.noc(frame, thresholds=(80,))


def test_validation_errors(frame: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="case_id"):
        T.validate_results(frame.drop(columns="case_id"))
    with pytest.raises(ConfigError, match="duplicate"):
        T.validate_results(pd.concat([frame, frame.iloc[:1]]))
    with pytest.raises(ConfigError, match="metric column"):
        T.table_methods(frame, ["nsd2mm"])
    bad = frame.copy()
    bad.loc[0, "round"] = 0
    with pytest.raises(ConfigError, match="round"):
        T.validate_results(bad)
    with pytest.raises(InputFileError):
        T.read_results(tmp_path / "missing.csv")


def test_writers(frame: pd.DataFrame, tmp_path: Path) -> None:
    table = T.noc(frame)
    cmd = "ichseg evaluate results.csv --thresholds 0.8,0.85,0.9"
    md = T.write_markdown(table, tmp_path / "out" / "noc.md", "NoC", cmd, notes="synthetic")
    text = md.read_text()
    assert "## NoC" in text and cmd in text and "synthetic" in text
    assert "| method | NoC@80 | failed@80 |" in text
    assert "| A | 2.000 | 1 |" in text
    with pytest.raises(ConfigError):
        T.write_markdown(table, tmp_path / "x.md", "t", " ")
    csv = T.write_csv(table, tmp_path / "noc.csv")
    back = pd.read_csv(csv, index_col="method")
    assert back.loc["A", "failed@80"] == 1
    frame.to_csv(tmp_path / "res.csv", index=False)
    assert len(T.read_results(tmp_path / "res.csv")) == len(frame)
    assert "n/a" in T.to_markdown(pd.DataFrame({"x": [math.nan]}, index=["m"]))


def test_noc_cap_rules(frame: pd.DataFrame) -> None:
    # 3 rounds run, cap 20: an unreached case counts as 3 + 1 (a lower bound)
    t = T.noc(frame, thresholds=(0.90,), cap=20)
    assert t.loc["A", "NoC@90"] == pytest.approx((3 + 4 + 2 + 4) / 4)  # c2, c4 unreached
    assert t.loc["A", "failed@90"] == 2
    assert t.attrs == {"noc_cap": 20, "rounds_run": 3, "unreached_counts_as": 4}
    # cap below the rounds run: rounds beyond it do not count, a failure costs the cap
    t2 = T.noc(frame, thresholds=(0.90,), cap=2)
    assert t2.loc["A", "NoC@90"] == pytest.approx((2 + 2 + 2 + 2) / 4)
    assert t2.attrs["unreached_counts_as"] == 2
    # default cap = min(20, rounds run): the old behaviour for runs of <= 20 rounds
    assert T.noc(frame, thresholds=(0.90,)).attrs["noc_cap"] == 3
    assert T.noc_budget(8) == (8, 8) and T.noc_budget(8, 20) == (8, 9)
    assert T.noc_budget(30) == (20, 20) and T.noc_budget(30, 20) == (20, 20)
    assert T.noc_budget(19, 20) == (19, 20)  # R + 1 meets the cap: continuous at R = C - 1
    long_run = pd.DataFrame(
        {"method": "A", "case_id": "c", "round": range(1, 26), "dice": [0.5] * 21 + [0.95] * 4}
    )
    t3 = T.noc(long_run, thresholds=(0.90,))  # 25 rounds: capped at 20, reached at 22
    assert t3.loc["A", "NoC@90"] == 20 and t3.loc["A", "failed@90"] == 1
    assert T.noc(long_run, thresholds=(0.90,), cap=25).loc["A", "NoC@90"] == 22
    for bad in (0, 1.5, True):
        with pytest.raises(ConfigError, match="cap"):
            T.noc(frame, cap=bad)
