"""Model registry and checkpoint (de)serialisation of model + config.

A builder is any callable ``builder(preset: str | None = None, **overrides) -> nn.Module``
registered under a name with :func:`register_model`. The model it returns must expose its
configuration as ``model.config`` (a dataclass or a plain dict) such that
``builder(None, **config_as_dict)`` rebuilds the same architecture; :func:`build_model` records
the registry name on the model (``model.registry_name``).

Checkpoint files written by :func:`save_model` (and read by :func:`load_model`) hold
``{"model": name, "config": dict, "state_dict": ...}``; extra keys (optimizer, epoch, ...) written
by training code are ignored.

Every checkpoint is read through :func:`safe_torch_load` (``torch.load(weights_only=True)``): a
file that would need to unpickle anything but tensors, numbers, strings, lists, tuples and dicts
(e.g. a pickled ``os.system`` call) is refused with :class:`InputFileError`, never executed.
Weights with NaN/Inf in a floating tensor are refused too (:func:`check_finite_state_dict`).
"""

from __future__ import annotations

import dataclasses
import importlib
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ichseg.errors import ConfigError, InputFileError

Builder = Callable[..., nn.Module]

_REGISTRY: dict[str, Builder] = {}

#: Modules imported lazily so that their ``@register_model`` decorators run.
_BUILTIN_MODULES: tuple[str, ...] = (
    "ichseg.models.hpinet",
    "ichseg.models.monai_nets",
    "ichseg.models.munet",
)


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` under ``name`` (re-registering the same function is a
    no-op; a different function under a taken name raises :class:`ConfigError`)."""

    def deco(builder: Builder) -> Builder:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not builder:
            same = (
                getattr(existing, "__module__", None) == builder.__module__
                and getattr(existing, "__qualname__", None) == builder.__qualname__
            )
            if not same:
                raise ConfigError(f"model name {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return deco


def _load_builtins() -> None:
    for mod in _BUILTIN_MODULES:
        importlib.import_module(mod)


def available_models() -> list[str]:
    """Sorted names of all registered models."""
    _load_builtins()
    return sorted(_REGISTRY)


def build_model(name: str, preset: str | None = None, **overrides: Any) -> nn.Module:
    """Build registered model ``name`` from ``preset`` with keyword ``overrides``."""
    _load_builtins()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    model = _REGISTRY[name](preset, **overrides)
    model.registry_name = name
    return model


def model_config_dict(model: nn.Module) -> dict[str, Any]:
    """``model.config`` as a plain dict (dataclass configs use their ``to_dict`` if present)."""
    cfg = getattr(model, "config", None)
    if cfg is None:
        raise ConfigError(f"{type(model).__name__} has no .config; cannot serialise it")
    if hasattr(cfg, "to_dict"):
        return dict(cfg.to_dict())
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return dataclasses.asdict(cfg)
    if isinstance(cfg, dict):
        return dict(cfg)
    raise ConfigError(f"unsupported config type {type(cfg).__name__}")


def model_to_state(model: nn.Module) -> dict[str, Any]:
    """``{"model": name, "config": dict, "state_dict": ...}`` for ``torch.save``."""
    name = getattr(model, "registry_name", None)
    if name is None:
        raise ConfigError(
            f"{type(model).__name__} was not built through the registry (no registry_name)"
        )
    return {
        "model": name,
        "config": model_config_dict(model),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def save_model(model: nn.Module, path: str | Path) -> Path:
    """Write :func:`model_to_state` to ``path`` (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model_to_state(model), path)
    return path


_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def _one_line(exc: BaseException) -> str:
    """First non-empty line of an exception message (or its type name)."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line:
            return line
    return type(exc).__name__


def numpy_data_globals() -> list[Any]:
    """The pickle globals that rebuild numpy scalars and arrays from their bytes (constructors
    of data, no code of the file is run), under numpy 2 and numpy 1 names."""
    import numpy as np

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    out: list[Any] = [np.ndarray, np.dtype]
    for fn in (multiarray.scalar, multiarray._reconstruct):
        out += [fn, (fn, f"numpy.core.multiarray.{fn.__name__}")]
    kinds = "bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64"
    out += [type(np.dtype(k)) for k in kinds.split()]
    return out


def safe_torch_load(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    *,
    allow_numpy: bool = False,
) -> Any:
    """``torch.load(path, weights_only=True)`` with one-line :class:`InputFileError` messages.

    A file whose pickle references any global outside PyTorch's weights-only allow-list (a
    function such as ``os.system``, a class instance, a numpy array...) is refused without
    running anything; an unreadable, empty or truncated file gets a "cannot read" message.
    ``allow_numpy`` also accepts numpy scalars and arrays (:func:`numpy_data_globals`; stock
    nnU-Net checkpoints keep them in their training log); everything else is still refused.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"checkpoint not found: {path}")
    allowed = numpy_data_globals() if allow_numpy else []
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _GLOBAL_RE.search(str(exc))
        if found:
            raise InputFileError(
                f"{path}: contains objects that are not plain tensors/numbers "
                f"(it references {found.group(1)}); refusing to unpickle"
            ) from None
        detail = str(exc).partition("WeightsUnpickler error:")[2]
        reason = _one_line(ValueError(detail)) if detail.strip() else _one_line(exc)
        raise InputFileError(
            f"cannot read checkpoint {path}: not a PyTorch weights-only checkpoint ({reason})"
        ) from None
    except EOFError:
        raise InputFileError(f"cannot read checkpoint {path}: file is empty or truncated") from None
    except OSError as exc:
        raise InputFileError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    except Exception as exc:
        raise InputFileError(
            f"cannot read checkpoint {path}: not a readable PyTorch checkpoint ({_one_line(exc)})"
        ) from None


def check_finite_state_dict(state_dict: dict[str, Any], source: str | Path) -> None:
    """Refuse weights with NaN/Inf: raise :class:`InputFileError` naming ``source`` and the first
    floating (or complex) tensor, in state-dict order, that holds a non-finite value."""
    for name, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            continue
        if not (value.is_floating_point() or value.is_complex()):
            continue
        finite = torch.isfinite(value)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise InputFileError(
                f"{source}: weights tensor {name!r} has {bad} non-finite value(s) (NaN/Inf) "
                f"of {value.numel()}; refusing to use these weights"
            )


def read_state(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict on the CPU (:func:`safe_torch_load`) and check its keys."""
    path = Path(path)
    state = safe_torch_load(path)
    if not isinstance(state, dict) or not {"model", "config", "state_dict"} <= set(state):
        raise InputFileError(
            f"{path} is not an ichseg model checkpoint (needs keys model, config, state_dict)"
        )
    if not isinstance(state["state_dict"], dict):
        raise InputFileError(f"{path}: its state_dict is not a mapping of tensors")
    return state


def model_from_state(state: dict[str, Any], source: str = "checkpoint") -> nn.Module:
    """Rebuild and load a model from a :func:`model_to_state` dict (eval mode).

    Refuses weights with NaN/Inf values (:func:`check_finite_state_dict`)."""
    check_finite_state_dict(state["state_dict"], source)
    model = build_model(str(state["model"]), None, **dict(state["config"]))
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise InputFileError(f"{source}: weights do not match the stored config: {first}") from exc
    return model.eval()


def load_model(path: str | Path) -> tuple[nn.Module, Any]:
    """Rebuild a model from a checkpoint file; returns ``(model in eval mode, model.config)``."""
    model = model_from_state(read_state(path), str(path))
    return model, model.config
