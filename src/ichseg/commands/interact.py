"""``ichseg segment`` (prompts from a file) and ``ichseg replay`` (an interaction log)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ichseg.errors import PromptError


def _load_scan(path: Path, input_window: str | None):
    from ichseg.io.reader import load_volume
    from ichseg.preprocess.windowing import parse_window

    return load_volume(path, input_window=parse_window(input_window) if input_window else None)


def _print_round(r) -> None:
    typer.echo(
        f"round {r.index}: {r.volume_ml:8.2f} mL (change {r.delta_ml:+.2f} mL), "
        f"prompted slices {r.interacted_slices}, {r.seconds:.2f} s"
    )


def register(app: typer.Typer) -> None:
    @app.command("segment")
    def segment_cmd(
        scan: Annotated[Path, typer.Argument(help="CT scan: NIfTI, NRRD/MHA or DICOM folder")],
        prompts: Annotated[Path, typer.Option(help="PromptSet JSON (canonical voxel indices)")],
        out: Annotated[Path, typer.Option(help="Output mask (.nii.gz/.nrrd/.mha)")],
        weights: Annotated[Path | None, typer.Option(help="Checkpoint (default: shipped)")] = None,
        input_window: Annotated[
            str | None, typer.Option(help="Window of already-windowed input, 'L,W' or preset")
        ] = None,
        prob_out: Annotated[Path | None, typer.Option(help="Also write probabilities")] = None,
        log_out: Annotated[Path | None, typer.Option(help="Write the interaction log")] = None,
        overwrite: Annotated[bool, typer.Option(help="Overwrite existing outputs")] = False,
    ) -> None:
        """Segment a scan non-interactively: one engine round per round in the prompt file."""
        from ichseg.interaction.prompts import PromptSet
        from ichseg.interaction.session import InteractiveSession
        from ichseg.io.reader import save_mask, save_volume
        from ichseg.models.pretrained import load_weights

        volume = _load_scan(scan, input_window)
        prompt_set = PromptSet.load(prompts)
        model, wpath = load_weights(weights)
        session = InteractiveSession(model, weights_path=wpath)
        session.set_volume(volume)
        if prompt_set.grid is not None and tuple(prompt_set.grid.shape_zyx) != tuple(
            session.grid_ref.shape_zyx
        ):
            raise PromptError(
                f"prompts refer to a grid of shape {tuple(prompt_set.grid.shape_zyx)} but the "
                f"scan's canonical grid is {tuple(session.grid_ref.shape_zyx)}"
            )
        if not prompt_set.rounds:
            raise PromptError(f"{prompts}: the prompt file has no rounds")
        for rnd in prompt_set.rounds:
            session.add_prompts(rnd.prompts)
            _print_round(session.run_round())
        save_mask(session.mask(), out, overwrite=overwrite)
        if prob_out:
            save_volume(session.probability(), prob_out, overwrite=overwrite)
        if log_out:
            session.save_log(log_out)
        typer.echo(f"hematoma volume {session.volume_ml:.2f} mL -> {out}")

    @app.command("replay")
    def replay_cmd(
        log: Annotated[Path, typer.Argument(help="Interaction log JSON")],
        out: Annotated[Path, typer.Option(help="Output mask")],
        scan: Annotated[Path | None, typer.Option(help="Scan (default: path in the log)")] = None,
        weights: Annotated[
            Path | None, typer.Option(help="Checkpoint (default: the log's)")
        ] = None,
        input_window: Annotated[str | None, typer.Option(help="Window of windowed input")] = None,
        overwrite: Annotated[bool, typer.Option(help="Overwrite an existing mask")] = False,
    ) -> None:
        """Replay an interaction log and write the mask it produces (checks logged volumes)."""
        from ichseg.interaction.session import (
            InteractiveSession,
            read_log,
            replay_events,
            session_config_from_log,
        )
        from ichseg.io.reader import save_mask
        from ichseg.models.pretrained import load_weights

        data = read_log(log)
        meta = next(e["meta"] for e in data["events"] if e["op"] == "set_volume")
        scan_path = scan or (Path(meta["source"]) if meta.get("source") else None)
        if scan_path is None:
            raise PromptError("the log does not name its scan; pass --scan")
        wpath = weights or (
            Path(data["model"]["weights"]) if data["model"].get("weights") else None
        )
        model, wpath = load_weights(wpath)
        session = InteractiveSession(
            model, session_config_from_log(data["session_config"]), weights_path=wpath
        )
        replay_events(session, data, _load_scan(scan_path, input_window))
        logged = [r["volume_ml"] for r in data.get("rounds", [])]
        for n, r in enumerate(session.results()):
            _print_round(r)
            if n < len(logged) and abs(logged[n] - r.volume_ml) > 1e-3:
                typer.secho(
                    f"  warning: logged volume was {logged[n]:.3f} mL", fg=typer.colors.YELLOW
                )
        save_mask(session.mask(), out, overwrite=overwrite)
        typer.echo(f"hematoma volume {session.volume_ml:.2f} mL -> {out}")
