"""Session options that change results, shared by ``segment`` and ``demo``, and the one place
the CLI builds an interactive session.

Each option defaults to ``None`` = keep the product's default (method
:data:`ichseg.interaction.engine.DEFAULT_METHOD`: ICH-HPINet with the stroke refinement).
:func:`session_settings` validates the given values **without loading a model** (the engine's
and the session's config classes raise :class:`~ichseg.errors.ConfigError`), so a bad value is
reported before the scan or the weights are read; :func:`build_session` then loads the weights.

Where the options go: ``--stroke-radius-mm`` and ``--feed-previous`` are engine options
(:class:`~ichseg.interaction.hpinet_engine.HPINetEngineConfig`); ``--threshold`` is the
session's probability -> mask threshold (:class:`~ichseg.interaction.session.SessionConfig`)
and also the engine's empty-slice rule, so both agree. The defaults quoted in the help texts
are checked against those classes by the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from ichseg.interaction.session import InteractiveSession, SessionConfig

StrokeRadiusOpt = Annotated[
    float | None,
    typer.Option(
        "--stroke-radius-mm",
        help="Re-decide the prompted slices' pixels within this many mm of a stroke with a 2D "
        "random walker; 0 = the network alone. Default: 10.",
        show_default=False,
    ),
]
FeedPreviousOpt = Annotated[
    bool | None,
    typer.Option(
        "--feed-previous/--no-feed-previous",
        help="Give the networks the previous round's result (the paper's Algorithm 1). "
        "Default: --feed-previous.",
        show_default=False,
    ),
]
ThresholdOpt = Annotated[
    float | None,
    typer.Option(
        "--threshold",
        help="Probability above which a voxel is hemorrhage, in (0, 1). Default: 0.5.",
        show_default=False,
    ),
]

_FLAGS = {
    "stroke_radius_mm": "--stroke-radius-mm",
    "feed_previous": "--feed-previous/--no-feed-previous",
    "threshold": "--threshold",
}


@dataclass(frozen=True)
class SessionSettings:
    """Validated settings: the session's config and the engine's option overrides."""

    config: SessionConfig
    engine_options: dict[str, Any] = field(default_factory=dict)
    method: str = ""  #: method name (``DEFAULT_METHOD`` when empty)


def _named(exc: Exception, given: dict[str, Any]) -> Exception:
    from ichseg.errors import ConfigError

    bad = next((name for name in given if name in str(exc)), None)
    if bad is None:
        return exc
    return ConfigError(f"{_FLAGS[bad]} {given[bad]}: {exc}")


def session_settings(
    *,
    stroke_radius_mm: float | None = None,
    feed_previous: bool | None = None,
    threshold: float | None = None,
) -> SessionSettings:
    """Validate the options (no model is loaded); ``None`` keeps the default."""
    import dataclasses

    from ichseg.errors import ConfigError
    from ichseg.interaction.engine import DEFAULT_METHOD, METHODS
    from ichseg.interaction.hpinet_engine import HPINetEngineConfig
    from ichseg.interaction.session import SessionConfig

    given = {
        k: v
        for k, v in (
            ("stroke_radius_mm", stroke_radius_mm),
            ("feed_previous", feed_previous),
            ("threshold", threshold),
        )
        if v is not None
    }
    for name, value in given.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{_FLAGS[name]} must be a finite number, got {value}")
    try:
        config = dataclasses.replace(
            SessionConfig(), **({"threshold": threshold} if threshold is not None else {})
        )
        HPINetEngineConfig.from_options({**METHODS[DEFAULT_METHOD][1], **given}, DEFAULT_METHOD)
    except ConfigError as exc:
        raise _named(exc, given) from None
    return SessionSettings(config, given, DEFAULT_METHOD)


def build_session(
    settings: SessionSettings, weights: str | Path | None, *, device: str = "cpu"
) -> tuple[InteractiveSession, Path | None]:
    """The interactive session of ``settings`` with ``weights`` (default: shipped) loaded, and
    the weights file it uses."""
    from ichseg.interaction.engine import DEFAULT_METHOD, EngineFactory
    from ichseg.interaction.session import InteractiveSession

    factory = EngineFactory(
        settings.method or DEFAULT_METHOD,
        weights=None if weights is None else str(weights),
        device=device,
        **settings.engine_options,
    )
    return InteractiveSession(factory(), settings.config), factory.weights_path
