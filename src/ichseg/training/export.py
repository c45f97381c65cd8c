"""Export a training checkpoint as a small, inference-only weights file (+ training facts)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import torch

from ichseg.errors import InputFileError
from ichseg.models.registry import check_finite_state_dict, safe_torch_load


def training_seconds(logged: list[float]) -> float:
    """Total training time from a log's ``seconds`` column, in file order.

    Logs written before elapsed time was checkpointed restart at zero on every resume; each
    drop starts a new segment whose last value is added to the total.
    """
    total, prev = 0.0, 0.0
    for value in logged:
        if value < prev:
            total += prev
        prev = value
    return total + prev


def export_weights(
    checkpoint: str | Path, out: str | Path, *, half: bool = False
) -> dict[str, Any]:
    """Write ``{"model", "config", "state_dict", "training"}`` from a trainer checkpoint.

    ``half`` stores floating tensors as float16 (loaded back as float32 by the registry's
    ``load_state_dict``). Returns the training facts that were embedded.

    The checkpoint is read with ``weights_only=True`` (a file that would unpickle anything but
    tensors and plain values is refused, see :func:`~ichseg.models.registry.safe_torch_load`);
    weights with NaN/Inf, or that overflow float16 with ``half``, raise :class:`InputFileError`.
    """
    ckpt = Path(checkpoint)
    if not ckpt.is_file():
        raise InputFileError(f"{ckpt}: checkpoint not found")
    state = safe_torch_load(ckpt)
    if not isinstance(state, dict) or not {"model", "config", "state_dict"} <= set(state):
        raise InputFileError(f"{ckpt}: not an ichseg training checkpoint")
    sd = state["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InputFileError(f"{ckpt}: its state_dict is not a mapping of tensors")
    check_finite_state_dict(sd, ckpt)
    if half:
        sd = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
        check_finite_state_dict(sd, f"{ckpt} (as float16, values beyond +-65504 overflow)")
    facts: dict[str, Any] = {
        "source_checkpoint": ckpt.name,
        "step": state.get("step"),
        "best_val_dice": state.get("best_val"),
        "train_config": state.get("train_config"),
    }
    log = ckpt.parent / "log.csv"
    if log.exists():
        with log.open() as fh:
            rows = list(csv.DictReader(fh))
        facts["log_rows"] = len(rows)
        secs = [float(r["seconds"]) for r in rows if r.get("seconds")]
        facts["last_logged_seconds"] = secs[-1] if secs else None
        facts["training_seconds"] = training_seconds(secs) if secs else None
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"model": state["model"], "config": state["config"], "state_dict": sd, "training": facts},
        out_path,
    )
    out_path.with_suffix(".json").write_text(json.dumps(facts, indent=1, default=str))
    return facts
