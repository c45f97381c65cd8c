"""``ichseg segment`` (prompts from a file) and ``ichseg replay`` (an interaction log)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ichseg.commands._paths import Output, check_output_paths, volume_suffixes
from ichseg.commands._scan import AllowNonCtOpt, CorrectTiltOpt, ScanOptions, SeriesUidOpt
from ichseg.commands._session import FeedPreviousOpt, StrokeRadiusOpt, ThresholdOpt
from ichseg.errors import PromptError

PROMPTS_HELP = (
    "Prompt file (JSON): clicks and scribbles per round in canonical (z, y, x) voxel indices, "
    'e.g. {"rounds": [{"prompts": [{"type": "scribble", "z": 14, "points": [[250, 300], '
    '[262, 318]], "positive": true}]}]}. Format, examples and JSON Schema: docs/prompts.md.'
)


def _print_round(r) -> None:
    typer.echo(
        f"round {r.index}: {r.volume_ml:8.2f} mL (change {r.delta_ml:+.2f} mL), "
        f"prompted slices {r.interacted_slices}, {r.seconds:.2f} s"
    )
    if r.note:
        typer.echo(f"  note: {r.note}")


def _check_prompts_fit(prompt_set, prompts: Path, volume) -> None:
    """The prompt file against the scan's canonical grid (before any weights are loaded)."""
    from ichseg.interaction.prompts import GridRef, validate
    from ichseg.io.volume import to_canonical

    grid = GridRef.from_volume(to_canonical(volume)[0])
    if prompt_set.grid is not None and tuple(prompt_set.grid.shape_zyx) != grid.shape_zyx:
        raise PromptError(
            f"{prompts}: the prompts refer to a grid of shape {tuple(prompt_set.grid.shape_zyx)} "
            f"but the scan's canonical grid is {grid.shape_zyx}"
        )
    for n, rnd in enumerate(prompt_set.rounds):
        for m, prompt in enumerate(rnd.prompts):
            try:
                validate(prompt, grid)
            except PromptError as exc:
                raise PromptError(
                    f"{prompts}: rounds[{n}].prompts[{m}]: {exc} (canonical (Z, Y, X) grid of "
                    f"the scan: {grid.shape_zyx})"
                ) from None


def register(app: typer.Typer) -> None:
    @app.command("segment", epilog="Prompt file format: docs/prompts.md")
    def segment_cmd(
        scan: Annotated[Path, typer.Argument(help="CT scan: NIfTI, NRRD/MHA or DICOM folder")],
        prompts: Annotated[Path, typer.Option(help=PROMPTS_HELP)],
        out: Annotated[
            Path,
            typer.Option(
                help="Output mask (.nii.gz/.nrrd/.mha), or .dcm/.seg.dcm for a DICOM-SEG (needs "
                "a DICOM scan folder; the SEG refers to its slices)"
            ),
        ],
        weights: Annotated[Path | None, typer.Option(help="Checkpoint (default: shipped)")] = None,
        input_window: Annotated[
            str | None, typer.Option(help="Window of already-windowed input, 'L,W' or preset")
        ] = None,
        correct_tilt: CorrectTiltOpt = False,
        series_uid: SeriesUidOpt = None,
        allow_non_ct: AllowNonCtOpt = False,
        stroke_radius_mm: StrokeRadiusOpt = None,
        feed_previous: FeedPreviousOpt = None,
        threshold: ThresholdOpt = None,
        prob_out: Annotated[Path | None, typer.Option(help="Also write probabilities")] = None,
        log_out: Annotated[
            Path | None,
            typer.Option(
                help="Interaction log (.json), saved after every round "
                "(default: next to --out as NAME.log.json)"
            ),
        ] = None,
        no_log: Annotated[
            bool, typer.Option("--no-log", help="Do not write the interaction log")
        ] = False,
        report: Annotated[
            Path | None, typer.Option(help="Also write a report of the result (.html or .pdf)")
        ] = None,
        initial_mask: Annotated[
            Path | None,
            typer.Option(
                help="Start from this mask (e.g. from `ichseg predict`) as round 0; the prompt "
                "file's rounds correct it (NIfTI/NRRD/MHA or DICOM-SEG of the scan)"
            ),
        ] = None,
        overwrite: Annotated[bool, typer.Option(help="Overwrite existing outputs")] = False,
    ) -> None:
        """Segment a scan non-interactively: one engine round per round in the prompt file.

        The interaction log is saved atomically after every round (``--log-out``, by default
        ``NAME.log.json`` next to the mask), so a killed run loses no finished round and
        ``ichseg replay`` reproduces the mask.

        Checks run before anything heavy, in this order: output paths, the prompt file, the
        options, the scan (and the prompts against its grid); only then are the weights loaded.
        """
        from ichseg.commands._session import build_session, session_settings
        from ichseg.interaction.prompts import PromptSet
        from ichseg.io.reader import save_mask, save_volume

        if log_out is None and not no_log:
            log_out = default_log_path(out)
        elif no_log:
            log_out = None
        check_output_paths(
            Output("--out", out, suffixes=(*volume_suffixes(), ".dcm")),
            Output("--prob-out", prob_out, suffixes=volume_suffixes()),
            Output("--log-out", log_out, suffixes=(".json",)),
            Output("--report", report, suffixes=(".html", ".htm", ".pdf")),
            overwrite=overwrite,
            inputs=[
                ("SCAN", scan),
                ("--prompts", prompts),
                ("--weights", weights),
                ("--initial-mask", initial_mask),
            ],
        )
        prompt_set = PromptSet.load(prompts)
        if not prompt_set.rounds:
            raise PromptError(f"{prompts}: the prompt file has no rounds (docs/prompts.md)")
        empty = [n for n, rnd in enumerate(prompt_set.rounds) if not rnd.prompts]
        if empty:
            raise PromptError(
                f"{prompts}: rounds[{empty[0]}] has no prompts; every round needs at least one "
                "click or scribble (docs/prompts.md)"
            )
        settings = session_settings(
            stroke_radius_mm=stroke_radius_mm, feed_previous=feed_previous, threshold=threshold
        )
        options = ScanOptions(correct_tilt, series_uid, allow_non_ct, input_window)
        options.window()  # a bad --input-window is reported before reading anything
        volume = options.load(scan)
        seg_out = out.name.lower().endswith(".dcm")
        if seg_out:  # DICOM-SEG: the scan must be the DICOM series it will refer to
            from ichseg.io.dicom_seg import require_dicom_source

            require_dicom_source(volume, "SCAN")
        _check_prompts_fit(prompt_set, prompts, volume)
        start = None
        if initial_mask is not None:
            from ichseg.io.reader import load_mask

            start = load_mask(initial_mask, reference=volume)
        session, _ = build_session(settings, weights)
        session.autosave = log_out
        session.set_volume(volume)
        if start is not None:
            _print_round(session.start_from_mask(start, str(initial_mask)))
        for rnd in prompt_set.rounds:
            session.add_prompts(rnd.prompts)
            _print_round(session.run_round())
        if seg_out:
            from ichseg.io.dicom_seg import write_dicom_seg

            write_dicom_seg(session.mask(), volume, out, overwrite=overwrite)
        else:
            save_mask(session.mask(), out, overwrite=overwrite)
        if prob_out:
            save_volume(session.probability(), prob_out, overwrite=overwrite)
        if report:
            from ichseg.quantify.report import write_segmentation_report

            write_segmentation_report(
                session.mask(), volume, report, log=session.log(), overwrite=overwrite
            )
        typer.echo(f"hematoma volume {session.volume_ml:.2f} mL -> {out}")
        if log_out:
            typer.echo(f"interaction log -> {log_out}")

    @app.command("replay")
    def replay_cmd(
        log: Annotated[Path, typer.Argument(help="Interaction log JSON")],
        out: Annotated[Path, typer.Option(help="Output mask")],
        scan: Annotated[Path | None, typer.Option(help="Scan (default: path in the log)")] = None,
        weights: Annotated[
            Path | None, typer.Option(help="Checkpoint (default: the log's)")
        ] = None,
        input_window: Annotated[str | None, typer.Option(help="Window of windowed input")] = None,
        correct_tilt: CorrectTiltOpt = False,
        series_uid: SeriesUidOpt = None,
        allow_non_ct: AllowNonCtOpt = False,
        force: Annotated[
            bool,
            typer.Option(
                help="Replay although the scan or the weights differ from the log's (sha256)"
            ),
        ] = False,
        overwrite: Annotated[bool, typer.Option(help="Overwrite an existing mask")] = False,
    ) -> None:
        """Replay an interaction log exactly: the same engine and options, the same scan and
        weights (both checked by sha256), every prompt, round, undo and redo."""
        check_output_paths(
            Output("--out", out, suffixes=volume_suffixes()),
            overwrite=overwrite,
            inputs=[("LOG", log), ("--scan", scan), ("--weights", weights)],
        )
        scan_options = ScanOptions(correct_tilt, series_uid, allow_non_ct, input_window)
        scan_options.window()
        from ichseg.interaction.engine import engine_from_log
        from ichseg.interaction.session import (
            InteractiveSession,
            file_sha256,
            read_log,
            replay_events,
            session_config_from_log,
            volume_sha256,
        )
        from ichseg.io.reader import save_mask

        data = read_log(log)
        scan_path = scan or _logged_scan(data, log)
        check_output_paths(  # the scan the log names must not be replaced either
            Output("--out", out), overwrite=overwrite, inputs=[("the log's scan", scan_path)]
        )
        volume = scan_options.load(scan_path)
        differs = []
        want_scan = (data.get("scan") or {}).get("sha256")
        if want_scan and volume_sha256(volume) != want_scan:
            differs.append(f"the scan {scan_path} (voxels or geometry)")
        model_info = data["engine"].get("model") or {}
        want_w = model_info.get("weights_sha256")
        wpath = weights or _logged_weights(model_info, log)
        if want_w and wpath is not None and wpath.exists() and file_sha256(wpath) != want_w:
            differs.append(f"the weights {wpath}")
        if differs:
            what = " and ".join(differs)
            if not force:
                raise PromptError(
                    f"{what} differ from those the log was made with (sha256); the replay would "
                    "not reproduce it; pass --force to replay anyway"
                )
            typer.secho(f"warning: --force: replaying although {what} differ", err=True)
        engine = engine_from_log(data["engine"], weights=str(wpath) if wpath else None)
        session = InteractiveSession(engine, session_config_from_log(data))
        replay_events(session, data, volume)
        logged = [r["volume_ml"] for r in data.get("rounds", [])]
        for n, r in enumerate(session.results()):
            _print_round(r)
            if n < len(logged) and abs(logged[n] - r.volume_ml) > 1e-3:
                typer.secho(
                    f"  warning: logged volume was {logged[n]:.3f} mL", fg=typer.colors.YELLOW
                )
        save_mask(session.mask(), out, overwrite=overwrite)
        typer.echo(f"hematoma volume {session.volume_ml:.2f} mL -> {out}")


def default_log_path(out: Path) -> Path:
    """``mask.nii.gz`` -> ``mask.log.json`` in the same folder."""
    name = out.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".seg.dcm", ".dcm"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return out.with_name(f"{name}.log.json")


def _logged_scan(data: dict, log: Path) -> Path:
    """The scan a log names: its path relative to the log if that exists, else as given."""
    info = data.get("scan") or {}
    rel = info.get("source_relative_to_log")
    if rel and (log.parent / rel).exists():
        return log.parent / rel
    if info.get("source"):
        return Path(info["source"])
    raise PromptError("the log does not name its scan; pass --scan")


def _logged_weights(model_info: dict, log: Path) -> Path | None:
    """The weights a log names (relative paths resolved against the log's folder too)."""
    given = model_info.get("weights")
    if not given:
        return None
    p = Path(given)
    if not p.is_absolute() and not p.exists() and (log.parent / p).exists():
        return log.parent / p
    return p
