"""Report writer: files, command line on top, Table-1/Table-5/NoC/tests content."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ichseg.errors import ConfigError
from ichseg.evaluation.interactive import RESULT_COLUMNS, KeptCase
from ichseg.evaluation.report import format_summary, paired_tests, timing_table, write_report

COMMAND = "ichseg evaluate --data /d --method a --method b --rounds 3 --out /o"


def fake_results(seed: int = 0) -> pd.DataFrame:
    """Two methods, two folds x 4 cases, 3 rounds; method 'b' better by ~0.1 Dice."""
    rng = np.random.default_rng(seed)
    rows = []
    for method, base in (("a", 0.70), ("b", 0.80)):
        for fold in (0, 1):
            for c in range(4):
                cid = f"f{fold}c{c}"
                gt_ml = 10.0 + 5 * c
                n_rounds = 2 if (method == "b" and c == 0) else 3  # one early stop
                for r in range(1, n_rounds + 1):
                    d = min(1.0, base + 0.04 * r + rng.normal(0, 0.02))
                    row = dict.fromkeys(RESULT_COLUMNS, math.nan)
                    row.update(
                        method=method,
                        fold=fold,
                        case_id=cid,
                        round=r,
                        dice=d,
                        jaccard=d / (2 - d),
                        hd=20 * (1 - d) + 2,
                        hd95=15 * (1 - d) + 1,
                        nsd2mm=d - 0.05,
                        mae=0.01 * (1 - d),
                        vol_pred_ml=gt_ml * (1 + rng.normal(0, 0.1)),
                        vol_gt_ml=gt_ml,
                        legacy_row_hd=3.0 * (1 - d),
                        hd_undefined=0.0,
                        seconds=0.1 * r,
                        set_volume_seconds=0.5,
                        mode="scribble",
                        start_rule="random_band",
                        n_prompts=1,
                        clinician_stop=r == n_rounds < 3,
                    )
                    row["abs_vol_err_ml"] = abs(row["vol_pred_ml"] - gt_ml)
                    rows.append(row)
    df = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    df.loc[(df["method"] == "a") & (df["case_id"] == "f1c3"), "hd95"] = math.nan
    return df


def test_write_report_files_and_command(tmp_path):
    df = fake_results()
    shape = (16, 16, 4)
    gt = np.zeros(shape, bool)
    gt[4:9, 5:10, 1:3] = True
    kept = {
        "f0c0": KeptCase(
            "f0c0",
            np.random.default_rng(0).random(shape).astype(np.float32),
            gt,
            {"a": gt.copy(), "b": np.roll(gt, 1, axis=0)},
        )
    }
    paths = write_report(df, tmp_path / "rep", command=COMMAND, reference_method="a", kept=kept)
    expected = {
        "results",
        "table_final",
        "table_rounds",
        "noc",
        "timing",
        "paired_tests",
        "dice_vs_round",
        "volume_agreement",
        "volume_agreement_table",
        "volume_agreement[a]",
        "volume_agreement[b]",
        "overlay",
        "report",
    }
    assert set(paths) == expected
    assert paths["volume_agreement[b]"].name == "volume_agreement_b.png"
    md = paths["report"].read_text(encoding="utf-8")
    assert "## Volume agreement (final round)" in md and "ICC(2,1)" in md
    assert "![volume agreement, a](volume_agreement_a.png)" in md
    csv = pd.read_csv(paths["volume_agreement_table"], index_col="method")
    assert list(csv.index) == ["a", "b"] and {"icc_ci_lo", "loa_hi_ml"} <= set(csv.columns)
    for p in paths.values():
        assert p.is_file() and p.stat().st_size > 0
    text = paths["report"].read_text(encoding="utf-8")
    assert text.splitlines()[:3] == ["```bash", COMMAND, "```"]
    assert "legacy row-HD (authors', unitless)" in text
    assert "(NaN: 1)" in text  # the undefined HD95 is counted, not averaged away
    assert "NoC@85" in text and "Paired t-tests against `a`" in text
    back = pd.read_csv(paths["results"])
    assert len(back) == len(df)
    final = pd.read_csv(paths["table_final"])
    dice_b = final[(final.method == "b") & (final.metric == "dice")].iloc[0]
    assert dice_b["n_folds"] == 2 and dice_b["n_cases"] == 8
    assert dice_b["ci_lo"] <= dice_b["case_mean"] <= dice_b["ci_hi"]
    rounds = pd.read_csv(paths["table_rounds"])
    assert {"round 1", "round 2", "round 3"} <= set(rounds.columns)
    assert set(rounds["metric"]) >= {"dice", "hd95", "legacy_row_hd"}


def test_paired_tests_detect_the_better_method():
    t = paired_tests(fake_results(), "a", ["dice", "hd95"])
    row = t[(t.metric == "dice") & (t.method == "b")].iloc[0]
    assert row["n"] == 8 and row["mean_diff"] > 0.05 and row["p_raw"] < 0.01
    assert row["p_bonferroni"] == pytest.approx(min(1.0, row["p_raw"] * 2))
    hd = t[t.metric == "hd95"].iloc[0]
    assert hd["n"] == 7 and hd["n_dropped"] == 1  # the NaN pair is dropped and counted
    with pytest.raises(ConfigError):
        paired_tests(fake_results(), "zzz")


def test_timing_and_summary():
    df = fake_results()
    t = timing_table(df)
    assert t.loc["a", "rounds"] == 24 and t.loc["a", "max s"] == pytest.approx(0.3)
    s = format_summary(df)
    assert list(s.index) == ["a", "b"] and s.loc["b", "dice"] > s.loc["a", "dice"]
    assert s.loc["a", "cases"] == 8


def test_write_report_errors(tmp_path):
    df = fake_results()
    with pytest.raises(ConfigError):
        write_report(df, tmp_path, command="  ")
    with pytest.raises(ConfigError):
        write_report(df, tmp_path, command=COMMAND, reference_method="nope")
    single = df[df["method"] == "a"]
    paths = write_report(single, tmp_path / "one", command=COMMAND)
    assert "paired_tests" not in paths and "overlay" not in paths


def test_volume_agreement_icc_and_bland_altman():
    from ichseg.evaluation.report import method_file_name, volume_agreement
    from ichseg.evaluation.statistics import icc_agreement

    df = fake_results()
    table = volume_agreement(df)
    final = df.sort_values("round").groupby(["method", "fold", "case_id"]).tail(1)
    b = final[final.method == "b"]
    icc = icc_agreement(b.vol_pred_ml, b.vol_gt_ml)
    assert table.loc["b", "icc_2_1"] == pytest.approx(icc.icc)
    assert table.loc["b", "bias_ml"] == pytest.approx((b.vol_pred_ml - b.vol_gt_ml).mean())
    assert table.loc["b", "n"] == 8
    assert method_file_name("hpinet refined/2") == "hpinet_refined_2"
