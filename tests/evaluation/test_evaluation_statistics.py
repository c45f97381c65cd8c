"""Tests for ichseg.evaluation.statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from ichseg.errors import ConfigError
from ichseg.evaluation import statistics as S


def test_mean_std_over_folds() -> None:
    r = S.mean_std([0.7, 0.8, 0.9, math.nan])
    assert r.mean == pytest.approx(0.8)
    assert r.std == pytest.approx(0.1)
    assert (r.n, r.n_nan) == (3, 1)
    single = S.mean_std([0.5])
    assert single.mean == 0.5 and math.isnan(single.std)
    with pytest.raises(ConfigError, match="infinite"):
        S.mean_std([1.0, math.inf])


def test_bootstrap_covers_known_mean_and_matches_normal_theory() -> None:
    x = np.random.default_rng(123).normal(5.0, 1.0, size=2000)
    ci = S.bootstrap_ci(x)
    assert ci.lo < 5.0 < ci.hi
    assert ci.mean == pytest.approx(x.mean())
    half_width = (ci.hi - ci.lo) / 2
    assert half_width == pytest.approx(1.96 * x.std(ddof=1) / math.sqrt(x.size), rel=0.15)
    mean, lo, hi = ci  # unpacks as (mean, lo, hi)
    assert (mean, lo, hi) == (ci.mean, ci.lo, ci.hi)


def test_bootstrap_width_shrinks_with_n() -> None:
    rng = np.random.default_rng(7)
    widths = []
    for n in (20, 200, 2000):
        ci = S.bootstrap_ci(rng.normal(0.0, 1.0, size=n), n_resamples=2000)
        widths.append(ci.hi - ci.lo)
    assert widths[0] > widths[1] > widths[2]


def test_bootstrap_deterministic_per_seed_and_nan_counted() -> None:
    x = np.r_[np.random.default_rng(1).random(30), [math.nan, math.nan]]
    a = S.bootstrap_ci(x, seed=47)
    b = S.bootstrap_ci(x, seed=47)
    c = S.bootstrap_ci(x, seed=48)
    assert a == b
    assert (a.lo, a.hi) != (c.lo, c.hi)
    assert (a.n, a.n_nan) == (30, 2)


def test_bootstrap_percentile_indices() -> None:
    """With n = 1 every resampled mean equals the value; with 2 values the bounds are extremes."""
    one = S.bootstrap_ci([0.42])
    assert (one.mean, one.lo, one.hi) == (0.42, 0.42, 0.42)
    ci = S.bootstrap_ci([0.0, 1.0], n_resamples=5000)
    # resampled means are 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4 -> 2.5% / 97.5% at 0 / 1
    assert (ci.lo, ci.hi) == (0.0, 1.0)
    narrow = S.bootstrap_ci([0.0, 1.0], n_resamples=5000, alpha=0.6)  # 30% / 70% quantiles
    assert (narrow.lo, narrow.hi) == (0.5, 0.5)
    empty = S.bootstrap_ci([math.nan])
    assert empty.n == 0 and math.isnan(empty.mean)
    with pytest.raises(ConfigError):
        S.bootstrap_ci([1.0], alpha=1.5)
    with pytest.raises(ConfigError):
        S.bootstrap_ci([1.0], n_resamples=0)


def test_paired_ttest_matches_scipy_and_drops_nan_pairs() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(0.8, 0.05, 25)
    b = a - rng.normal(0.02, 0.03, 25)
    ref = stats.ttest_rel(a, b)
    r = S.paired_ttest(a, b)
    assert r.statistic == pytest.approx(ref.statistic)
    assert r.pvalue == pytest.approx(ref.pvalue)
    assert r.mean_diff == pytest.approx((a - b).mean())
    a2, b2 = a.copy(), b.copy()
    a2[0] = math.nan
    b2[3] = math.nan
    r2 = S.paired_ttest(a2, b2)
    keep = np.ones(25, bool)
    keep[[0, 3]] = False
    assert r2.pvalue == pytest.approx(stats.ttest_rel(a[keep], b[keep]).pvalue)
    assert (r2.n, r2.n_dropped) == (23, 2)
    with pytest.raises(ConfigError, match="same length"):
        S.paired_ttest(a, b[:-1])
    assert math.isnan(S.paired_ttest([1.0], [2.0]).pvalue)


def test_wilcoxon_matches_scipy() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.random(15), rng.random(15)
    assert S.wilcoxon_signed_rank(a, b).pvalue == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert math.isnan(S.wilcoxon_signed_rank(a, a).pvalue)


def test_bonferroni_arithmetic() -> None:
    adj = S.bonferroni([0.01, 0.2, 0.5, math.nan])
    np.testing.assert_allclose(adj[:3], [0.03, 0.6, 1.0])
    assert math.isnan(adj[3])
    with pytest.raises(ConfigError):
        S.bonferroni([1.5])


def test_compare_to_reference_rows() -> None:
    rng = np.random.default_rng(9)
    ref = rng.normal(0.80, 0.05, 20)
    results = {
        "ours": ref,
        "unet": ref - 0.05 + rng.normal(0, 0.01, 20),
        "same": ref + rng.normal(0, 0.01, 20),
    }
    rows = S.compare_to_reference(results, "ours")
    assert [r["method"] for r in rows] == ["unet", "same"]
    for r in rows:
        raw = stats.ttest_rel(results[str(r["method"])], ref).pvalue
        assert r["p_raw"] == pytest.approx(raw)
        assert r["p_bonferroni"] == pytest.approx(min(1.0, 2 * raw))
        assert r["mean_diff"] == pytest.approx(results[str(r["method"])].mean() - ref.mean())
    assert rows[0]["p_bonferroni"] < 1e-6
    with pytest.raises(ConfigError, match="reference"):
        S.compare_to_reference(results, "missing")
    w = S.compare_to_reference(results, "ours", test="wilcoxon")
    assert w[0]["test"] == "wilcoxon"


def test_bland_altman_known_bias() -> None:
    gt = np.array([10.0, 20.0, 30.0, 40.0])
    ba = S.bland_altman(gt + np.array([1.0, 3.0, 1.0, 3.0]), gt)
    assert ba.bias == pytest.approx(2.0)
    assert ba.sd == pytest.approx(np.std([1, 3, 1, 3], ddof=1))
    assert ba.loa_hi == pytest.approx(2.0 + 1.96 * ba.sd)
    assert ba.n == 4


# --- ICC(2,1) -------------------------------------------------------------------------------------
#: Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges.
SHROUT_FLEISS = np.array(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]],
    dtype=float,
)


def test_icc_2_1_shrout_fleiss_textbook_example() -> None:
    r = S.icc_2_1(SHROUT_FLEISS)
    # the paper's ANOVA (BMS 11.24, JMS 32.49, EMS 1.02) and ICC(2,1) = 0.29
    assert r.msr == pytest.approx(11.24, abs=0.005)
    assert r.msc == pytest.approx(32.49, abs=0.005)
    assert r.mse == pytest.approx(1.02, abs=0.005)
    assert r.icc == pytest.approx(0.29, abs=0.005)
    assert (r.n, r.k, r.df1, r.df2, r.n_dropped) == (6, 4, 5, 15, 0)
    assert r.f == pytest.approx(r.msr / r.mse) and r.pvalue == pytest.approx(stats.f.sf(r.f, 5, 15))
    # McGraw & Wong (1996) 95 % CI of ICC(A,1) for these data: about [0.02, 0.76]
    assert r.lo == pytest.approx(0.019, abs=0.002) and r.hi == pytest.approx(0.761, abs=0.002)


def test_icc_absolute_agreement_penalises_bias_and_handles_edges() -> None:
    gt = np.array([5.0, 12.0, 20.0, 33.0, 41.0, 60.0])
    noise = np.array([0.5, -0.4, 0.3, -0.2, 0.6, -0.5])
    good = S.icc_agreement(gt + noise, gt)
    assert good.icc > 0.99 and good.lo < good.icc < good.hi <= 1.0
    biased = S.icc_agreement(gt + noise + 15.0, gt)  # same consistency, 15 mL offset
    assert biased.icc < good.icc - 0.05
    assert S.icc_agreement(gt, gt).icc == 1.0  # perfect agreement
    with_nan = S.icc_agreement(np.append(gt + noise, np.nan), np.append(gt, 3.0))
    assert with_nan.n == 6 and with_nan.n_dropped == 1
    assert with_nan.icc == pytest.approx(good.icc)
    assert math.isnan(S.icc_agreement([1.0], [1.0]).icc)
    with pytest.raises(ConfigError):
        S.icc_2_1(np.ones((4, 1)))
    with pytest.raises(ConfigError):
        S.icc_agreement([1.0, 2.0], [1.0])
    with pytest.raises(ConfigError):
        S.icc_agreement([1.0, math.inf], [1.0, 2.0])
