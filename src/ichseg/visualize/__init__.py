"""Static pictures of volumes and masks (PNG montages for reports, docs and sanity checks)."""

from ichseg.visualize.montage import pick_slices, render_montage

__all__ = ["pick_slices", "render_montage"]
