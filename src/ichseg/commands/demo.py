"""``ichseg demo``: the main job on the embedded default (synthetic scan + shipped weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_cmd(
        out: Annotated[Path, typer.Option(help="Output folder")] = Path("outputs/demo"),
        seed: Annotated[int, typer.Option(help="Synthetic case seed")] = 2026,
        rounds: Annotated[int, typer.Option(help="Simulated interaction rounds")] = 3,
        weights: Annotated[Path | None, typer.Option(help="Checkpoint (default: shipped)")] = None,
    ) -> None:
        """Generate a synthetic head CT and segment its hematoma interactively (3 rounds)."""
        from ichseg.app.demo import run_demo

        run_demo(out, seed=seed, rounds=rounds, weights=weights, echo=typer.echo)
