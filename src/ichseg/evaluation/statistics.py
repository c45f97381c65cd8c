"""Statistics for comparing segmentation methods: fold summaries, bootstrap CIs, paired tests.

All functions drop NaN values (undefined metrics such as HD95 with one empty mask, see
:mod:`ichseg.evaluation.metrics`) and report how many they dropped, so an average is never
silently taken over fewer cases than the reader assumes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from ichseg.errors import ConfigError

ArrayLike = Sequence[float] | np.ndarray


def _finite_or_nan(values: ArrayLike, name: str = "values") -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    if np.any(np.isinf(v)):
        raise ConfigError(f"{name} contain infinite values; map them to NaN (undefined) first")
    return v


@dataclass(frozen=True)
class MeanStd:
    """Mean and sample standard deviation (ddof=1) of the non-NaN values."""

    mean: float
    std: float  #: NaN with fewer than two values
    n: int
    n_nan: int


def mean_std(values: ArrayLike) -> MeanStd:
    """Mean ± sample std (e.g. over the per-fold means of a cross-validation), NaN-aware."""
    v = _finite_or_nan(values)
    ok = v[~np.isnan(v)]
    n_nan = int(v.size - ok.size)
    if ok.size == 0:
        return MeanStd(math.nan, math.nan, 0, n_nan)
    std = float(ok.std(ddof=1)) if ok.size > 1 else math.nan
    return MeanStd(float(ok.mean()), std, int(ok.size), n_nan)


@dataclass(frozen=True)
class BootstrapCI:
    """Percentile-bootstrap confidence interval of the mean. Unpacks as ``(mean, lo, hi)``."""

    mean: float  #: plain mean of the non-NaN values (the point estimate)
    lo: float
    hi: float
    n: int  #: values used
    n_nan: int  #: NaN values dropped
    n_resamples: int
    alpha: float

    def __iter__(self) -> Iterator[float]:
        return iter((self.mean, self.lo, self.hi))


def bootstrap_ci(
    values: ArrayLike,
    n_resamples: int = 5000,
    seed: int = 47,
    alpha: float = 0.05,
) -> BootstrapCI:
    """Percentile bootstrap CI of the mean, as in the HemSeg evaluation.

    ``n_resamples`` resamples of size n are drawn with replacement (``numpy.random.default_rng
    (seed)``); the CI bounds are the sorted resampled means at indices
    ``floor(alpha/2 * n_resamples)`` and ``floor((1 - alpha/2) * n_resamples)`` (125 and 4875 for
    the defaults). NaNs are dropped and counted. Deterministic for a given seed.
    """
    if n_resamples < 1:
        raise ConfigError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must lie in (0, 1), got {alpha}")
    v = _finite_or_nan(values)
    ok = v[~np.isnan(v)]
    n, n_nan = int(ok.size), int(v.size - ok.size)
    if n == 0:
        return BootstrapCI(math.nan, math.nan, math.nan, 0, n_nan, n_resamples, alpha)
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples, dtype=np.float64)
    chunk = max(1, 2_000_000 // n)  # bound memory to ~16 MB of indices per chunk
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = ok[idx].mean(axis=1)
    means.sort()
    i_lo = min(math.floor(alpha / 2.0 * n_resamples), n_resamples - 1)
    i_hi = min(math.floor((1.0 - alpha / 2.0) * n_resamples), n_resamples - 1)
    return BootstrapCI(
        float(ok.mean()), float(means[i_lo]), float(means[i_hi]), n, n_nan, n_resamples, alpha
    )


@dataclass(frozen=True)
class PairedTest:
    """Result of a paired test between two per-case metric vectors (``a`` minus ``b``)."""

    statistic: float
    pvalue: float
    mean_diff: float  #: mean of a - b over the complete pairs
    n: int  #: complete pairs used
    n_dropped: int  #: pairs dropped because either value was NaN
    test: str


def _pairs(a: ArrayLike, b: ArrayLike) -> tuple[np.ndarray, np.ndarray, int]:
    x = _finite_or_nan(a, "a")
    y = _finite_or_nan(b, "b")
    if x.shape != y.shape:
        raise ConfigError(
            f"paired samples must have the same length, got {x.size} and {y.size} "
            "(align per-case values by case id first)"
        )
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep], y[keep], int((~keep).sum())


def paired_ttest(a: ArrayLike, b: ArrayLike) -> PairedTest:
    """Two-sided paired t-test (``scipy.stats.ttest_rel``) on the pairs where both are non-NaN."""
    x, y, dropped = _pairs(a, b)
    if x.size < 2:
        md = float((x - y).mean()) if x.size else math.nan
        return PairedTest(math.nan, math.nan, md, int(x.size), dropped, "paired t-test")
    res = stats.ttest_rel(x, y)
    md = float((x - y).mean())
    return PairedTest(
        float(res.statistic), float(res.pvalue), md, int(x.size), dropped, "paired t-test"
    )


def wilcoxon_signed_rank(a: ArrayLike, b: ArrayLike) -> PairedTest:
    """Two-sided Wilcoxon signed-rank test on the complete pairs (NaN if all differences are 0)."""
    x, y, dropped = _pairs(a, b)
    d = x - y
    md = float(d.mean()) if d.size else math.nan
    if d.size < 1 or np.all(d == 0):
        return PairedTest(math.nan, math.nan, md, int(d.size), dropped, "wilcoxon")
    res = stats.wilcoxon(x, y)
    return PairedTest(float(res.statistic), float(res.pvalue), md, int(d.size), dropped, "wilcoxon")


def bonferroni(pvalues: ArrayLike) -> np.ndarray:
    """Bonferroni-adjusted p-values ``min(1, p * m)``; m = number of non-NaN p-values.

    NaN p-values (tests that could not be run) stay NaN and do not count towards m.
    """
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    ok = ~np.isnan(p)
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ConfigError(f"p-values must lie in [0, 1], got {p[ok].tolist()}")
    m = int(ok.sum())
    out = np.full_like(p, np.nan)
    out[ok] = np.minimum(1.0, p[ok] * m)
    return out


def compare_to_reference(
    results: Mapping[str, ArrayLike],
    reference: str,
    test: Literal["ttest", "wilcoxon"] = "ttest",
) -> list[dict[str, float | int | str]]:
    """Compare every method with ``reference`` on paired per-case values.

    ``results`` maps method name -> per-case values, all aligned on the same case order.
    Returns one row per non-reference method with: method, reference, n, n_dropped,
    mean_method, mean_reference (both over the complete pairs), mean_diff (method - reference),
    statistic, p_raw and p_bonferroni (adjusted over the number of comparisons).
    """
    if reference not in results:
        raise ConfigError(f"reference method {reference!r} not in results {sorted(results)}")
    if test not in ("ttest", "wilcoxon"):
        raise ConfigError(f"test must be 'ttest' or 'wilcoxon', got {test!r}")
    fn = paired_ttest if test == "ttest" else wilcoxon_signed_rank
    ref = results[reference]
    rows: list[dict[str, float | int | str]] = []
    for method, values in results.items():
        if method == reference:
            continue
        x, y, _ = _pairs(values, ref)
        r = fn(values, ref)
        rows.append(
            {
                "method": method,
                "reference": reference,
                "n": r.n,
                "n_dropped": r.n_dropped,
                "mean_method": float(x.mean()) if x.size else math.nan,
                "mean_reference": float(y.mean()) if y.size else math.nan,
                "mean_diff": r.mean_diff,
                "statistic": r.statistic,
                "p_raw": r.pvalue,
                "test": r.test,
            }
        )
    adjusted = bonferroni([float(r["p_raw"]) for r in rows]) if rows else np.zeros(0)
    for r, p_adj in zip(rows, adjusted, strict=True):
        r["p_bonferroni"] = float(p_adj)
    return rows


@dataclass(frozen=True)
class BlandAltman:
    """Bland–Altman agreement of two measurements (``a - b``)."""

    bias: float  #: mean difference
    sd: float  #: sample std of the differences
    loa_lo: float  #: bias - z * sd
    loa_hi: float  #: bias + z * sd
    n: int
    n_dropped: int


def bland_altman(a: ArrayLike, b: ArrayLike, z: float = 1.96) -> BlandAltman:
    """Bias and limits of agreement of ``a`` against ``b`` (e.g. predicted vs GT volume, mL)."""
    x, y, dropped = _pairs(a, b)
    d = x - y
    if d.size == 0:
        return BlandAltman(math.nan, math.nan, math.nan, math.nan, 0, dropped)
    bias = float(d.mean())
    sd = float(d.std(ddof=1)) if d.size > 1 else math.nan
    return BlandAltman(bias, sd, bias - z * sd, bias + z * sd, int(d.size), dropped)


@dataclass(frozen=True)
class ICC:
    """Intraclass correlation ICC(2,1) with its ANOVA terms and confidence interval.

    Two-way random effects, absolute agreement, single measurement (Shrout & Fleiss 1979
    "ICC(2,1)"; McGraw & Wong 1996 "ICC(A,1)").
    """

    icc: float
    lo: float  #: lower bound of the (1 - alpha) CI (McGraw & Wong 1996, case 2A)
    hi: float  #: upper bound
    f: float  #: F = MSR / MSE, test of ICC = 0
    df1: int  #: n - 1
    df2: int  #: (n - 1)(k - 1)
    pvalue: float  #: one-sided p of F
    msr: float  #: between-subjects (rows) mean square
    msc: float  #: between-raters (columns) mean square
    mse: float  #: residual mean square
    n: int  #: subjects used (rows without NaN)
    k: int  #: raters / methods (columns)
    n_dropped: int  #: rows dropped because of a NaN
    alpha: float = 0.05


def icc_2_1(ratings: np.ndarray | Sequence[Sequence[float]], alpha: float = 0.05) -> ICC:
    """ICC(2,1) of an ``(n subjects, k raters)`` table, from the two-way ANOVA without
    replication::

        ICC(2,1) = (MSR - MSE) / (MSR + (k - 1) MSE + k (MSC - MSE) / n)

    with MSR = k·Σ(row mean - grand mean)² / (n - 1), MSC = n·Σ(column mean - grand mean)² /
    (k - 1) and MSE = residual sum of squares / ((n - 1)(k - 1)). Rows with a NaN are dropped and
    counted. The CI is McGraw & Wong's (1996) for ICC(A,1) (Satterthwaite degrees of freedom).
    Fewer than two complete rows, or no variance at all, give NaN.
    """
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must lie in (0, 1), got {alpha}")
    x = np.asarray(ratings, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ConfigError(f"ratings must be an (n, k >= 2) table, got shape {x.shape}")
    if np.any(np.isinf(x)):
        raise ConfigError("ratings contain infinite values; map them to NaN (undefined) first")
    keep = ~np.isnan(x).any(axis=1)
    dropped = int((~keep).sum())
    x = x[keep]
    n, k = x.shape
    nan = math.nan
    if n < 2:
        return ICC(nan, nan, nan, nan, max(n - 1, 0), 0, nan, nan, nan, nan, n, k, dropped, alpha)
    grand = float(x.mean())
    ss_rows = k * float(((x.mean(axis=1) - grand) ** 2).sum())
    ss_cols = n * float(((x.mean(axis=0) - grand) ** 2).sum())
    ss_err = float(((x - grand) ** 2).sum()) - ss_rows - ss_cols
    df1, df_c, df2 = n - 1, k - 1, (n - 1) * (k - 1)
    msr, msc, mse = ss_rows / df1, ss_cols / df_c, max(ss_err, 0.0) / df2
    denom = msr + (k - 1) * mse + k * (msc - mse) / n
    if denom <= 0 or mse == 0:
        value = 1.0 if (mse == 0 and msc == 0 and msr > 0) else nan
        return ICC(value, nan, nan, nan, df1, df2, nan, msr, msc, mse, n, k, dropped, alpha)
    value = (msr - mse) / denom
    f = msr / mse
    p = float(stats.f.sf(f, df1, df2))
    # McGraw & Wong (1996), case 2A (ICC(A,1)) confidence interval
    a = k * value / (n * (1.0 - value))
    b = 1.0 + k * value * (n - 1) / (n * (1.0 - value))
    fj = msc / mse
    v = (a * fj + b) ** 2 / ((a * fj) ** 2 / df_c + b**2 / df2)
    f_up = float(stats.f.ppf(1.0 - alpha / 2.0, df1, v))
    f_lo = float(stats.f.ppf(1.0 - alpha / 2.0, v, df1))
    c = k * msc + (k * n - k - n) * mse
    lo = n * (msr - f_up * mse) / (f_up * c + n * msr)
    hi = n * (f_lo * msr - mse) / (c + n * f_lo * msr)
    return ICC(
        float(value),
        float(lo),
        float(hi),
        float(f),
        df1,
        df2,
        p,
        msr,
        msc,
        mse,
        n,
        k,
        dropped,
        alpha,
    )


def icc_agreement(a: ArrayLike, b: ArrayLike, alpha: float = 0.05) -> ICC:
    """ICC(2,1) of two paired measurements (e.g. predicted vs ground-truth volume per case)."""
    x = _finite_or_nan(a, "a")
    y = _finite_or_nan(b, "b")
    if x.shape != y.shape:
        raise ConfigError(f"paired samples must have the same length, got {x.size} and {y.size}")
    return icc_2_1(np.stack([x, y], axis=1), alpha)
