"""``ichseg demo``: the main job on the embedded default (synthetic scan + shipped weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ichseg.commands._paths import Output, check_output_paths
from ichseg.commands._session import FeedPreviousOpt, StrokeRadiusOpt, ThresholdOpt


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_cmd(
        out: Annotated[
            Path, typer.Option(help="Output folder (its demo_* files are replaced on each run)")
        ] = Path("outputs/demo"),
        seed: Annotated[int, typer.Option(help="Synthetic case seed")] = 2026,
        rounds: Annotated[int, typer.Option(help="Simulated interaction rounds")] = 3,
        weights: Annotated[Path | None, typer.Option(help="Checkpoint (default: shipped)")] = None,
        stroke_radius_mm: StrokeRadiusOpt = None,
        feed_previous: FeedPreviousOpt = None,
        threshold: ThresholdOpt = None,
    ) -> None:
        """Generate a synthetic head CT and segment its hematoma interactively (3 rounds)."""
        from ichseg.app.demo import run_demo
        from ichseg.commands._session import session_settings
        from ichseg.errors import ConfigError

        if rounds < 1:
            raise ConfigError(f"--rounds must be >= 1, got {rounds}")
        check_output_paths(Output("--out", out, kind="folder"))
        settings = session_settings(
            stroke_radius_mm=stroke_radius_mm, feed_previous=feed_previous, threshold=threshold
        )
        run_demo(
            out,
            seed=seed,
            rounds=rounds,
            weights=weights,
            session_config=settings.config,
            engine_options=settings.engine_options,
            echo=typer.echo,
        )
