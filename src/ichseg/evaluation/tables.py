"""Paper-style result tables from a long-format results frame, with CSV and Markdown writers.

The results frame has one row per (method, fold, case_id, round) and one column per metric
(e.g. the keys of :func:`ichseg.evaluation.metrics.evaluate_case`). ``fold`` and ``round`` are
optional: a missing ``fold`` means a single fold (0), a missing ``round`` a single round (1).
Rounds are integers starting at 1 (interaction rounds or clicks).

Aggregation rules (used by every table here):

* The value of a case "at round r" is its row with the largest round <= r (a case that stopped
  interacting early keeps its last result); ``round="final"`` takes each case's last row.
* ``mean ± std`` is the mean and sample std **over folds** of the per-fold case means;
  ``[lo, hi]`` is the 95 % percentile-bootstrap CI of the mean over all cases pooled across folds
  (:func:`ichseg.evaluation.statistics.bootstrap_ci`, seed 47, 5000 resamples).
* NaN metric values (undefined, e.g. HD95 when exactly one mask is empty) are dropped and their
  number is shown in the cell as ``(NaN: k)``.
* **NoC@t** (:func:`noc`) of a run of ``R`` rounds with an interaction budget (cap) ``C``: a
  case's first round ``r <= min(C, R)`` with ``metric >= t``. A case that never gets there
  counts as ``min(R + 1, C)``: as ``C`` when the whole budget was run (``R >= C``, the
  literature's convention: a failure costs the full budget), and as ``R + 1`` when fewer rounds
  than the cap were run (``R < C``: whether it would have reached ``t`` by round ``C`` is
  unknown; ``R + 1`` is the smallest value consistent with the run, so the mean is then a lower
  bound). Such cases are counted in ``failed@t``. The cap defaults to
  ``min(NOC_CAP, R)`` = ``min(20, R)``: 20 interactions when the run had that many, otherwise
  ``R`` (a failure then counts as ``R``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ichseg.errors import ConfigError, InputFileError
from ichseg.evaluation.statistics import bootstrap_ci, mean_std

KEY_COLUMNS: tuple[str, ...] = ("method", "fold", "case_id", "round")
NOC_CAP = 20  #: the usual NoC interaction budget (RITM, SimpleClick, ...): 20 clicks
RoundSel = int | Literal["final"]


def validate_results(df: pd.DataFrame, metrics: Iterable[str] = ()) -> pd.DataFrame:
    """Check a long-format results frame; return a copy with ``fold``/``round`` defaults filled."""
    if not isinstance(df, pd.DataFrame):
        raise ConfigError(f"results must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in ("method", "case_id") if c not in df.columns]
    if missing:
        raise ConfigError(
            f"results frame lacks required column(s) {missing}; has {list(df.columns)}"
        )
    out = df.reset_index(drop=True)
    if "fold" not in out.columns:
        out["fold"] = 0
    if "round" not in out.columns:
        out["round"] = 1
    if out.empty:
        raise ConfigError("results frame is empty")
    rounds = pd.to_numeric(out["round"], errors="coerce")
    if rounds.isna().any() or (rounds < 1).any() or (rounds != np.floor(rounds)).any():
        raise ConfigError("column 'round' must hold integers >= 1")
    out["round"] = rounds.astype(int)
    for m in metrics:
        if m not in out.columns:
            raise ConfigError(f"metric column {m!r} not in results frame {list(df.columns)}")
        out[m] = pd.to_numeric(out[m], errors="coerce").astype(float)
    dup = out.duplicated(list(KEY_COLUMNS))
    if dup.any():
        first = out.loc[dup, list(KEY_COLUMNS)].iloc[0].to_dict()
        raise ConfigError(f"duplicate results row for {first}")
    return out


def read_results(path: str | Path) -> pd.DataFrame:
    """Read a results CSV (as written by evaluation runs) and validate it."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"{p}: results file not found")
    try:
        df = pd.read_csv(p, dtype={"case_id": str})  # "001" stays "001"
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{p}: not a readable CSV ({exc})") from exc
    return validate_results(df)


def methods_in_order(df: pd.DataFrame) -> list[str]:
    """Method names in order of first appearance."""
    return [str(m) for m in pd.unique(df["method"])]


def at_round(df: pd.DataFrame, round: RoundSel = "final") -> pd.DataFrame:
    """One row per (method, fold, case_id): the case's value at ``round`` (see module rules)."""
    d = validate_results(df)
    if round != "final":
        if not isinstance(round, (int, np.integer)) or round < 1:
            raise ConfigError(f"round must be 'final' or an integer >= 1, got {round!r}")
        d = d[d["round"] <= int(round)]
    d = d.sort_values("round", kind="stable")
    return d.groupby(["method", "fold", "case_id"], sort=False).tail(1).sort_index()


def summarize_methods(
    df: pd.DataFrame,
    metrics: Sequence[str] = ("dice", "jaccard", "hd95"),
    round: RoundSel = "final",
    *,
    n_resamples: int = 5000,
    seed: int = 47,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Numeric summary: one row per (method, metric) with mean, std (over folds), n_folds,
    ci_lo, ci_hi (bootstrap over pooled cases), case_mean, n_cases and n_nan."""
    d = at_round(validate_results(df, metrics), round)
    rows = []
    for method in methods_in_order(d):
        dm = d[d["method"] == method]
        for metric in metrics:
            fold_means = dm.groupby("fold", sort=True)[metric].mean()  # skips NaN
            ms = mean_std(fold_means.to_numpy())
            ci = bootstrap_ci(
                dm[metric].to_numpy(), n_resamples=n_resamples, seed=seed, alpha=alpha
            )
            rows.append(
                {
                    "method": method,
                    "metric": metric,
                    "mean": ms.mean,
                    "std": ms.std,
                    "n_folds": ms.n,
                    "ci_lo": ci.lo,
                    "ci_hi": ci.hi,
                    "case_mean": ci.mean,
                    "n_cases": ci.n,
                    "n_nan": ci.n_nan,
                }
            )
    return pd.DataFrame(rows)


def format_cell(
    mean: float, std: float, lo: float, hi: float, n_nan: int = 0, decimals: int = 3
) -> str:
    """``"mean ± std [lo, hi]"``; std omitted when undefined, ``(NaN: k)`` appended if k > 0."""
    if math.isnan(mean):
        text = "n/a"
    else:
        f = f"{{:.{decimals}f}}"
        text = f.format(mean)
        if not math.isnan(std):
            text += " ± " + f.format(std)
        if not (math.isnan(lo) or math.isnan(hi)):
            text += f" [{f.format(lo)}, {f.format(hi)}]"
    if n_nan:
        text += f" (NaN: {n_nan})"
    return text


def table_methods(
    df: pd.DataFrame,
    metrics: Sequence[str] = ("dice", "jaccard", "hd95"),
    round: RoundSel = "final",
    *,
    decimals: int = 3,
    n_resamples: int = 5000,
    seed: int = 47,
) -> pd.DataFrame:
    """Methods x metrics table of ``"mean ± std (over folds) [95% CI]"`` strings."""
    s = summarize_methods(df, metrics, round, n_resamples=n_resamples, seed=seed)
    table = pd.DataFrame(index=pd.Index(methods_in_order(s), name="method"), columns=list(metrics))
    for r in s.itertuples(index=False):
        table.loc[r.method, r.metric] = format_cell(
            r.mean, r.std, r.ci_lo, r.ci_hi, int(r.n_nan), decimals
        )
    return table


def table_rounds(
    df: pd.DataFrame, metric: str = "dice", rounds: Sequence[int] | None = None
) -> pd.DataFrame:
    """Table-5 style: mean ``metric`` (mean of fold means) after each round, methods x rounds.

    ``rounds`` defaults to 1 .. the largest round in the frame. Columns are named ``"round r"``.
    """
    d = validate_results(df, [metric])
    if rounds is None:
        rounds = range(1, int(d["round"].max()) + 1)
    methods = methods_in_order(d)
    table = pd.DataFrame(index=pd.Index(methods, name="method"), dtype=float)
    for r in rounds:
        dr = at_round(d, int(r))
        col = f"round {int(r)}"
        table[col] = math.nan
        for method in methods:
            fold_means = dr[dr["method"] == method].groupby("fold")[metric].mean()
            table.loc[method, col] = mean_std(fold_means.to_numpy()).mean
    return table


def clicks_to_reach(
    df: pd.DataFrame,
    threshold: float,
    max_rounds: int,
    metric: str = "dice",
    *,
    unreached: int | None = None,
) -> pd.DataFrame:
    """Per case: first round with ``metric >= threshold`` (rounds > max_rounds ignored).

    Returns columns method, fold, case_id, noc, failed; a case that never reaches the threshold
    gets ``noc = unreached`` (default ``max_rounds``) and ``failed = True``.
    """
    d = validate_results(df, [metric])
    d = d[d["round"] <= max_rounds]
    reached = d[d[metric] >= threshold]
    first = reached.groupby(["method", "fold", "case_id"], sort=False)["round"].min()
    cases = d[["method", "fold", "case_id"]].drop_duplicates()
    out = cases.join(first.rename("first"), on=["method", "fold", "case_id"])
    out["failed"] = out["first"].isna()
    fill = max_rounds if unreached is None else int(unreached)
    out["noc"] = out["first"].fillna(fill).astype(int)
    return out.drop(columns="first").reset_index(drop=True)


def noc_budget(rounds_run: int, cap: int | None = None) -> tuple[int, int]:
    """``(rounds counted, value of an unreached case)`` of NoC for a run of ``rounds_run``
    rounds with interaction budget ``cap`` (default ``min(NOC_CAP, rounds_run)``); see the
    module docstring."""
    r = int(rounds_run)
    if r < 1:
        raise ConfigError(f"max_rounds must be >= 1, got {rounds_run}")
    c = min(NOC_CAP, r) if cap is None else cap
    if isinstance(c, bool) or int(c) != c or c < 1:
        raise ConfigError(f"NoC cap must be an integer >= 1, got {cap!r}")
    c = int(c)
    return min(c, r), min(r + 1, c)


def noc(
    df: pd.DataFrame,
    thresholds: Sequence[float] = (0.80, 0.85, 0.90),
    max_rounds: int | None = None,
    metric: str = "dice",
    *,
    cap: int | None = None,
) -> pd.DataFrame:
    """Mean number of clicks/rounds to reach each Dice threshold (NoC@t), per method.

    ``max_rounds``: the rounds the run had (default: the largest round in the frame); ``cap``:
    the interaction budget (default ``min(20, max_rounds)``). Only rounds ``<= min(cap,
    max_rounds)`` count; a case that never reaches ``t`` counts as ``min(max_rounds + 1, cap)``
    in the mean (see the module docstring) and is reported in ``failed@t``. Columns:
    ``NoC@80, failed@80, ...`` and ``n_cases``; ``attrs`` holds ``noc_cap``, ``rounds_run`` and
    ``unreached_counts_as``.
    """
    d = validate_results(df, [metric])
    if max_rounds is None:
        max_rounds = int(d["round"].max())
    counted, unreached = noc_budget(max_rounds, cap)
    methods = methods_in_order(d)
    table = pd.DataFrame(index=pd.Index(methods, name="method"))
    for t in thresholds:
        if not 0.0 <= t <= 1.0:
            raise ConfigError(f"thresholds must lie in [0, 1], got {t}")
        per_case = clicks_to_reach(d, t, counted, metric, unreached=unreached)
        label = f"{100 * t:g}"
        g = per_case.groupby("method", sort=False)
        table[f"NoC@{label}"] = g["noc"].mean().reindex(methods).astype(float)
        table[f"failed@{label}"] = g["failed"].sum().reindex(methods).astype(int)
    counts = d[["method", "fold", "case_id"]].drop_duplicates().groupby("method").size()
    table["n_cases"] = counts.reindex(methods).astype(int)
    table.attrs.update(
        noc_cap=min(NOC_CAP, int(max_rounds)) if cap is None else int(cap),
        rounds_run=int(max_rounds),
        unreached_counts_as=unreached,
    )
    return table


# --- writers ----------------------------------------------------------------------------------
def _fmt(value: object, decimals: int) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return "n/a" if math.isnan(v) else f"{v:.{decimals}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(table: pd.DataFrame, decimals: int = 3) -> str:
    """Render a table (index as the first column) as a GitHub-flavoured Markdown table."""
    index_name = str(table.index.name) if table.index.name is not None else ""
    header = [index_name, *(str(c) for c in table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    columns = [table[c] for c in table.columns]  # per column, so int columns stay ints
    for r, idx in enumerate(table.index):
        cells = [_fmt(idx, decimals), *(_fmt(col.iloc[r], decimals) for col in columns)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a table as CSV (index included); parent folders are created."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(p)
    return p


def write_markdown(
    table: pd.DataFrame,
    path: str | Path,
    title: str,
    command: str,
    *,
    notes: str | None = None,
    decimals: int = 3,
) -> Path:
    """Write a Markdown file with the title, the exact command that produced it, and the table."""
    if not command.strip():
        raise ConfigError("write_markdown needs the command that produced the table")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    parts = [f"## {title}", "", "Produced by:", "", "```bash", command.strip(), "```", ""]
    parts.append(to_markdown(table, decimals))
    if notes:
        parts += ["", notes.strip(), ""]
    p.write_text("\n".join(parts), encoding="utf-8")
    return p
