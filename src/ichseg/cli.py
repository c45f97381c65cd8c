"""The ``ichseg`` command line: thin typer commands over the Python API.

Each module in :mod:`ichseg.commands` defines ``register(app)``; they are discovered here so stages
stay independent (modules whose name starts with ``_`` are shared helpers, not commands). Heavy
imports (torch, models) happen inside the command functions.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import warnings
from typing import Annotated, TextIO

import typer

from ichseg.errors import IchsegError, IchsegWarning

app = typer.Typer(
    name="ichseg",
    help="Interactive 3D segmentation of intracerebral hemorrhage on head CT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_registered = False


def package_version() -> str:
    """The installed distribution's version (``importlib.metadata``), else ``ichseg.__version__``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ichseg")
    except PackageNotFoundError:  # running from a source tree that is not installed
        from ichseg import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"ichseg {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the ichseg version and exit.",
        ),
    ] = False,
) -> None:
    """Interactive 3D segmentation of intracerebral hemorrhage on head CT."""


def register_commands() -> typer.Typer:
    """Import every :mod:`ichseg.commands` module and let it add its commands (idempotent)."""
    global _registered
    if not _registered:
        import ichseg.commands as pkg

        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            if info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{pkg.__name__}.{info.name}")
            module.register(app)
        _registered = True
    return app


def _show_warning_one_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """ichseg's own warnings as one ``warning: ...`` line; others as Python prints them."""
    if isinstance(category, type) and issubclass(category, IchsegWarning):
        typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one-line errors and exit code 2 for :class:`IchsegError`;
    ichseg warnings are printed as one line each."""
    register_commands()
    warnings.showwarning = _show_warning_one_line
    try:
        app(args=argv, standalone_mode=True)
    except IchsegError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
