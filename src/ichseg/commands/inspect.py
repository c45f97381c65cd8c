"""``ichseg inspect DIR``: a per-case table of geometry, intensities and hemorrhage statistics."""

from __future__ import annotations

import json
import statistics
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from ichseg.commands._paths import Output, check_output_paths
from ichseg.commands._scan import AllowNonCtOpt, CorrectTiltOpt, ScanOptions, SeriesUidOpt

PROGRESS_MIN_CASES = 5


def inspect_case(
    case: Any, input_window: Any = None, scan_options: ScanOptions | None = None
) -> dict[str, Any]:
    """Statistics of one :class:`~ichseg.data.dataset.Case` (loads its image and masks);
    ``scan_options`` are the shared scan-loading options (tilt, series, non-CT)."""
    import numpy as np
    from scipy import ndimage

    from ichseg.data.subtypes import Subtype
    from ichseg.errors import IchsegWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = (scan_options or ScanOptions()).load_case(case, input_window)
    notes: list[str] = []
    for w in caught:  # ichseg's own warnings go into the row; anything else is passed on
        if issubclass(w.category, IchsegWarning):
            notes.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    arr = np.asarray(image.array)
    finite = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr.ravel()
    intensity = image.intensity
    row: dict[str, Any] = {
        "case_id": case.case_id,
        "patient_id": case.patient_id,
        "image": str(case.image_path),
        "mask": None if case.mask_path is None else str(case.mask_path),
        "shape": list(image.shape),
        "spacing_mm": [round(s, 4) for s in image.spacing],
        "orientation": "".join(image.axcodes),
        "intensity": {
            "kind": str(intensity.kind),
            "window": None
            if intensity.window is None
            else [intensity.window.level, intensity.window.width],
            "min": float(finite.min()) if finite.size else None,
            "max": float(finite.max()) if finite.size else None,
            "p1": float(np.percentile(finite, 1)) if finite.size else None,
            "p99": float(np.percentile(finite, 99)) if finite.size else None,
            # what the values were found to mean, e.g. "raw HU, skull-stripped (no air/bone)" or
            # "windowed 0..255 from L40/W80, window assumed brain 40/80"
            "detected": intensity.describe(),
            "source": image.meta.get("intensity_source"),
        },
        "warnings": notes,
        "split": case.meta.get("split"),
    }
    subtypes: set[Subtype] = set(case.subtypes)
    mask = case.load_mask(reference=image)
    if mask is not None:
        fg = np.asarray(mask.array) > 0
        n = int(fg.sum())
        _, n_comp = ndimage.label(fg, structure=np.ones((3, 3, 3), dtype=bool))
        slices = case.hemorrhage_slices(mask)
        row.update(
            lesion_voxels=n,
            lesion_ml=round(n * image.voxel_volume_ml, 3),
            components=int(n_comp),
            slices_source="mask",
        )
    else:
        slices = case.hemorrhage_slices(None)
        row.update(
            lesion_voxels=None,
            lesion_ml=None,
            components=None,
            slices_source=None if slices is None else "csv",
        )
    row["hemorrhage_slices"] = slices
    row["n_hemorrhage_slices"] = None if slices is None else len(slices)
    sub_mask = case.load_subtype_mask(reference=image)
    if sub_mask is not None:
        subtypes |= {Subtype(int(v)) for v in np.unique(sub_mask.array) if v > 0}
    row["subtypes"] = sorted(s.name for s in subtypes)
    return row


def _fmt_slices(slices: list[int] | None) -> str:
    if slices is None:
        return "-"
    if not slices:
        return "0"
    return f"{len(slices)} ({slices[0]}-{slices[-1]})"


def _fmt_num(v: float | None, fmt: str = "{:g}") -> str:
    return "-" if v is None else fmt.format(v)


def _summary(rows: list[dict[str, Any]], excluded: int, min_slices: int) -> dict[str, Any]:
    ok = [r for r in rows if "error" not in r]
    vols = [r["lesion_ml"] for r in ok if r.get("lesion_ml") is not None]
    out: dict[str, Any] = {
        "cases": len(rows),
        "errors": len(rows) - len(ok),
        "with_mask": len(vols),
        "with_hemorrhage": sum(1 for r in ok if r.get("n_hemorrhage_slices")),
        "total_lesion_ml": round(float(sum(vols)), 3) if vols else None,
        "mean_lesion_ml": round(float(sum(vols) / len(vols)), 3) if vols else None,
        "median_lesion_ml": round(float(statistics.median(vols)), 3) if vols else None,
    }
    if min_slices > 0:
        out["min_slices"] = min_slices
        out["excluded_by_min_slices"] = excluded
    return out


def register(app: typer.Typer) -> None:
    @app.command("inspect")
    def inspect(
        path: Annotated[Path, typer.Argument(help="Dataset folder or CSV manifest.")],
        min_slices: Annotated[
            int,
            typer.Option(
                "--min-slices",
                min=0,
                help="Keep only cases with at least N hemorrhage slices on the whole scan.",
            ),
        ] = 0,
        json_out: Annotated[
            Path | None, typer.Option("--json", help="Also write the table as JSON here.")
        ] = None,
        input_window: Annotated[
            str | None,
            typer.Option(
                "--input-window",
                help="Images are already windowed with this HU window ('40,80' or a preset).",
            ),
        ] = None,
        correct_tilt: CorrectTiltOpt = False,
        series_uid: SeriesUidOpt = None,
        allow_non_ct: AllowNonCtOpt = False,
        overwrite: Annotated[
            bool, typer.Option("--overwrite", help="Replace an existing --json file.")
        ] = False,
    ) -> None:
        """Show shape, spacing, orientation, intensities, lesion mL, slices and subtypes per case."""
        from rich.console import Console
        from rich.progress import Progress
        from rich.table import Table

        from ichseg.data.dataset import open_dataset
        from ichseg.errors import IchsegError
        from ichseg.preprocess.windowing import parse_window

        window = parse_window(input_window) if input_window else None
        check_output_paths(
            Output("--json", json_out, suffixes=(".json",)),
            overwrite=overwrite,
            inputs=[("PATH", path)],
        )
        scan_options = ScanOptions(correct_tilt, series_uid, allow_non_ct, input_window)
        ds = open_dataset(path, input_window=window)
        # a wide table when the output is not a terminal (files, pipes, tests)
        console = Console() if sys.stdout.isatty() else Console(width=160)
        rows: list[dict[str, Any]] = []
        with Progress(
            console=console, transient=True, disable=len(ds) < PROGRESS_MIN_CASES
        ) as progress:
            task = progress.add_task("inspecting", total=len(ds))
            for case in ds:
                try:
                    rows.append(inspect_case(case, window, scan_options))
                except IchsegError as exc:
                    rows.append({"case_id": case.case_id, "error": str(exc)})
                progress.advance(task)

        excluded = 0
        if min_slices > 0:
            kept = [
                r for r in rows if "error" in r or (r["n_hemorrhage_slices"] or 0) >= min_slices
            ]
            excluded = len(rows) - len(kept)
            rows = kept

        table = Table(title=f"{ds.name} ({ds.layout}, {len(rows)} cases)")
        for col, justify in [
            ("case", "left"),
            ("shape", "right"),
            ("spacing mm", "right"),
            ("orient", "center"),
            ("intensity", "left"),
            ("min/max", "right"),
            ("p1/p99", "right"),
            ("lesion mL", "right"),
            ("hem. slices", "right"),
            ("comp.", "right"),
            ("subtypes", "left"),
        ]:
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        for r in rows:
            if "error" in r:
                table.add_row(r["case_id"], f"[red]error: {r['error']}[/red]", *[""] * 9)
                continue
            it = r["intensity"]
            kind = it.get("detected") or it["kind"]
            table.add_row(
                r["case_id"],
                "x".join(str(s) for s in r["shape"]),
                "x".join(f"{s:.3g}" for s in r["spacing_mm"]),
                r["orientation"],
                kind,
                f"{_fmt_num(it['min'])}/{_fmt_num(it['max'])}",
                f"{_fmt_num(it['p1'], '{:.4g}')}/{_fmt_num(it['p99'], '{:.4g}')}",
                _fmt_num(r["lesion_ml"], "{:.2f}"),
                _fmt_slices(r["hemorrhage_slices"]),
                _fmt_num(r["components"], "{:d}"),
                ",".join(r["subtypes"]) or "-",
            )
        console.print(table)
        for r in rows:
            for note in r.get("warnings", []):
                console.print(f"warning: case {r['case_id']}: {note}", soft_wrap=True)
        summary = _summary(rows, excluded, min_slices)
        line = (
            f"{summary['cases']} case(s), {summary['with_mask']} with masks, "
            f"{summary['with_hemorrhage']} with hemorrhage"
        )
        if summary["mean_lesion_ml"] is not None:
            line += (
                f"; lesion volume mean {summary['mean_lesion_ml']:.2f} mL, "
                f"median {summary['median_lesion_ml']:.2f} mL"
            )
        if min_slices > 0:
            line += f"; {excluded} case(s) with fewer than {min_slices} hemorrhage slices excluded"
        console.print(line, soft_wrap=True)
        if json_out is not None:
            payload = {
                "dataset": ds.name,
                "layout": ds.layout,
                "root": str(ds.root),
                "summary": summary,
                "cases": rows,
            }
            json_out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
            console.print(f"wrote {json_out}", soft_wrap=True)
        if summary["errors"]:
            first = next(r for r in rows if "error" in r)
            raise IchsegError(
                f"{summary['errors']} case(s) could not be inspected; first: case "
                f"{first['case_id']}: {first['error']}"
            )
