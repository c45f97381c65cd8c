"""Which trainer trains which model.

A trainer module follows one protocol: it exposes ``Config`` (a dataclass with ``load(path)``,
``from_dict(d)``, ``to_dict()``, ``save(path)`` and at least the fields ``data, out, model, preset,
model_overrides, fold, folds, splits_file, max_steps, lr, val_every, patience, device,
num_threads, seed, init_from, cache_dir``), ``train(cfg, progress=True) -> dict`` (keys
``steps, seconds, best_val_dice, out``) and ``cross_validate(cfg, folds=None) -> list[dict]``.

* the six MONAI baselines -> :mod:`ichseg.training.automatic`;
* ``munet`` -> ``ichseg.training.munet``;
* everything else (``hpinet`` and its variants) -> :mod:`ichseg.training.trainer`, whose config
  class is :class:`ichseg.training.config.TrainConfig`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ichseg.errors import ConfigError
from ichseg.models.monai_nets import MONAI_MODELS

#: models trained by :mod:`ichseg.training.automatic` (the MONAI baselines)
AUTOMATIC_MODELS: tuple[str, ...] = MONAI_MODELS
#: model name -> trainer module (anything not listed: :data:`DEFAULT_TRAINER`)
TRAINERS: dict[str, str] = {
    **dict.fromkeys(AUTOMATIC_MODELS, "ichseg.training.automatic"),
    "munet": "ichseg.training.munet",
}
DEFAULT_TRAINER = "ichseg.training.trainer"


@dataclass(frozen=True)
class TrainerTask:
    """A trainer module with its ``Config`` class, ``train`` and ``cross_validate``."""

    module: ModuleType
    Config: Any
    train: Any
    cross_validate: Any

    @property
    def name(self) -> str:
        return self.module.__name__

    @property
    def is_hpinet(self) -> bool:
        return self.module.__name__ == DEFAULT_TRAINER


def trainer_module_name(model: str) -> str:
    """The module that trains ``model``."""
    return TRAINERS.get(model, DEFAULT_TRAINER)


def trainer_for(model: str) -> TrainerTask:
    """Import the trainer of ``model`` (:class:`ConfigError` if it is not installed)."""
    name = trainer_module_name(model)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise ConfigError(f"model {model!r}: its trainer {name} is not available") from None
        raise
    if name == DEFAULT_TRAINER:
        from ichseg.training.config import TrainConfig

        config_cls = TrainConfig
    else:
        config_cls = getattr(module, "Config", None)
    for attr, value in (("Config", config_cls), ("train", None), ("cross_validate", None)):
        if (value if attr == "Config" else getattr(module, attr, None)) is None:
            raise ConfigError(f"trainer {name} lacks {attr} (see ichseg.training.tasks)")
    return TrainerTask(module, config_cls, module.train, module.cross_validate)
