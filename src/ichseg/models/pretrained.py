"""Weights shipped inside the package (see ``ichseg/weights/MODEL_CARD.md``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from torch import nn

from ichseg.errors import ConfigError, InputFileError

DEFAULT_WEIGHTS = "hpinet_lite.pt"


def default_weights_path() -> Path:
    """Path of the shipped ``lite`` ICH-HPINet weights (raises if this build has none)."""
    path = Path(str(resources.files("ichseg") / "weights" / DEFAULT_WEIGHTS))
    if not path.exists():
        raise ConfigError(
            f"no shipped weights found at {path}; pass --weights PATH to a checkpoint "
            "(e.g. runs/.../best.pt from `ichseg train`)"
        )
    return path


def load_weights(path: str | Path | None = None) -> tuple[nn.Module, Path]:
    """Load a model checkpoint (default: the shipped weights) in eval mode on the CPU."""
    from ichseg.models.registry import load_model

    p = Path(path) if path else default_weights_path()
    if not p.exists():
        raise InputFileError(f"{p}: weights file not found")
    model, _ = load_model(p)
    return model.eval(), p
