"""A one-segmentation report as a self-contained HTML page or a PDF (matplotlib's PDF backend).

:func:`write_segmentation_report` measures a mask on its scan (:func:`~ichseg.quantify.analysis.
quantify_mask`) and writes, in this order: the volumes (planimetric and ABC/2 with A, B, C), the
QA checks, the subtype table when the mask carries subtype labels, the connected components,
the ABC/2 figure (calipers on the largest slice, Kothari slice weights), an overlay montage of the
axial slices, and, given an interaction log, its rounds (volume, change, prompted slices,
computation seconds) with a volume-per-round chart. The HTML embeds its pictures (base64 PNG),
so it is one file to mail or archive; the PDF has the same content on A4 landscape pages.

The log's ``seconds`` are the engine's computation time of each round; the log holds no
wall-clock times of the clinician's work, and the report says so. A log recorded on another scan
(sha256 of voxels and geometry) or whose last round's volume differs from the mask's is noted in
the report and announced as an :class:`~ichseg.errors.InputWarning`.
"""

from __future__ import annotations

import base64
import html
import math
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ichseg.errors import ConfigError, InputFileError, InputWarning
from ichseg.io.volume import Volume
from ichseg.quantify.analysis import QuantifyReport, jsonable, quantify_mask
from ichseg.quantify.volume import Weighting

REPORT_SUFFIXES = (".html", ".htm", ".pdf")
_STATUS_TEXT = {"flagged": "FLAG", "ok": "ok", "unknown": "cannot tell"}


# --- interaction log ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RoundRow:
    """One round of an interaction log."""

    index: int
    volume_ml: float
    delta_ml: float
    interacted_slices: tuple[int, ...]
    seconds: float


@dataclass(frozen=True)
class InteractionSummary:
    """What an interaction log says about how the mask was made."""

    engine: str
    rounds: list[RoundRow]
    n_prompts: int
    n_undo: int
    n_redo: int
    source: str | None = None  #: the log file, if read from one
    notes: tuple[str, ...] = ()

    @property
    def total_seconds(self) -> float:
        return float(sum(r.seconds for r in self.rounds))

    def as_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "engine": self.engine,
                "source": self.source,
                "n_rounds": len(self.rounds),
                "n_prompts": self.n_prompts,
                "n_undo": self.n_undo,
                "n_redo": self.n_redo,
                "total_compute_seconds": self.total_seconds,
                "rounds": [r.__dict__ for r in self.rounds],
                "notes": list(self.notes),
            }
        )


def summarize_log(
    log: Mapping[str, Any] | str | Path,
    *,
    scan: Volume | None = None,
    mask_ml: float | None = None,
) -> InteractionSummary:
    """Rounds and counts of an interaction log (a file, read and validated by
    :func:`ichseg.interaction.session.read_log`, or the dict of ``InteractiveSession.log()``).

    With ``scan``, a log recorded on another scan is noted; with ``mask_ml``, a final logged
    volume that differs from the mask's by more than 0.01 mL is noted (each note is also an
    :class:`~ichseg.errors.InputWarning`).
    """
    from ichseg.interaction.session import read_log, volume_sha256

    source = None
    if isinstance(log, str | Path):
        source = str(log)
        data: Mapping[str, Any] = read_log(log)
    elif isinstance(log, Mapping):
        data = log
    else:
        raise ConfigError(f"log must be a path or a log mapping, got {type(log).__name__}")
    where = source or "the interaction log"
    try:
        rounds = [
            RoundRow(
                int(r["index"]),
                float(r["volume_ml"]),
                float(r.get("delta_ml", math.nan)),
                tuple(int(z) for z in r.get("interacted_slices", ())),
                float(r.get("seconds", math.nan)),
            )
            for r in data.get("rounds", [])
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFileError(f"{where}: malformed rounds in the interaction log ({exc})") from None
    events = data.get("events", [])
    ops = [e.get("op") for e in events if isinstance(e, Mapping)]
    engine = data.get("engine") or {}
    notes: list[str] = []
    want = (data.get("scan") or {}).get("sha256")
    if scan is not None and want and volume_sha256(scan) != want:
        notes.append(f"{where} was recorded on another scan (sha256 of voxels and geometry differ)")
    if mask_ml is not None and rounds and abs(rounds[-1].volume_ml - mask_ml) > 0.01:
        notes.append(
            f"the log's last round gave {rounds[-1].volume_ml:.2f} mL but the mask measures "
            f"{mask_ml:.2f} mL (edited or another mask?)"
        )
    for note in notes:
        warnings.warn(note, InputWarning, stacklevel=2)
    return InteractionSummary(
        engine=str(engine.get("name", "unknown")) if isinstance(engine, Mapping) else "unknown",
        rounds=rounds,
        n_prompts=ops.count("prompt"),
        n_undo=ops.count("undo"),
        n_redo=ops.count("redo"),
        source=source,
        notes=tuple(notes),
    )


# --- the report ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SegmentationReport:
    """The data of one report (what the HTML/PDF show), JSON-able with :meth:`as_dict`."""

    title: str
    created: str  #: ISO time the report was made
    version: str  #: ichseg version
    quantify: QuantifyReport
    scan_intensity: str
    interaction: InteractionSummary | None = None
    figures: dict[str, Path] = field(default_factory=dict)  #: filled while writing

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "created": self.created,
            "ichseg_version": self.version,
            "scan_intensity": self.scan_intensity,
            "quantify": self.quantify.as_dict(),
            "interaction": None if self.interaction is None else self.interaction.as_dict(),
        }


def build_report(
    mask: Volume,
    scan: Volume,
    *,
    log: Mapping[str, Any] | str | Path | None = None,
    label_names: Mapping[int, str] | None = None,
    weighting: Weighting = "kothari",
    title: str | None = None,
) -> SegmentationReport:
    """Measure ``mask`` on ``scan`` (same grid) and summarise ``log``; nothing is written."""
    from ichseg import __version__

    q = quantify_mask(mask, scan, label_names=label_names, weighting=weighting)
    inter = None
    if log is not None:
        inter = summarize_log(log, scan=scan, mask_ml=q.planimetric_ml)
    name = q.mask.source and Path(q.mask.source).name
    return SegmentationReport(
        title=title or f"Hemorrhage segmentation report{f' – {name}' if name else ''}",
        created=datetime.now().isoformat(timespec="seconds"),
        version=__version__,
        quantify=q,
        scan_intensity=scan.intensity.describe(),
        interaction=inter,
    )


def _rounds_figure(inter: InteractionSummary, out_png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    idx = [r.index for r in inter.rounds]
    ax.plot(idx, [r.volume_ml for r in inter.rounds], marker="o", color="#d62728")
    ax.set_xlabel("interaction round")
    ax.set_ylabel("hemorrhage volume (mL)")
    ax.set_xticks(idx)
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.bar(idx, [r.seconds for r in inter.rounds], color="#1f77b4", alpha=0.25, width=0.5)
    ax2.set_ylabel("computation (s)", color="#1f77b4")
    ax.set_zorder(ax2.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.set_title(f"{len(idx)} round(s), engine {inter.engine}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png


def render_figures(
    report: SegmentationReport, mask: Volume, scan: Volume, folder: Path, n_slices: int = 12
) -> dict[str, Path]:
    """The report's PNGs in ``folder``: ``abc2``, ``montage`` and (with a log) ``rounds``."""
    from ichseg.io.reader import align_mask_to
    from ichseg.quantify.analysis import integer_labels
    from ichseg.quantify.figures import plot_abc2
    from ichseg.visualize.montage import render_montage

    on_scan = align_mask_to(integer_labels(mask), scan)
    q = report.quantify
    figs = {
        "abc2": plot_abc2(
            on_scan,
            folder / "abc2.png",
            scan=scan,
            result=q.abc2,
            planimetric_ml=q.planimetric_ml,
        ),
        "montage": render_montage(
            scan,
            on_scan.with_array(np.clip(on_scan.array, 0, 255).astype(np.uint8)),
            folder / "montage.png",
            n_slices=n_slices,
            title=f"planimetric {q.planimetric_ml:.2f} mL",
        ),
    }
    if report.interaction is not None and report.interaction.rounds:
        figs["rounds"] = _rounds_figure(report.interaction, folder / "rounds.png")
    return figs


# --- tables shared by HTML and PDF ----------------------------------------------------------------
def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return "–" if not math.isfinite(x) else f"{x:.{digits}f}"
    return str(x)


def _tables(report: SegmentationReport) -> list[tuple[str, list[str], list[list[str]], str]]:
    """(heading, header, rows, note) of every table, in report order."""
    q, a = report.quantify, report.quantify.abc2
    scan = q.scan
    tables: list[tuple[str, list[str], list[list[str]], str]] = []
    info = [
        ["mask", q.mask.source or "(in memory)"],
        ["scan", (scan.source if scan else None) or "(in memory)"],
        ["grid", q.mask.describe() if scan is None else scan.describe()],
        ["scan intensities", report.scan_intensity],
        ["created", f"{report.created} with ichseg {report.version}"],
    ]
    tables.append(("Study", ["", ""], info, ""))
    ratio = q.abc2_ratio
    vols = [
        [
            "planimetric",
            f"{q.planimetric_ml:.2f}",
            f"{q.n_voxels} voxels x {q.mask.voxel_volume_ml * 1000:.4g} mm³",
        ],
        [
            f"ABC/2 ({a.weighting})",
            f"{a.volume_ml:.2f}",
            f"A {a.a_mm:.1f} mm x B {a.b_mm:.1f} mm x C {a.c_mm:.1f} mm / 2"
            + (f"; {ratio:.2f}x planimetric" if math.isfinite(ratio) else "")
            + (
                f"; measured on the largest component (#{q.abc2_component})"
                if q.abc2_component is not None
                else ""
            ),
        ],
        [
            "C",
            f"{a.c_mm:.1f} mm",
            f"{a.weighted_slices:g} weighted of {a.n_slices} slices x {a.slice_thickness_mm:.3g} mm",
        ],
    ]
    tables.append(
        (
            "Volumes",
            ["measure", "mL", "how"],
            vols,
            "Planimetric = voxel count x voxel volume from the scan's geometry (the reference). "
            "ABC/2 (Kothari 1996) on the largest-area axial slice; Kothari slice weights 1 / 0.5 "
            "/ 0 at >= 75 % / 25-75 % / < 25 % of that area. ABC/2 is unreliable for irregular, "
            "multilobar, IVH and SDH bleeds.",
        )
    )
    tables.append(
        (
            "Quality checks",
            ["check", "status", "finding"],
            [[c.code, _STATUS_TEXT[c.status], c.message] for c in q.qa],
            "",
        )
    )
    if q.has_subtypes:
        tables.append(
            (
                "Subtypes",
                ["label", "name", "mL", "components"],
                [
                    [str(lab.value), lab.name, f"{lab.volume_ml:.2f}", str(lab.n_components)]
                    for lab in q.labels
                ],
                f"label names: {q.label_names_source}",
            )
        )
    comp_rows = []
    for c in q.components[:25]:
        i = c.info
        comp_rows.append(
            [
                f"#{i.index}",
                f"{i.volume_ml:.3f}",
                f"{i.slices[0]}-{i.slices[-1]}" if len(i.slices) > 1 else str(i.slices[0]),
                ", ".join(f"{v:.1f}" for v in i.centroid_ras),
                _fmt(c.mean_hu, 0),
                ", ".join(
                    f"{n} {ml:.3f}" if ml < 0.1 else f"{n} {ml:.2f}" for n, ml in c.labels.items()
                ),
                "/".join(c.touches) or "–",
            ]
        )
    more = len(q.components) - len(comp_rows)
    tables.append(
        (
            "Connected components",
            ["#", "mL", "slices", "centroid RAS (mm)", "mean HU", "labels (mL)", "touches edge"],
            comp_rows,
            (f"{more} smaller component(s) not listed. " if more > 0 else "")
            + f"{[6, 18, 26][q.connectivity - 1]}-connectivity; slice indices on the scan's "
            f"axial axis ({a.slice_axis}).",
        )
    )
    inter = report.interaction
    if inter is not None:
        rows = [
            [
                str(r.index),
                f"{r.volume_ml:.2f}",
                f"{r.delta_ml:+.2f}" if math.isfinite(r.delta_ml) else "–",
                ", ".join(str(z) for z in r.interacted_slices) or "–",
                _fmt(r.seconds, 2),
            ]
            for r in inter.rounds
        ]
        note = (
            f"engine {inter.engine}; {len(inter.rounds)} round(s), {inter.n_prompts} prompt(s), "
            f"{inter.n_undo} undo, {inter.n_redo} redo; total computation "
            f"{inter.total_seconds:.2f} s. Seconds are the engine's computation per round; the "
            "log records no wall-clock time of the clinician's work."
        )
        if inter.notes:
            note += " NOTE: " + "; ".join(inter.notes)
        tables.append(
            (
                "Interaction rounds",
                ["round", "volume mL", "change mL", "prompted slices", "seconds"],
                rows,
                note,
            )
        )
    return tables


# --- HTML ----------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;
color:#111;max-width:1100px}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:left;vertical-align:top;font-size:.92em}th{background:#f2f2f2}
.big{font-size:1.35em;font-weight:600}.flagged{background:#ffe3e0}.unknown{background:#f4f4f4}
.note{color:#555;font-size:.88em;max-width:60em}img{max-width:100%;border:1px solid #ddd}
.legend span{display:inline-block;width:.9em;height:.9em;margin:0 .3em 0 1em;
vertical-align:middle}
"""


def _img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _html_table(header: list[str], rows: list[list[str]], status_col: int | None = None) -> str:
    out = ["<table>"]
    if any(header):
        out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        cls = ""
        if status_col is not None:
            inv = {v: k for k, v in _STATUS_TEXT.items()}
            cls = f' class="{inv.get(row[status_col], "")}"'
        out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def render_html(report: SegmentationReport) -> str:
    """The report as one self-contained HTML page (pictures from ``report.figures``)."""
    from ichseg.visualize.montage import LABEL_COLOURS

    q = report.quantify
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(report.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(report.title)}</h1>",
        f'<p class="big">Hemorrhage volume {q.planimetric_ml:.2f} mL (planimetric); ABC/2 '
        f"{q.abc2.volume_ml:.2f} mL</p>",
    ]
    flagged = [c for c in q.qa if c.status == "flagged"]
    if flagged:
        parts.append(
            '<p class="flagged">Check: ' + esc("; ".join(c.code for c in flagged)) + "</p>"
        )
    for heading, header, rows, note in _tables(report):
        parts.append(f"<h2>{esc(heading)}</h2>")
        parts.append(_html_table(header, rows, 1 if heading == "Quality checks" else None))
        if note:
            parts.append(f'<p class="note">{esc(note)}</p>')
        if heading == "Volumes" and "abc2" in report.figures:
            parts.append(_img_tag(report.figures["abc2"], "ABC/2 calipers and slice weights"))
        if heading == "Interaction rounds" and "rounds" in report.figures:
            parts.append(_img_tag(report.figures["rounds"], "volume per round"))
    if "montage" in report.figures:
        parts.append("<h2>Overlay montage</h2>")
        present = [lab for lab in q.labels if lab.n_voxels > 0]
        legend = "".join(
            f'<span style="background:{LABEL_COLOURS[(lab.value - 1) % len(LABEL_COLOURS)]}">'
            f"</span>{esc(lab.name)}"
            for lab in present
        )
        parts.append(
            '<p class="note legend">Axial slices, radiological convention (patient\'s right on '
            f"the image's left); outlines:{legend}</p>"
        )
        parts.append(_img_tag(report.figures["montage"], "overlay montage"))
    parts.append(
        '<p class="note">Research software: check every result before clinical use. '
        f"Generated by ichseg {esc(report.version)} on {esc(report.created)}.</p>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)


# --- PDF -----------------------------------------------------------------------------------------
_A4_LANDSCAPE = (11.69, 8.27)


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]


def _text_pages(report: SegmentationReport, lines_per_page: int = 52) -> list[list[str]]:
    q = report.quantify
    lines = [
        report.title,
        "",
        f"Hemorrhage volume {q.planimetric_ml:.2f} mL (planimetric); ABC/2 "
        f"{q.abc2.volume_ml:.2f} mL",
        "",
    ]
    for heading, header, rows, note in _tables(report):
        lines += [heading.upper()]
        widths = [
            min(60, max([len(header[n])] + [len(r[n]) for r in rows])) for n in range(len(header))
        ]
        if any(header):
            lines.append("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        for row in rows:
            if heading == "Quality checks":  # the finding is long: wrap it under the row
                lines.append(f"  {row[0].ljust(widths[0])}  {row[1]}")
                lines += [f"      {t}" for t in _wrap(row[2], 130)]
                continue
            head = [
                c if len(c) <= w else c[: w - 1] + "…"
                for c, w in zip(row[:-1], widths, strict=False)
            ]
            indent = 2 + sum(w + 2 for w in widths[:-1])
            tail = _wrap(row[-1], max(30, 150 - indent))
            lines.append(
                "  " + "".join(c.ljust(w + 2) for c, w in zip(head, widths, strict=False)) + tail[0]
            )
            lines += [" " * indent + t for t in tail[1:]]
        if note:
            lines += [f"  {t}" for t in _wrap(note, 140)]
        lines.append("")
    pages, page = [], []
    for line in lines:
        page.append(line)
        if len(page) >= lines_per_page:
            pages.append(page)
            page = []
    if page:
        pages.append(page)
    return pages


def render_pdf(report: SegmentationReport, out_path: Path) -> Path:
    """Write the report as a PDF: text pages, then one page per figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    meta = {"Title": report.title, "Creator": f"ichseg {report.version}", "Subject": "ICH volume"}
    with PdfPages(out_path, metadata=meta) as pdf:
        for n, page in enumerate(_text_pages(report)):
            fig = plt.figure(figsize=_A4_LANDSCAPE)
            fig.text(
                0.04,
                0.96,
                "\n".join(page),
                family="monospace",
                fontsize=7.5,
                va="top",
                ha="left",
                fontweight="normal",
            )
            fig.text(0.96, 0.02, f"page {n + 1}", fontsize=7, ha="right")
            pdf.savefig(fig)
            plt.close(fig)
        captions = {
            "abc2": "ABC/2: calipers on the largest-area slice, Kothari slice weights",
            "rounds": "Interaction rounds: volume and computation time per round",
            "montage": "Overlay montage (radiological convention: patient's right on the left)",
        }
        for key in ("abc2", "rounds", "montage"):
            if key not in report.figures:
                continue
            img = plt.imread(report.figures[key])
            fig = plt.figure(figsize=_A4_LANDSCAPE)
            ax = fig.add_axes((0.03, 0.05, 0.94, 0.86))
            ax.imshow(img)
            ax.set_axis_off()
            fig.text(0.03, 0.95, captions[key], fontsize=11, va="top")
            pdf.savefig(fig)
            plt.close(fig)
    return out_path


# --- writing -------------------------------------------------------------------------------------
def write_segmentation_report(
    mask: Volume,
    scan: Volume,
    out_path: str | Path,
    *,
    log: Mapping[str, Any] | str | Path | None = None,
    label_names: Mapping[int, str] | None = None,
    weighting: Weighting = "kothari",
    title: str | None = None,
    n_slices: int = 12,
    overwrite: bool = False,
) -> SegmentationReport:
    """Measure ``mask`` on ``scan`` and write the report to ``out_path`` (``.html`` or ``.pdf``,
    chosen by the suffix), atomically; returns the report's data.

    Raises :class:`InputFileError` for another suffix or an existing file without
    ``overwrite``; :class:`~ichseg.errors.GeometryError` when the mask is not on the scan's grid.
    """
    out = Path(out_path)
    suffix = out.suffix.lower()
    if suffix not in REPORT_SUFFIXES:
        raise InputFileError(f"{out}: a report must end with .html or .pdf")
    if out.exists() and not overwrite:
        raise InputFileError(f"{out}: file exists; refusing to overwrite it (pass overwrite=True)")
    if not out.parent.is_dir():
        raise InputFileError(f"{out}: folder {out.parent} does not exist")
    report = build_report(
        mask, scan, log=log, label_names=label_names, weighting=weighting, title=title
    )
    with tempfile.TemporaryDirectory(prefix=".ichseg-report-", dir=out.parent) as tmp:
        folder = Path(tmp)
        report.figures.update(render_figures(report, mask, scan, folder, n_slices))
        part = folder / f"report{suffix}"
        if suffix == ".pdf":
            render_pdf(report, part)
        else:
            part.write_text(render_html(report), encoding="utf-8")
        if out.exists() and not overwrite:
            raise InputFileError(f"{out}: file exists; refusing to overwrite it")
        os.replace(part, out)
    report.figures.clear()  # the temporary PNGs are gone; do not point at them
    return report


def report_suffixes() -> Sequence[str]:
    """File endings :func:`write_segmentation_report` writes."""
    return REPORT_SUFFIXES
