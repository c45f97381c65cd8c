"""The CVPR 2025 challenge protocol: AUC, challenge NSD, tables, the runner and the CLI."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from test_evaluation_interactive import RW, cases
from typer.testing import CliRunner

from ichseg.cli import app, register_commands
from ichseg.errors import ConfigError
from ichseg.evaluation.cvpr25 import (
    CVPR25_FILES,
    case_table,
    challenge_nsd,
    curve_table,
    interaction_auc,
    summary_table,
    write_cvpr25,
)
from ichseg.evaluation.interactive import (
    CVPR25_COLUMNS,
    RESULT_COLUMNS,
    ClinicianSpec,
    evaluate_interactive,
)
from ichseg.interaction.prompts import Box, Click
from ichseg.interaction.random_walker import RandomWalkerEngine
from ichseg.interaction.session import InteractiveSession


def test_interaction_auc_on_a_known_curve():
    curve = [0.5, 0.7, 0.8, 0.9, 0.9]
    area = (0.5 + 0.7) / 2 + (0.7 + 0.8) / 2 + (0.8 + 0.9) / 2 + (0.9 + 0.9) / 2
    assert interaction_auc(curve) == pytest.approx(area) == pytest.approx(3.1)
    assert interaction_auc(curve, normalise=True) == pytest.approx(3.1 / 4)
    assert interaction_auc([1.0] * 5) == pytest.approx(4.0)  # the challenge's maximum, N - 1
    assert interaction_auc([0.3] * 5, normalise=True) == pytest.approx(0.3)
    assert interaction_auc([0.6]) == 0.0 and interaction_auc([0.6], normalise=True) == 0.6
    assert math.isnan(interaction_auc([0.5, math.nan]))
    with pytest.raises(ConfigError):
        interaction_auc([])


def test_challenge_nsd_floor():
    assert challenge_nsd(0.2, 0.9) == 0.0 and challenge_nsd(0.21, 0.9) == 0.9
    assert challenge_nsd(0.1, 0.9, None) == 0.9


def _frame() -> pd.DataFrame:
    """Method A: case c1 over 3 rounds, c2 stopped after round 1 (carried forward)."""
    rows = []
    for case, dice, nsd in (
        ("c1", [0.1, 0.6, 0.8], [0.5, 0.7, 0.9]),
        ("c2", [0.9], [0.95]),
    ):
        for r, (d, n) in enumerate(zip(dice, nsd, strict=True), start=1):
            rows.append(
                {"method": "A", "fold": 0, "case_id": case, "round": r, "dice": d}
                | {"nsd2mm": n, "seconds": 0.5 * r, "set_volume_seconds": 2.0, "box": r == 1}
            )
    return pd.DataFrame(rows)


def test_case_and_summary_tables_known_answers(tmp_path):
    df = _frame()
    ct = case_table(df)
    c1 = ct[ct.case_id == "c1"].iloc[0]
    assert [c1.dsc_1, c1.dsc_2, c1.dsc_3] == [0.1, 0.6, 0.8]
    assert [c1.nsd_1, c1.nsd_2, c1.nsd_3] == [0.0, 0.7, 0.9]  # Dice 0.1 <= 0.2: NSD 0
    assert c1.dsc_auc == pytest.approx((0.1 + 0.6) / 2 + (0.6 + 0.8) / 2)
    assert c1.nsd_auc_norm == pytest.approx(((0.0 + 0.7) / 2 + (0.7 + 0.9) / 2) / 2)
    assert c1.interactions == 3 and c1.box and c1.seconds == pytest.approx(1.0)
    c2 = ct[ct.case_id == "c2"].iloc[0]
    assert [c2.dsc_1, c2.dsc_2, c2.dsc_3] == [0.9, 0.9, 0.9] and c2.dsc_auc == pytest.approx(1.8)
    st = summary_table(df)
    a = st.loc["A"]
    assert a.cases == 2
    assert pytest.approx((1.05 + 1.8) / 2) == a.DSC_AUC
    assert a.DSC_final == pytest.approx((0.8 + 0.9) / 2)
    assert a.NSD_final == pytest.approx((0.9 + 0.95) / 2)
    assert a["s/interaction"] == pytest.approx((0.5 + 1.0 + 1.5 + 0.5) / 4)
    # NoC, cap 20 with 3 interactions run: c1 never reaches 0.85 -> 3 + 1; c2 at round 1
    assert a["NoC@85"] == pytest.approx((4 + 1) / 2) and a["failed@85"] == 1
    assert a["NoC@90"] == pytest.approx((4 + 1) / 2)
    assert st.attrs["noc_cap"] == 20 and st.attrs["unreached_counts_as"] == 4
    curves = curve_table(df, "dsc")
    assert list(curves.columns) == ["1", "2", "3"]
    assert curves.loc["A", "1"] == pytest.approx(0.5)
    with pytest.raises(ConfigError):
        curve_table(df, "hd95")
    with pytest.raises(ConfigError):
        case_table(df, n_interactions=0)
    paths = write_cvpr25(df, tmp_path, "ichseg evaluate --protocol cvpr25")
    assert {p.name for p in paths.values()} == set(CVPR25_FILES)
    text = paths["cvpr25_md"].read_text()
    assert "## CVPR 2025 challenge protocol" in text and "--protocol cvpr25" in text
    assert "lower bound" in text and "largest-area slice plus the first click" in text
    back = pd.read_csv(paths["cvpr25"], index_col="method")
    assert back.loc["A", "DSC_AUC"] == pytest.approx(a.DSC_AUC)
    with pytest.raises(ConfigError):
        write_cvpr25(df, tmp_path, " ")


def _rw_session() -> InteractiveSession:
    return InteractiveSession(RandomWalkerEngine(RW))


def test_evaluate_interactive_cvpr25_protocol():
    data = cases(2)
    df = evaluate_interactive(
        _rw_session, data, protocol="cvpr25", progress=False, method_name="rw"
    )
    assert list(df.columns) == [*RESULT_COLUMNS, *CVPR25_COLUMNS]
    assert set(df["mode"]) == {"cvpr25"} and set(df["start_rule"]) == {"largest_area_box"}
    assert df.groupby("case_id")["round"].max().le(5).all()  # default: 5 clicks
    first = df[df["round"] == 1]
    assert first["box"].all() and (first["n_prompts"] == 2).all()
    assert (first["n_positive"] == 1).all()  # the first click is on the missed bleed
    later = df[df["round"] > 1]
    assert not later["box"].any() and (later["n_prompts"] == 1).all()
    assert (df["n_positive"] + df["n_negative"] == 1).all()
    assert df[["dice", "nsd2mm", "click_y", "click_x", "error_voxels"]].notna().all().all()
    # the same clicks as the clinician itself places, case by case (deterministic)
    again = evaluate_interactive(_rw_session, data, protocol="cvpr25", progress=False)
    assert np.array_equal(
        again[["slice", "click_y", "click_x"]], df[["slice", "click_y", "click_x"]]
    )

    nobox = evaluate_interactive(
        _rw_session, data[:1], protocol="cvpr25", cvpr25_box=False, rounds=2, progress=False
    )
    assert not nobox["box"].any() and (nobox["n_prompts"] == 1).all()
    assert set(nobox["start_rule"]) == {"largest_error"} and nobox["round"].max() <= 2
    with pytest.raises(ConfigError, match="protocol"):
        evaluate_interactive(_rw_session, data, protocol="cvpr26", progress=False)
    with pytest.raises(ConfigError, match="clinician="):
        evaluate_interactive(
            _rw_session, data, protocol="cvpr25", clinician=ClinicianSpec(), progress=False
        )
    default = evaluate_interactive(_rw_session, data[:1], progress=False)
    assert list(default.columns) == list(RESULT_COLUMNS) and default["round"].max() <= 8


def test_cvpr25_round_one_prompts_reach_the_session():
    """The session receives the box and the click of round 1 (and keeps them afterwards)."""
    seen = []

    class Spy(InteractiveSession):
        def add_prompts(self, prompts):
            prompts = list(prompts)
            seen.append(prompts)
            super().add_prompts(prompts)

    evaluate_interactive(
        lambda: Spy(RandomWalkerEngine(RW)), cases(1), protocol="cvpr25", rounds=2, progress=False
    )
    assert [type(p) for p in seen[0]] == [Box, Click]
    assert all(type(p) is Click for rnd in seen[1:] for p in rnd)


# ------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def runner() -> CliRunner:
    register_commands()
    return CliRunner()


def test_cli_evaluate_protocol_cvpr25(runner, tiny_physionet, tmp_path):
    out = tmp_path / "cvpr"
    args = ["evaluate", "--data", str(tiny_physionet), "--out", str(out)]
    args += ["--method", "random_walker:margin_mm=8", "--cases", "001,002"]
    args += ["--protocol", "cvpr25", "--no-progress", "--threads", "1"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "CVPR 2025 protocol, 5 clicks" in res.output and "DSC_AUC" in res.output
    for f in (*CVPR25_FILES, "results.csv", "report.md"):
        assert (out / f).is_file(), f
    summary = pd.read_csv(out / "cvpr25.csv", index_col="method")
    assert list(summary.index) == ["random_walker"] and summary.loc["random_walker", "cases"] == 2
    for col in ("DSC_AUC", "NSD_AUC", "DSC_final", "NSD_final", "s/interaction", "NoC@85"):
        assert col in summary.columns
    assert 0 <= summary.loc["random_walker", "DSC_AUC"] <= 4
    per_case = pd.read_csv(out / "cvpr25_cases.csv", dtype={"case_id": str})
    assert set(per_case["case_id"]) == {"001", "002"} and per_case["box"].all()
    md = (out / "cvpr25.md").read_text()
    assert "--protocol cvpr25" in md.splitlines()[3] and "--mode" not in md
    results = pd.read_csv(out / "results.csv")
    assert set(results["mode"]) == {"cvpr25"} and results["round"].max() <= 5

    res = runner.invoke(app, [*args, "--no-cvpr25-box", "--rounds", "2", "--overwrite"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert not pd.read_csv(out / "cvpr25_cases.csv")["box"].any()
    assert "--no-cvpr25-box" in (out / "cvpr25.md").read_text()
    res = runner.invoke(app, args)  # the earlier run's files are kept without --overwrite
    assert res.exit_code != 0
    base = ["evaluate", "--data", str(tiny_physionet), "--out", str(tmp_path / "x")]
    base += ["--method", "random_walker", "--no-progress"]
    for extra in (
        ["--protocol", "cvpr25", "--mode", "click"],
        ["--protocol", "cvpr25", "--start", "largest"],
        ["--no-cvpr25-box"],
        ["--protocol", "nnint"],
    ):
        res = runner.invoke(app, [*base, *extra])
        assert res.exit_code != 0 and isinstance(res.exception, ConfigError), extra


def test_cli_evaluate_clinician_click_alias(runner, tiny_physionet, tmp_path):
    out = tmp_path / "click"
    args = ["evaluate", "--data", str(tiny_physionet), "--out", str(out)]
    args += ["--method", "random_walker:margin_mm=8", "--cases", "001", "--rounds", "2"]
    args += ["--clinician", "click", "--no-progress"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    results = pd.read_csv(out / "results.csv")
    assert set(results["mode"]) == {"click"}
    assert "--mode click" in (out / "report.md").read_text()
    assert not (out / "cvpr25.csv").exists()
