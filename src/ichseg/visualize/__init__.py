"""Static pictures of volumes and masks (PNG montages for reports, docs and sanity checks)."""

from ichseg.visualize.montage import pick_slices, render_montage
from ichseg.visualize.overlay import OverlayPanel, patient_right_side, render_overlay

__all__ = ["OverlayPanel", "patient_right_side", "pick_slices", "render_montage", "render_overlay"]
