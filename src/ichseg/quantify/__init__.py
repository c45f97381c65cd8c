"""ichseg.quantify: clinical hemorrhage volume measurements (planimetric, ABC/2, expansion)."""

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
    planimetric_volume_ml,
    volume_report,
    volumes_by_label,
)

__all__ = [
    "EXPANSION_CRITERIA",
    "ABC2Result",
    "Caliper",
    "ComponentInfo",
    "ExpansionResult",
    "VolumeReport",
    "abc2",
    "components_report",
    "expansion",
    "planimetric_volume_ml",
    "volume_report",
    "volumes_by_label",
]
