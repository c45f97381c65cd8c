"""One PNG comparing a prediction with the ground truth on chosen slices, prompts drawn.

Each panel is one axial slice of the canonical (LPS) grid, displayed as ``array[:, :, k].T``
(rows = ``j``, columns = ``i``; see :mod:`ichseg.io.volume`), with the ground-truth outline and
the predicted outline in two colours, the panel's scribbles and clicks (hemorrhage / background
in two more colours), its own title (e.g. a round's Dice and volume) and the patient's **R** and
**L** written on the sides where they are shown. Which side is the patient's right is read from
the affine, not assumed (:func:`patient_right_side`): for the canonical grid it is the image's
left (the radiological convention).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ichseg.errors import ConfigError, GeometryError, InputFileError
from ichseg.io.volume import Volume, to_canonical

GT_COLOUR = "#ffd400"  #: ground-truth outline (yellow)
PRED_COLOUR = "#ff3030"  #: predicted outline (red)
POSITIVE_COLOUR = "#3dff6e"  #: hemorrhage prompts (green)
NEGATIVE_COLOUR = "#33c8ff"  #: background prompts (blue)

PANEL_PX = 320  #: default side of one image panel, pixels
TITLE_PX = 40  #: strip above each panel for its (two-line) title
HEADER_PX = 28  #: strip at the top for the figure title
LEGEND_ROW_PX = 22  #: height of one legend row at the bottom (1 row from 640 px wide, else 2)
_DPI = 100


@dataclass(frozen=True)
class OverlayPanel:
    """One panel: canonical slice ``z`` with a prediction, the prompts to draw, a title."""

    z: int
    prediction: np.ndarray  #: canonical ``(Z, Y, X)`` mask (any dtype, > 0 = hemorrhage)
    title: str = ""
    prompts: Sequence[object] = field(default_factory=tuple)  #: Click/Scribble; others on z only


def patient_right_side(affine: np.ndarray, column_axis: int = 0) -> Literal["left", "right"]:
    """Which side of a displayed slice shows the patient's right.

    The image's columns run along voxel axis ``column_axis`` of ``affine`` (voxel -> RAS+ mm),
    increasing to the right of the picture. RAS+ ``x`` grows towards the patient's right, so if
    that axis points to the right (``affine[0, axis] > 0``) the patient's right is on the
    picture's right, otherwise on its left. Raises :class:`GeometryError` when the axis runs
    mostly anterior-posterior or inferior-superior (no left-right side to mark).
    """
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        raise GeometryError(f"affine must be a finite 4x4 matrix, got shape {a.shape}")
    if column_axis not in (0, 1, 2):
        raise ConfigError(f"column_axis must be 0, 1 or 2, got {column_axis}")
    direction = a[:3, column_axis]
    norm = float(np.linalg.norm(direction))
    if norm == 0 or abs(direction[0]) / norm < 0.5:
        raise GeometryError(
            f"voxel axis {column_axis} does not run left-right (direction {direction.tolist()})"
        )
    return "right" if direction[0] > 0 else "left"


def _draw_prompts(ax: object, prompts: Sequence[object], z: int) -> None:
    from ichseg.interaction.prompts import Click, Scribble

    for p in prompts:
        if getattr(p, "z", None) != z:
            continue
        colour = POSITIVE_COLOUR if getattr(p, "positive", True) else NEGATIVE_COLOUR
        if isinstance(p, Scribble):
            yx = np.asarray(p.points, dtype=np.float64)
            if len(yx) == 1:
                ax.plot(yx[:, 1], yx[:, 0], "o", color=colour, markersize=3)  # type: ignore[attr-defined]
            else:
                ax.plot(yx[:, 1], yx[:, 0], "-", color=colour, linewidth=1.6)  # type: ignore[attr-defined]
        elif isinstance(p, Click):
            ax.plot(  # type: ignore[attr-defined]
                [p.x], [p.y], "o", color=colour, markersize=6, markeredgecolor="black"
            )


def overlay_size(n_panels: int, columns: int, panel_px: int = PANEL_PX) -> tuple[int, int]:
    """``(width, height)`` in pixels of an overlay with ``n_panels`` in ``columns`` columns."""
    ncol = max(1, min(columns, n_panels))
    nrow = -(-n_panels // ncol)
    width = ncol * panel_px
    legend_rows = 1 if width >= 640 else 2
    return width, nrow * (panel_px + TITLE_PX) + HEADER_PX + legend_rows * LEGEND_ROW_PX


def render_overlay(
    image: Volume,
    ground_truth: Volume | None,
    panels: Sequence[OverlayPanel],
    out_path: str | Path,
    *,
    title: str | None = None,
    window: tuple[float, float] = (40.0, 80.0),
    columns: int | None = None,
    panel_px: int = PANEL_PX,
) -> Path:
    """Write the overlay PNG and return its path.

    ``image`` and ``ground_truth`` are on the same (any-orientation) grid; panels refer to the
    canonical grid of ``image``. The picture is ``columns * panel_px`` wide (``columns``
    defaults to the number of panels, at most 4) and
    ``rows * (panel_px + TITLE_PX) + HEADER_PX + legend rows * LEGEND_ROW_PX`` high
    (:func:`overlay_size`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from ichseg.io.volume import check_same_grid
    from ichseg.visualize.montage import _display_range

    out = Path(out_path)
    if out.suffix.lower() != ".png":
        raise InputFileError(f"{out}: overlay output must be a .png file")
    if not panels:
        raise ConfigError("an overlay needs at least one panel")
    if panel_px < 64:
        raise ConfigError(f"panel_px must be >= 64, got {panel_px}")
    if ground_truth is not None:
        check_same_grid(image, ground_truth, "ground truth")
    img_c = to_canonical(image)[0]
    arr_zyx = img_c.zyx()
    gt_zyx = None if ground_truth is None else to_canonical(ground_truth)[0].zyx() > 0
    for p in panels:
        if p.prediction.shape != arr_zyx.shape:
            raise GeometryError(
                f"panel prediction has shape {p.prediction.shape}, expected the canonical "
                f"(Z, Y, X) {arr_zyx.shape}"
            )
        if not 0 <= int(p.z) < arr_zyx.shape[0]:
            raise ConfigError(f"panel slice {p.z} is outside 0..{arr_zyx.shape[0] - 1}")
    vmin, vmax, wtext = _display_range(img_c, window)
    right = patient_right_side(img_c.affine, column_axis=0)  # columns of zyx[z] are i

    ncol = columns if columns is not None else min(4, len(panels))
    if ncol < 1:
        raise ConfigError(f"columns must be >= 1, got {ncol}")
    ncol = min(ncol, len(panels))
    nrow = -(-len(panels) // ncol)
    cell_h = panel_px + TITLE_PX
    width_px, height_px = overlay_size(len(panels), ncol, panel_px)
    legend_px = height_px - nrow * cell_h - HEADER_PX
    fig = plt.figure(figsize=(width_px / _DPI, height_px / _DPI), dpi=_DPI, facecolor="black")
    sp = img_c.spacing
    aspect = sp[1] / sp[0]
    for n, panel in enumerate(panels):
        r, c = divmod(n, ncol)
        top_px = HEADER_PX + r * cell_h + TITLE_PX
        ax = fig.add_axes(
            (
                c * panel_px / width_px,
                1.0 - (top_px + panel_px) / height_px,
                panel_px / width_px,
                panel_px / height_px,
            )
        )
        ax.set_facecolor("black")
        z = int(panel.z)
        ax.imshow(
            arr_zyx[z], cmap="gray", vmin=vmin, vmax=vmax, aspect=aspect, interpolation="bilinear"
        )
        if gt_zyx is not None and gt_zyx[z].any():
            ax.contour(gt_zyx[z], levels=[0.5], colors=[GT_COLOUR], linewidths=1.2)
        pred = np.asarray(panel.prediction[z]) > 0
        if pred.any():
            ax.contour(pred, levels=[0.5], colors=[PRED_COLOUR], linewidths=1.2)
        _draw_prompts(ax, panel.prompts, z)
        ax.set_xlim(-0.5, arr_zyx.shape[2] - 0.5)
        ax.set_ylim(arr_zyx.shape[1] - 0.5, -0.5)
        font = max(8, panel_px // 26)
        left_letter, right_letter = ("R", "L") if right == "left" else ("L", "R")
        for x, ha, letter in ((0.02, "left", left_letter), (0.98, "right", right_letter)):
            ax.text(
                x,
                0.5,
                letter,
                transform=ax.transAxes,
                color="white",
                fontsize=font + 2,
                fontweight="bold",
                ha=ha,
                va="center",
            )
        ax.set_axis_off()
        fig.text(
            (c + 0.5) * panel_px / width_px,
            1.0 - (HEADER_PX + r * cell_h + TITLE_PX / 2) / height_px,
            panel.title,
            color="white",
            fontsize=font,
            ha="center",
            va="center",
            linespacing=1.1,
        )
    header = f"{title}   [{wtext}]" if title else f"[{wtext}]"
    fig.text(
        0.01,
        1.0 - 0.5 * HEADER_PX / height_px,
        header,
        color="white",
        fontsize=10,
        ha="left",
        va="center",
    )
    handles = [
        Line2D([], [], color=GT_COLOUR, linewidth=2, label="ground truth"),
        Line2D([], [], color=PRED_COLOUR, linewidth=2, label="prediction"),
        Line2D([], [], color=POSITIVE_COLOUR, linewidth=2, label="hemorrhage prompt"),
        Line2D([], [], color=NEGATIVE_COLOUR, linewidth=2, label="background prompt"),
    ]
    fig.legend(
        handles=handles,
        loc="center",
        bbox_to_anchor=(0.5, 0.5 * legend_px / height_px),
        ncol=4 if legend_px == LEGEND_ROW_PX else 2,
        frameon=False,
        labelcolor="white",
        fontsize=8,
        handlelength=1.5,
        columnspacing=1.2,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=_DPI, facecolor="black")
    plt.close(fig)
    return out
