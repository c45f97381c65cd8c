"""``ichseg version`` (also ``ichseg --version``)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("version")
    def version() -> None:
        """Print the ichseg version (of the installed distribution)."""
        from ichseg.cli import package_version

        typer.echo(package_version())
