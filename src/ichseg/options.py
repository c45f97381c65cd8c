"""Typed configuration dataclasses from plain option mappings (CLI specs, YAML, logs)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

from ichseg.errors import ConfigError

T = TypeVar("T")


def config_from_options(cls: type[T], options: Mapping[str, Any], what: str) -> T:
    """``cls(**options)``, with unknown options and bad values as one :class:`ConfigError`
    naming ``what`` (never a ``TypeError``)."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(
            f"{what}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}"
        )
    try:
        return cls(**dict(options))
    except TypeError as exc:
        raise ConfigError(f"{what}: {exc}") from None
