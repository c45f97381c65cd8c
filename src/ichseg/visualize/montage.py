"""PNG montage of axial slices with a mask outline, in the radiological display convention.

The volume is reoriented to ichseg's canonical LPS layout, so each panel shows
``array[:, :, k].T``: the patient's right on the image's left, anterior at the top. Raw-HU images
are shown through a display window (brain window 40/80 by default); images that are already
windowed (e.g. stored 0..255) are shown over their stored range. Mask labels are drawn as coloured
outlines over a light fill (one colour per label value, e.g. per hemorrhage subtype). Each panel is
labelled with its slice index ``k`` and the slice position in mm (RAS ``S`` coordinate).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ichseg.errors import ConfigError, InputFileError
from ichseg.io.volume import IntensityKind, Volume, check_same_grid, to_canonical

#: Outline colours for label values 1, 2, ... (label 1 of a binary mask is red).
LABEL_COLOURS = (
    "#ff3030",
    "#ffd400",
    "#00e5ff",
    "#7cff4f",
    "#ff5cf4",
    "#ff9a1f",
    "#8f7dff",
    "#ffffff",
)

PANEL_PX = 256  #: default size of one panel, pixels
_TITLE_PX = 28


def pick_slices(
    mask: np.ndarray | None, n_slices: int, n_total: int, context: int = 1
) -> list[int]:
    """Slice indices ``k`` to show: the lesion's slices plus ``context`` slices on each side.

    ``mask`` is ``(i, j, k)``. Without foreground the slices are spread evenly over the volume.
    A lesion spanning more slices than fit is sampled evenly over its extent (keeping the
    context slices); a small lesion is padded with neighbouring slices up to ``n_slices``.
    """
    if n_slices < 1:
        raise ConfigError(f"n_slices must be >= 1, got {n_slices}")
    n = min(n_slices, n_total)
    ks = np.flatnonzero(mask.any(axis=(0, 1))) if mask is not None and mask.any() else np.array([])
    if ks.size == 0:
        return sorted({round(v) for v in np.linspace(0, n_total - 1, n)})
    lo, hi = int(ks.min()), int(ks.max())
    ctx_lo = list(range(max(0, lo - context), lo))
    ctx_hi = list(range(hi + 1, min(n_total, hi + 1 + context)))
    room = n - len(ctx_lo) - len(ctx_hi)
    if room < 1:
        return sorted({round(v) for v in np.linspace(lo, hi, n)})
    if hi - lo + 1 > room:
        core = {round(v) for v in np.linspace(lo, hi, room)}
        return sorted(core | set(ctx_lo) | set(ctx_hi))
    chosen = set(range(lo, hi + 1)) | set(ctx_lo) | set(ctx_hi)
    a, b = min(chosen) - 1, max(chosen) + 1
    while len(chosen) < n and (a >= 0 or b < n_total):
        for k in (b, a):
            if 0 <= k < n_total and len(chosen) < n:
                chosen.add(k)
        a, b = a - 1, b + 1
    return sorted(chosen)


def _display_range(image: Volume, window: tuple[float, float]) -> tuple[float, float, str]:
    kind = image.intensity.kind
    if kind == IntensityKind.HU:
        level, width = window
        return level - width / 2.0, level + width / 2.0, f"W {width:g} / L {level:g} HU"
    if kind == IntensityKind.WINDOWED:
        lo, hi = image.intensity.stored_range or (
            float(image.array.min()),
            float(image.array.max()),
        )
        return float(lo), float(hi), f"stored range {lo:g}..{hi:g}"
    finite = np.asarray(image.array, dtype=np.float64)
    lo, hi = np.percentile(finite, [1.0, 99.0])
    return float(lo), float(max(hi, lo + 1e-6)), "1-99 percentile"


def render_montage(
    image: Volume,
    mask: Volume | None,
    out_path: str | Path,
    *,
    window: tuple[float, float] = (40.0, 80.0),
    n_slices: int = 12,
    title: str | None = None,
    columns: int | None = None,
    panel_px: int = PANEL_PX,
) -> Path:
    """Write a grid of axial slices (``window`` = level, width in HU) and return the PNG path.

    The picture is ``columns * panel_px`` wide and ``rows * panel_px`` (+ a title strip) high;
    ``columns`` defaults to 4 (fewer for fewer slices). Raises :class:`GeometryError` when the
    mask does not lie on the image grid and :class:`ConfigError` for a bad window or count.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    level, width = (float(v) for v in window)
    if not (np.isfinite(level) and np.isfinite(width)) or width <= 0:
        raise ConfigError(f"window must be (level, width) with width > 0, got {window!r}")
    if panel_px < 32:
        raise ConfigError(f"panel_px must be >= 32, got {panel_px}")
    out = Path(out_path)
    if out.suffix.lower() != ".png":
        raise InputFileError(f"{out}: montage output must be a .png file")
    if mask is not None:
        check_same_grid(image, mask)
    img_c, _ = to_canonical(image)
    mask_c = to_canonical(mask)[0] if mask is not None else None
    arr = np.asarray(img_c.array)
    labels = None if mask_c is None else np.asarray(mask_c.array)
    ks = pick_slices(None if labels is None else labels > 0, n_slices, arr.shape[2])
    vmin, vmax, wtext = _display_range(img_c, (level, width))

    ncol = columns if columns is not None else min(4, len(ks))
    if ncol < 1:
        raise ConfigError(f"columns must be >= 1, got {ncol}")
    nrow = -(-len(ks) // ncol)
    dpi = 100
    title_px = _TITLE_PX if title else 0
    fig = plt.figure(
        figsize=(ncol * panel_px / dpi, (nrow * panel_px + title_px) / dpi),
        dpi=dpi,
        facecolor="black",
    )
    sp = img_c.spacing
    aspect = sp[1] / sp[0]
    ci, cj = (arr.shape[0] - 1) / 2.0, (arr.shape[1] - 1) / 2.0
    fill_cmap = ListedColormap(["#00000000", *[c + "55" for c in LABEL_COLOURS]])
    h_frac = panel_px / (nrow * panel_px + title_px)
    w_frac = 1.0 / ncol
    for n, k in enumerate(ks):
        r, c = divmod(n, ncol)
        ax = fig.add_axes(
            (
                c * w_frac,
                1.0 - title_px / (nrow * panel_px + title_px) - (r + 1) * h_frac,
                w_frac,
                h_frac,
            )
        )
        ax.set_facecolor("black")
        ax.imshow(
            arr[:, :, k].T,
            cmap="gray",
            vmin=vmin,
            vmax=vmax,
            aspect=aspect,
            interpolation="bilinear",
        )
        if labels is not None:
            lab = labels[:, :, k].T
            if lab.any():
                vals = [int(v) for v in np.unique(lab) if v > 0]
                shown = np.where(lab > 0, (lab - 1) % len(LABEL_COLOURS) + 1, 0)
                ax.imshow(
                    shown,
                    cmap=fill_cmap,
                    vmin=0,
                    vmax=len(LABEL_COLOURS),
                    aspect=aspect,
                    interpolation="nearest",
                )
                for v in vals:
                    colour = LABEL_COLOURS[(v - 1) % len(LABEL_COLOURS)]
                    ax.contour(lab == v, levels=[0.5], colors=[colour], linewidths=0.8)
        s_mm = float(img_c.affine[2, :3] @ np.array([ci, cj, k]) + img_c.affine[2, 3])
        ax.text(
            0.02,
            0.98,
            f"k={k}  S {s_mm:+.1f} mm",
            transform=ax.transAxes,
            color="white",
            fontsize=max(6, panel_px // 32),
            va="top",
            ha="left",
        )
        ax.set_axis_off()
    if title:
        fig.text(
            0.01,
            1.0 - 0.5 * title_px / (nrow * panel_px + title_px),
            f"{title}   [{wtext}]",
            color="white",
            fontsize=10,
            va="center",
            ha="left",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, facecolor="black")
    plt.close(fig)
    return out
