"""The ABC/2 figure: the calipers on the slice of largest area and the Kothari slice weights.

Left panel: the axial slice of largest hemorrhage area (canonical LPS grid, displayed as
``array[:, :, k].T`` in the radiological convention, patient's right on the image's left, the
sides marked R/L from the affine), zoomed on the hemorrhage, with the scan as background when
given (else the mask alone), the mask outline and the A (longest) and B (perpendicular)
calipers with their lengths. Right panel: the hemorrhage area of every axial slice coloured by its
weight in C (Kothari: 1 at >= 75 % of the largest area, 0.5 at 25-75 %, 0 below), with the 75 %
and 25 % lines. The title gives A x B x C / 2 next to the planimetric volume.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ichseg.errors import InputFileError
from ichseg.io.volume import Volume, to_canonical
from ichseg.quantify.volume import ABC2Result, _slice_weight, abc2

A_COLOUR = "#ffd400"  #: caliper A (yellow)
B_COLOUR = "#00e5ff"  #: caliper B (cyan)
MASK_COLOUR = "#ff3030"  #: mask outline (red)
WEIGHT_COLOURS = {1.0: "#d62728", 0.5: "#ff9f40", 0.0: "#b0b0b0"}


def plot_abc2(
    mask: Volume,
    out_png: str | Path,
    *,
    scan: Volume | None = None,
    result: ABC2Result | None = None,
    planimetric_ml: float | None = None,
    window: tuple[float, float] = (40.0, 80.0),
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Write the ABC/2 figure of ``mask`` (see the module docstring) and return its path.

    ``scan`` (same voxel grid, permuted/flipped axes accepted) is drawn behind the mask through
    ``window`` (level, width in HU). ``result`` is the mask's :func:`~ichseg.quantify.volume.abc2`
    (computed when not given). ``out_png`` must end with ``.png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from ichseg.io.reader import align_mask_to
    from ichseg.quantify.analysis import integer_labels
    from ichseg.visualize.montage import _display_range
    from ichseg.visualize.overlay import patient_right_side

    out = Path(out_png)
    if out.suffix.lower() != ".png":
        raise InputFileError(f"{out}: the ABC/2 figure must be a .png file")
    labels = integer_labels(mask)
    if scan is not None:
        labels = align_mask_to(labels, scan)
    fg = labels.with_array((labels.array > 0).astype(np.uint8))
    res = result if result is not None else abc2(fg)
    if planimetric_ml is None:
        planimetric_ml = int(fg.array.sum()) * fg.voxel_volume_ml
    canon = to_canonical(fg)[0]
    cfg = canon.array.astype(bool)
    sx, sy, sz = canon.spacing
    areas = cfg.sum(axis=(0, 1)) * sx * sy  # mm² per canonical slice
    if res.a is not None:
        k = round(float(canon.world_to_voxel(res.a.ras)[:, 2].mean()))
    else:
        k = int(np.argmax(areas)) if areas.any() else cfg.shape[2] // 2

    fig, (ax, ax_w) = plt.subplots(
        1, 2, figsize=(10.0, 4.8), gridspec_kw={"width_ratios": [1.25, 1.0]}
    )
    aspect = sy / sx
    if scan is not None:
        img = to_canonical(scan)[0]
        vmin, vmax, wtext = _display_range(img, window)
        ax.imshow(
            np.asarray(img.array[:, :, k], dtype=np.float32).T,
            cmap="gray",
            vmin=vmin,
            vmax=vmax,
            aspect=aspect,
            interpolation="nearest",
        )
        background = f"scan [{wtext}]"
    else:
        ax.imshow(
            cfg[:, :, k].T, cmap="gray", vmin=0, vmax=2, aspect=aspect, interpolation="nearest"
        )
        ax.set_facecolor("black")
        background = "mask only (no scan given)"
    sl = cfg[:, :, k]
    if sl.any():
        ax.contour(sl.T.astype(float), levels=[0.5], colors=[MASK_COLOUR], linewidths=1.0)
        ii, jj = np.nonzero(sl)
        ext_i, ext_j = (ii.max() - ii.min() + 1) * sx, (jj.max() - jj.min() + 1) * sy
        margin_mm = max(20.0, 0.6 * max(ext_i, ext_j))
        mi, mj = margin_mm / sx, margin_mm / sy
        ax.set_xlim(max(-0.5, ii.min() - mi), min(sl.shape[0] - 0.5, ii.max() + mi))
        ax.set_ylim(min(sl.shape[1] - 0.5, jj.max() + mj), max(-0.5, jj.min() - mj))
    for name, cal, colour in (("A", res.a, A_COLOUR), ("B", res.b, B_COLOUR)):
        if cal is None:
            continue
        p = canon.world_to_voxel(cal.ras)  # canonical voxel coords; columns = i, rows = j
        ax.plot(
            p[:, 0],
            p[:, 1],
            "-",
            color=colour,
            linewidth=1.8,
            label=f"{name} {cal.length_mm:.1f} mm",
        )
        ax.plot(p[:, 0], p[:, 1], "o", color=colour, markersize=4)
        ax.text(
            float(p[1, 0]),
            float(p[1, 1]),
            f" {name}",
            color=colour,
            fontsize=9,
            fontweight="bold",
            va="center",
        )
    if res.a is not None:
        ax.legend(
            loc="lower left",
            fontsize=8,
            facecolor="black",
            edgecolor="none",
            framealpha=0.7,
            labelcolor="white",
        )
    right = patient_right_side(canon.affine, column_axis=0)
    left_letter, right_letter = ("R", "L") if right == "left" else ("L", "R")
    for x, ha, letter in ((0.02, "left", left_letter), (0.98, "right", right_letter)):
        ax.text(
            x,
            0.5,
            letter,
            transform=ax.transAxes,
            color="white",
            fontsize=11,
            fontweight="bold",
            ha=ha,
            va="center",
            bbox={"facecolor": "black", "alpha": 0.6, "edgecolor": "none", "pad": 1.5},
        )
    s_mm = float(canon.affine[2, :3] @ np.array([0.0, 0.0, k]) + canon.affine[2, 3])
    ax.set_title(
        f"largest-area slice (canonical k={k}, S {s_mm:+.1f} mm)\n{background}", fontsize=8
    )
    ax.set_xticks([])
    ax.set_yticks([])

    ks = np.arange(cfg.shape[2])
    s_pos = canon.affine[2, 2] * ks + canon.affine[2, 3]
    top = float(areas.max()) if areas.any() else 0.0
    weights = [_slice_weight(a / top, res.weighting) if a > 0 and top > 0 else 0.0 for a in areas]  # type: ignore[arg-type]
    colours = [WEIGHT_COLOURS.get(w, "#b0b0b0") for w in weights]
    ax_w.barh(s_pos, areas, height=0.8 * sz, color=colours, edgecolor="black", linewidth=0.4)
    if top > 0 and res.weighting == "kothari":
        for frac in (0.75, 0.25):
            ax_w.axvline(frac * top, color="k", lw=0.7, ls="--")
            ax_w.text(frac * top, s_pos.max() + 0.6 * sz, f"{frac:.0%}", fontsize=7, ha="center")
    ax_w.legend(
        handles=[Patch(color=c, label=f"weight {w:g}") for w, c in WEIGHT_COLOURS.items()],
        fontsize=7,
        loc="lower right",
    )
    ax_w.set_xlabel("hemorrhage area per slice (mm²)")
    ax_w.set_ylabel("slice position S (mm)")
    ax_w.set_title(
        f"C = {res.weighted_slices:g} weighted slices x {res.slice_thickness_mm:.3g} mm = "
        f"{res.c_mm:.1f} mm ({res.weighting})",
        fontsize=8,
    )
    ax_w.grid(alpha=0.3)
    head = (
        f"ABC/2 = {res.a_mm:.1f} x {res.b_mm:.1f} x {res.c_mm:.1f} / 2 = {res.volume_ml:.2f} mL"
        f"   |   planimetric {planimetric_ml:.2f} mL"
    )
    fig.suptitle(f"{title}\n{head}" if title else head, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out
