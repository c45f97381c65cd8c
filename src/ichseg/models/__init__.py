"""Networks: ICH-HPINet (VIM, SIM, FCM, MPFFM) and the model registry.

``build_model("hpinet", preset="lite")`` builds a registered model; ``load_model(path)`` rebuilds
one from a checkpoint written by ``save_model``.
"""

from ichseg.models.hpinet import HPINet, HPINetConfig, MemoryBank
from ichseg.models.registry import (
    available_models,
    build_model,
    load_model,
    model_to_state,
    register_model,
    save_model,
)

__all__ = [
    "HPINet",
    "HPINetConfig",
    "MemoryBank",
    "available_models",
    "build_model",
    "load_model",
    "model_to_state",
    "register_model",
    "save_model",
]
