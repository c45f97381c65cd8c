"""ichseg.evaluation: per-scan metrics, statistics, result tables and figures.

``metrics`` and ``statistics`` are re-exported here (numpy/scipy only). Import
:mod:`ichseg.evaluation.tables` (pandas) and :mod:`ichseg.evaluation.plots` (matplotlib)
explicitly.
"""

from ichseg.evaluation.metrics import (
    LegacyRowHD,
    MetricSummary,
    abs_volume_error_ml,
    aggregate_cases,
    dice,
    evaluate_case,
    hausdorff,
    hd95,
    hd_percentile,
    jaccard,
    legacy_row_hausdorff,
    legacy_slice_mean_row_hd,
    mae,
    normalized_surface_dice,
    summarize,
    surface_distances,
    volume_ml,
)
from ichseg.evaluation.statistics import (
    BlandAltman,
    BootstrapCI,
    MeanStd,
    PairedTest,
    bland_altman,
    bonferroni,
    bootstrap_ci,
    compare_to_reference,
    mean_std,
    paired_ttest,
    wilcoxon_signed_rank,
)

__all__ = [
    "BlandAltman",
    "BootstrapCI",
    "LegacyRowHD",
    "MeanStd",
    "MetricSummary",
    "PairedTest",
    "abs_volume_error_ml",
    "aggregate_cases",
    "bland_altman",
    "bonferroni",
    "bootstrap_ci",
    "compare_to_reference",
    "dice",
    "evaluate_case",
    "hausdorff",
    "hd95",
    "hd_percentile",
    "jaccard",
    "legacy_row_hausdorff",
    "legacy_slice_mean_row_hd",
    "mae",
    "mean_std",
    "normalized_surface_dice",
    "paired_ttest",
    "summarize",
    "surface_distances",
    "volume_ml",
    "wilcoxon_signed_rank",
]
