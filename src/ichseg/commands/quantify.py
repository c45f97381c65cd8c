"""``ichseg quantify`` (one mask), ``ichseg compare`` (baseline vs follow-up) and ``ichseg report``
(HTML/PDF report of one segmentation): thin commands over :mod:`ichseg.quantify`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ichseg.commands._paths import Output, check_output_paths
from ichseg.commands._scan import AllowNonCtOpt, CorrectTiltOpt, ScanOptions, SeriesUidOpt
from ichseg.errors import ConfigError

LabelNamesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--label-names",
        help="Names of the mask's label values, VALUE=NAME, comma-separated or repeated, e.g. "
        "2=IPH,3=IVH. Default: ichseg's subtype labels (1 EDH, 2 IPH, 3 IVH, 4 SAH, 5 SDH) for "
        "multi-label masks, 'hemorrhage' for a binary one.",
    ),
]
WeightingOpt = Annotated[
    str,
    typer.Option(help="ABC/2 slice weighting: kothari (1 / 0.5 / 0 by slice area) or unweighted"),
]
InputWindowOpt = Annotated[
    str | None, typer.Option(help="Window of an already-windowed scan, 'L,W' or a preset")
]
REPORT_SUFFIXES = (".html", ".htm", ".pdf")


def _check_weighting(weighting: str) -> str:
    if weighting not in ("kothari", "unweighted"):
        raise ConfigError(f"--weighting must be kothari or unweighted, got {weighting!r}")
    return weighting


def _load_mask(path: Path, scan_path: Path | None, options: ScanOptions, option: str):
    """The scan (if given) and the mask (labels kept) on it."""
    from ichseg.io.reader import load_mask

    scan = options.load(scan_path) if scan_path is not None else None
    if scan is None and path.is_file():
        from ichseg.io.dicom_seg import is_dicom_seg

        if is_dicom_seg(path):
            raise ConfigError(
                f"{path}: a DICOM-SEG is read onto the DICOM series it refers to; pass that "
                f"series folder with {option}"
            )
    return scan, load_mask(path, scan, binarize=False)


def register(app: typer.Typer) -> None:
    @app.command("quantify")
    def quantify_cmd(
        mask: Annotated[
            Path, typer.Argument(help="Mask: NIfTI, NRRD/MHA, or DICOM-SEG (with --scan)")
        ],
        scan: Annotated[
            Path | None,
            typer.Option(
                help="The CT scan the mask lies on (mean HU for the calcification check, "
                "background of --png, the series a DICOM-SEG refers to)"
            ),
        ] = None,
        json_out: Annotated[
            bool, typer.Option("--json", help="Print one JSON document instead of text")
        ] = False,
        png: Annotated[
            Path | None,
            typer.Option(help="Write the ABC/2 figure (calipers on the largest slice) here"),
        ] = None,
        label_names: LabelNamesOpt = None,
        weighting: WeightingOpt = "kothari",
        input_window: InputWindowOpt = None,
        correct_tilt: CorrectTiltOpt = False,
        series_uid: SeriesUidOpt = None,
        allow_non_ct: AllowNonCtOpt = False,
        overwrite: Annotated[bool, typer.Option(help="Overwrite an existing --png")] = False,
        subtypes_model: Annotated[
            Path | None,
            typer.Option(
                "--subtypes-model",
                help="MUNet weights (ichseg train --model munet): label the mask's voxels with "
                "hemorrhage subtypes and report the volume per subtype (needs --scan)",
            ),
        ] = None,
    ) -> None:
        """Hemorrhage volume of a mask: planimetric mL from the true geometry, ABC/2 with its
        A, B, C calipers, volume per subtype label and per connected component, and QA checks
        (mask at the scan's edge, small dense calcification-like foci, intraventricular part).
        With --subtypes-model, also the volume per subtype that MUNet assigns to the mask."""
        from ichseg.quantify.analysis import format_quantify_text, parse_label_names, quantify_mask

        check_output_paths(
            Output("--png", png, suffixes=(".png",)),
            overwrite=overwrite,
            inputs=[("MASK", mask), ("--scan", scan)],
        )
        names = parse_label_names(label_names)
        _check_weighting(weighting)
        if subtypes_model is not None and scan is None:
            raise ConfigError("--subtypes-model needs --scan: MUNet reads the CT slices")
        subtype_net = None
        if subtypes_model is not None:
            from ichseg.models.registry import load_model

            subtype_net, _ = load_model(subtypes_model)
            if getattr(subtype_net, "registry_name", "") != "munet":
                raise ConfigError(f"--subtypes-model {subtypes_model}: not MUNet weights")
        options = ScanOptions(correct_tilt, series_uid, allow_non_ct, input_window)
        options.window()
        scan_vol, mask_vol = _load_mask(mask, scan, options, "--scan")
        subtypes = None
        if subtype_net is not None:
            from ichseg.quantify.subtypes import label_mask_subtypes

            subtypes = label_mask_subtypes(mask_vol, scan_vol, subtype_net)
        report = quantify_mask(
            mask_vol,
            scan_vol,
            label_names=names,
            weighting=weighting,  # type: ignore[arg-type]
        )
        if png is not None:
            from ichseg.quantify.figures import plot_abc2

            plot_abc2(
                mask_vol,
                png,
                scan=scan_vol,
                result=report.abc2,
                planimetric_ml=report.planimetric_ml,
                title=mask.name,
            )
        if json_out:
            doc = {**report.as_dict(), "png": None if png is None else str(png)}
            if subtypes is not None:
                doc["munet_subtypes"] = subtypes.to_dict()
            typer.echo(json.dumps(doc, indent=1, allow_nan=False))
            return
        typer.echo(format_quantify_text(report))
        if subtypes is not None:
            parts = ", ".join(f"{k} {v:.2f} mL" for k, v in subtypes.volumes_ml.items() if v > 0)
            typer.echo(f"subtypes by MUNet ({subtypes_model.name}): {parts or 'none'}")
        if png is not None:
            typer.echo(f"ABC/2 figure -> {png}")

    @app.command("compare")
    def compare_cmd(
        baseline: Annotated[Path, typer.Argument(help="Baseline mask (NIfTI, NRRD/MHA, SEG)")],
        followup: Annotated[Path, typer.Argument(help="Follow-up mask (any grid)")],
        hours: Annotated[
            float | None,
            typer.Option(help="Hours between the two scans: growth rate in mL/h"),
        ] = None,
        onset_hours: Annotated[
            float | None,
            typer.Option(help="Hours from symptom onset to the baseline scan: ultra-early growth"),
        ] = None,
        criterion: Annotated[
            str,
            typer.Option(help="Primary expansion criterion: dowlatshahi, kazui or jcm2025"),
        ] = "dowlatshahi",
        baseline_scan: Annotated[
            Path | None, typer.Option(help="DICOM series a DICOM-SEG baseline refers to")
        ] = None,
        followup_scan: Annotated[
            Path | None, typer.Option(help="DICOM series a DICOM-SEG follow-up refers to")
        ] = None,
        json_out: Annotated[
            bool, typer.Option("--json", help="Print one JSON document instead of text")
        ] = False,
    ) -> None:
        """Hematoma change between two masks, each measured in its own geometry: absolute and
        relative change, expansion under the three named criteria (> 6 mL or > 33 %;
        >= 12.5 mL or >= 1.4x; >= 12.5 mL or >= 30 %) and growth in mL/h with --hours."""
        from ichseg.quantify.analysis import compare_masks, format_compare_text
        from ichseg.quantify.volume import expansion

        try:  # the options, checked before any file is read
            expansion(0.0, 0.0, onset_hours, interval_hours=hours, criterion=criterion)
        except ConfigError as exc:
            flag = "--hours" if "interval" in str(exc) else "--onset-hours"
            if "criterion" in str(exc):
                flag = "--criterion"
            raise ConfigError(f"{flag}: {exc}") from None
        options = ScanOptions()
        _, base = _load_mask(baseline, baseline_scan, options, "--baseline-scan")
        _, follow = _load_mask(followup, followup_scan, options, "--followup-scan")
        result = compare_masks(
            base, follow, interval_hours=hours, onset_hours=onset_hours, criterion=criterion
        )
        if json_out:
            typer.echo(json.dumps(result.as_dict(), indent=1, allow_nan=False))
            return
        typer.echo(format_compare_text(result))

    @app.command("report")
    def report_cmd(
        mask: Annotated[Path, typer.Argument(help="Mask: NIfTI, NRRD/MHA, or DICOM-SEG")],
        scan: Annotated[Path | None, typer.Option(help="The CT scan the mask lies on")] = None,
        out: Annotated[
            Path | None, typer.Option(help="Report file: .html (self-contained) or .pdf")
        ] = None,
        log: Annotated[
            Path | None,
            typer.Option(help="Interaction log (.json) of the session: rounds and time"),
        ] = None,
        label_names: LabelNamesOpt = None,
        weighting: WeightingOpt = "kothari",
        title: Annotated[str | None, typer.Option(help="Report title")] = None,
        input_window: InputWindowOpt = None,
        correct_tilt: CorrectTiltOpt = False,
        series_uid: SeriesUidOpt = None,
        allow_non_ct: AllowNonCtOpt = False,
        overwrite: Annotated[bool, typer.Option(help="Overwrite an existing report")] = False,
    ) -> None:
        """Report of one segmentation (HTML or PDF): volumes (planimetric, ABC/2), calipers,
        QA checks, subtype table, components, overlay montage and, with --log, the rounds."""
        from ichseg.quantify.analysis import parse_label_names
        from ichseg.quantify.report import write_segmentation_report

        if out is None:
            raise ConfigError("report needs --out report.html or --out report.pdf")
        if scan is None:
            raise ConfigError("report needs --scan SCAN: the montage and calipers are drawn on it")
        check_output_paths(
            Output("--out", out, suffixes=REPORT_SUFFIXES),
            overwrite=overwrite,
            inputs=[("MASK", mask), ("--scan", scan), ("--log", log)],
        )
        names = parse_label_names(label_names)
        _check_weighting(weighting)
        if log is not None:
            from ichseg.interaction.session import read_log

            read_log(log)  # a malformed log is reported before the scan is read
        options = ScanOptions(correct_tilt, series_uid, allow_non_ct, input_window)
        options.window()
        scan_vol, mask_vol = _load_mask(mask, scan, options, "--scan")
        report = write_segmentation_report(
            mask_vol,
            scan_vol,
            out,
            log=log,
            label_names=names,
            weighting=weighting,  # type: ignore[arg-type]
            title=title,
            overwrite=overwrite,
        )
        q = report.quantify
        flags = f"; check: {', '.join(q.flags)}" if q.flags else ""
        typer.echo(
            f"hemorrhage {q.planimetric_ml:.2f} mL (ABC/2 {q.abc2.volume_ml:.2f} mL){flags} "
            f"-> {out}"
        )
