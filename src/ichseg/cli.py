"""The ``ichseg`` command line: thin typer commands over the Python API.

Each module in :mod:`ichseg.commands` defines ``register(app)``; they are discovered here so stages
stay independent. Heavy imports (torch, models) happen inside the command functions.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from ichseg.errors import IchsegError

app = typer.Typer(
    name="ichseg",
    help="Interactive 3D segmentation of intracerebral hemorrhage on head CT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_registered = False


@app.callback()
def _root() -> None:
    """Interactive 3D segmentation of intracerebral hemorrhage on head CT."""


def register_commands() -> typer.Typer:
    """Import every :mod:`ichseg.commands` module and let it add its commands (idempotent)."""
    global _registered
    if not _registered:
        import ichseg.commands as pkg

        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            module = importlib.import_module(f"{pkg.__name__}.{info.name}")
            module.register(app)
        _registered = True
    return app


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one-line errors and exit code 2 for :class:`IchsegError`."""
    register_commands()
    try:
        app(args=argv, standalone_mode=True)
    except IchsegError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
