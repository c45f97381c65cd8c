"""ichseg.quantify: clinical hemorrhage volume measurements (planimetric, ABC/2, expansion), one
mask's full quantification with QA checks, baseline/follow-up comparison, the ABC/2 figure and
the HTML/PDF report of one segmentation."""

from ichseg.quantify.analysis import (
    Comparison,
    QACheck,
    QuantifyReport,
    compare_masks,
    format_compare_text,
    format_quantify_text,
    parse_label_names,
    quantify_mask,
)
from ichseg.quantify.figures import plot_abc2
from ichseg.quantify.report import (
    SegmentationReport,
    build_report,
    summarize_log,
    write_segmentation_report,
)
from ichseg.quantify.volume import (
    EXPANSION_CRITERIA,
    ABC2Result,
    Caliper,
    ComponentInfo,
    ExpansionResult,
    VolumeReport,
    abc2,
    components_report,
    expansion,
    label_components,
    planimetric_volume_ml,
    volume_report,
    volumes_by_label,
)

__all__ = [
    "EXPANSION_CRITERIA",
    "ABC2Result",
    "Caliper",
    "Comparison",
    "ComponentInfo",
    "ExpansionResult",
    "QACheck",
    "QuantifyReport",
    "SegmentationReport",
    "VolumeReport",
    "abc2",
    "build_report",
    "compare_masks",
    "components_report",
    "expansion",
    "format_compare_text",
    "format_quantify_text",
    "label_components",
    "parse_label_names",
    "planimetric_volume_ml",
    "plot_abc2",
    "quantify_mask",
    "summarize_log",
    "volume_report",
    "volumes_by_label",
    "write_segmentation_report",
]
