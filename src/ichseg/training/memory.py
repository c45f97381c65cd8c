"""Peak tensor memory of one ICH-HPINet training step, without the hardware.

:func:`estimate_training_memory` runs a full training step (forward, composite loss, backward,
Adam update) of a model preset, by default on *fake* tensors (``FakeTensorMode``: shapes and
dtypes are propagated, nothing is computed or allocated), and tracks every tensor the step keeps
alive with PyTorch's ``MemTracker``, split into parameters, gradients, optimizer state, activations
and temporaries. The peak is what ``torch.cuda.max_memory_allocated`` would report for the same
step, up to:

* mixed precision is CPU autocast (bfloat16), whose cast lists differ slightly from CUDA's float16
  autocast (both store 2-byte activations);
* cuDNN workspaces and the caching allocator's fragmentation are not tensors; plan for the
  device's *reserved* memory to exceed the estimate by some 10-30 %.

With ``fake=False`` the same step really runs on CPU; the tests check that both agree.

Fake tensors skip the arithmetic but not the work of dispatching and tracking every operator:
the ``paper`` preset at 16x512x512 takes minutes on a laptop-class CPU (about 6.5 minutes on
the 2 shared cores of the build machine). ``progress`` receives one message per stage so
callers can show that it is running.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ichseg.errors import ConfigError
from ichseg.training.losses import hpinet_loss

__all__ = ["MemoryEstimate", "estimate_training_memory"]


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak tensor memory (GiB) of one training step, by category."""

    preset: str
    input_zyx: tuple[int, int, int]
    targets: int
    amp: bool
    checkpointing: bool
    fake: bool
    parameters_gib: float
    gradients_gib: float
    optimizer_gib: float
    activations_gib: float
    temporaries_gib: float
    peak_gib: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _categories(snapshot: dict) -> dict[str, float]:
    if len(snapshot) != 1:
        raise RuntimeError(f"expected tensors on one device, found {list(snapshot)}")
    (per_kind,) = snapshot.values()
    out: dict[str, float] = {}
    for kind, nbytes in per_kind.items():
        name = getattr(kind, "value", kind)
        out[str(name)] = nbytes / 2**30
    return out


def estimate_training_memory(
    preset: str = "paper",
    *,
    amp: bool = True,
    checkpointing: bool = True,
    depth: int | None = None,
    slice_size: int | None = None,
    targets: int = 2,
    fake: bool = True,
    overrides: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> MemoryEstimate:
    """Peak memory of one HPINet training step of ``preset`` at its nominal input size.

    ``depth``/``slice_size`` replace the preset's nominal ``default_depth``/``slice_size``;
    ``targets`` propagated slices per step (the trainer's default is 2). Two steps run and the
    peak covers the second, when the Adam state exists as in a real run. ``progress`` is called
    with a short message at each stage (model built, forward/backward/update of each step).
    """

    def say(message: str) -> None:
        if progress is not None:
            progress(message)

    try:
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.distributed._tools.mem_tracker import MemTracker
    except ImportError as exc:  # pragma: no cover - depends on the torch build
        raise RuntimeError(f"this torch build lacks the memory tracker: {exc}") from exc

    from ichseg.models.registry import build_model

    if targets < 1:
        raise ConfigError(f"targets must be >= 1, got {targets}")
    mode = FakeTensorMode(allow_non_fake_inputs=True) if fake else contextlib.nullcontext()
    mkldnn = torch.backends.mkldnn.enabled
    t0 = time.perf_counter()
    try:
        # oneDNN kernels need real storage; the native CPU kernels are equivalent in memory
        torch.backends.mkldnn.enabled = not fake
        with mode:
            say(f"building the {preset} model{' on fake tensors' if fake else ''}")
            model = build_model("hpinet", preset, **(overrides or {}))
            model.set_checkpointing(checkpointing)
            model.train()
            d = int(depth or model.config.default_depth)
            s = int(slice_size or model.config.slice_size)
            if d < targets + 1:
                raise ConfigError(f"depth {d} is too small for {targets} target slices")
            r = d // 2
            ks = sorted((k for k in range(d) if k != r), key=lambda k: abs(k - r))[:targets]
            volume = torch.rand(1, 1, d, s, s)
            hints = torch.zeros(1, 2, d, s, s)
            hints[:, 0, r, s // 2 - 2 : s // 2 + 2, s // 2 - 2 : s // 2 + 2] = 1
            prev = torch.zeros(1, 1, d, s, s)
            gt = torch.zeros(1, 1, d, s, s)
            gt[:, :, max(r - 2, 0) : r + 3, s // 4 : s // 2, s // 4 : s // 2] = 1
            opt = torch.optim.Adam(model.parameters(), lr=1e-5, weight_decay=1e-7)
            tracker = MemTracker()
            tracker.track_external(model, opt)
            with tracker:
                for step in (1, 2):
                    say(f"step {step}/2: forward at {d}x{s}x{s}")
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                        out = model(volume, hints, prev, r, ks)
                    loss = hpinet_loss(out, gt, r, ks).total
                    say(f"step {step}/2: backward")
                    loss.backward()
                    say(f"step {step}/2: optimizer update")
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    del out, loss
                    tracker.reset_mod_stats()  # per-module stats only; the peak is kept
            peak = _categories(tracker.get_tracker_snapshot("peak"))
    finally:
        torch.backends.mkldnn.enabled = mkldnn
    return MemoryEstimate(
        preset=preset,
        input_zyx=(d, s, s),
        targets=len(ks),
        amp=amp,
        checkpointing=checkpointing,
        fake=fake,
        parameters_gib=peak.get("Parameter", 0.0) + peak.get("Buffer", 0.0),
        gradients_gib=peak.get("Gradient", 0.0),
        optimizer_gib=peak.get("Optstate", 0.0),
        activations_gib=peak.get("Activation", 0.0),
        temporaries_gib=peak.get("Temp", 0.0) + peak.get("Other", 0.0),
        peak_gib=peak["Total"],
        seconds=time.perf_counter() - t0,
    )
