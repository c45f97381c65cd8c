"""Parameter and FLOP counting.

FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode` on the ``meta`` device: no
memory is allocated and nothing is computed, so even the paper preset at 16x512x512 is counted
in about a second. The counter sees convolutions (incl. transposed), matrix products and
attention-like ops and reports 2 FLOPs per multiply-accumulate; element-wise ops, norms, pooling
and softmax are not counted (the usual convention, also fvcore's).

Input-shape hook of the generic path: a model may define ``example_input_shape(dhw=None)``
returning the full input tensor shape (batch and channels included) it is counted at: with
``dhw=None`` its own nominal input (e.g. one training patch ``(1, 1, 128, 128, 16)`` of a MONAI
baseline, or ``(1, 1, 512, 512)`` for a 2D network), with ``dhw=(D, H, W)`` the shape for a scan
of ``D`` slices of ``H x W``. Without the hook the model is called on ``(1, in_channels, D, H, W)``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ichseg.errors import ConfigError

#: Parameter counts (millions) of the authors' published ICH-HPINet code, as we counted them by
#: reading it (module by module; the modules are named as in the ICH-HPINet paper).
PAPER_REF_PARAMS_M: dict[str, float] = {
    "vim": 141.25,
    "sim": 39.64,
    "fcm": 1.12,
    "key_encoder": 8.54 + 5.31,
    "value_encoder": 21.69,
    "decoder": 19.91,
    "total": 237.45,
}
#: GFLOPs (= 2 x GMAC) of the authors' published code at their input, as we counted them: VIM at
#: 16x256x256, 2D modules per 512x512 slice; the FCM figure includes upsampling whole 3D maps.
PAPER_REF_GFLOPS: dict[str, float] = {
    "vim": 2440.0,
    "sim": 98.0,
    "fcm": 106.0,
    "key_encoder": 44.0,
    "value_encoder": 52.0,
    "decoder": 160.0,
}
#: What the authors' README Table 1 claims for ICH-HPINet.
README_CLAIM = (
    "The authors' code README (its Table 1) claims 325.32 G FLOPs and '317.20.4M' params "
    "(malformed)"
)


@dataclass
class CostRow:
    """One line of a cost report."""

    name: str
    unit: str  #: what one FLOP count refers to ("per volume", "per slice", ...)
    params: int
    flops: float | None
    ref_params_m: float | None = None
    ref_gflops: float | None = None


@dataclass
class CostReport:
    """Per-module parameters and FLOPs of a model at a given input size."""

    model: str
    input_dhw: tuple[int, int, int]
    rows: list[CostRow]
    total: CostRow
    method: str
    notes: list[str] = field(default_factory=list)
    input_shape: tuple[int, ...] | None = None  #: full tensor shape, when not (1, C, D, H, W)


def count_parameters(module: nn.Module | None, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters; 0 for ``None``."""
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def parameters_by_child(model: nn.Module) -> dict[str, int]:
    """Parameter count of every direct child module."""
    return {name: count_parameters(child) for name, child in model.named_children()}


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of everything ``fn()`` runs (call it with meta or real tensors)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return int(counter.get_total_flops())


def parse_input_size(text: str) -> tuple[int, int, int]:
    """``"32x512x512"`` -> ``(32, 512, 512)`` (depth x height x width)."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise ConfigError(f"input size must look like DxHxW (e.g. 32x512x512), got {text!r}")
    return (dims[0], dims[1], dims[2])


def _meta_copy(model: nn.Module) -> nn.Module:
    """The same architecture on the meta device (weights are irrelevant for FLOPs)."""
    from ichseg.models.hpinet import HPINet

    if isinstance(model, HPINet):
        with torch.device("meta"):
            return HPINet(copy.deepcopy(model.config)).eval()
    if next(model.parameters(), torch.empty(0)).device.type == "meta":
        return model.eval()
    return copy.deepcopy(model).to("meta").eval()


def hpinet_cost(model: nn.Module, input_dhw: tuple[int, int, int]) -> CostReport:
    """Cost table of an :class:`~ichseg.models.hpinet.HPINet` for a ``(D, H, W)`` input at slice
    resolution (batch 1): each module per call and one full step (``forward_train`` with one
    target: VIM + SIM + two key encodings + one value encoding + FCM + memory read + decoder)."""
    from ichseg.models.hpinet import HPINet, MemoryBank

    if not isinstance(model, HPINet):
        raise ConfigError("hpinet_cost needs an HPINet")
    m = _meta_copy(model)
    assert isinstance(m, HPINet)
    cfg = m.config
    d, h, w = input_dhw
    if d < 2:
        raise ConfigError("the cost of one propagation step needs at least 2 slices")
    paper = _is_paper_sized(cfg.to_dict())
    dev = torch.device("meta")
    vol = torch.zeros(1, 1, d, h, w, device=dev)
    hints = torch.zeros(1, 2, d, h, w, device=dev)
    prev = torch.zeros(1, 1, d, h, w, device=dev)
    sl = torch.zeros(1, 1, h, w, device=dev)
    r = max(0, d // 2 - 1)
    k = r + 1
    rows: list[CostRow] = []

    def ref(key: str) -> tuple[float | None, float | None]:
        return (PAPER_REF_PARAMS_M[key], PAPER_REF_GFLOPS[key]) if paper else (None, None)

    vdh = -(-h // cfg.vim_downsample)
    vdw = -(-w // cfg.vim_downsample)
    if m.vim is not None:
        flops = count_flops(lambda: m.run_vim(vol, hints, prev))
        rows.append(
            CostRow(
                "VIM (3D residual U-Net)",
                f"per volume, {d}x{vdh}x{vdw} grid",
                count_parameters(m.vim),
                flops,
                *ref("vim"),
            )
        )
    if m.sim is not None:
        flops = count_flops(lambda: m.run_sim(sl, torch.zeros(1, 2, h, w, device=dev), sl))
        rows.append(
            CostRow("SIM (DeepLabV3)", "per slice", count_parameters(m.sim), flops, *ref("sim"))
        )
    feats = None
    if m.fcm is not None and m.vim is not None:
        with torch.no_grad():
            _, feats = m.run_vim(vol, hints, prev)
        vf = feats
        flops = count_flops(lambda: m.fcm_features(vf, k, (h, w), with_aux=True))
        rows.append(
            CostRow(
                "FCM (incl. aux heads)",
                "per target slice",
                count_parameters(m.fcm),
                flops,
                *ref("fcm"),
            )
        )
    if m.mpffm is not None:
        mp = m.mpffm
        with torch.no_grad():
            keys = m.encode_key(sl)
            value = m.encode_value(sl, sl, keys)
        flops = count_flops(lambda: m.encode_key(sl))
        rows.append(
            CostRow(
                "MPFFM key encoder (+ key/value proj.)",
                "per slice",
                count_parameters(mp.key_encoder),
                flops,
                *ref("key_encoder"),
            )
        )
        flops = count_flops(lambda: m.encode_value(sl, sl, keys))
        rows.append(
            CostRow(
                "MPFFM value encoder (+ fusion)",
                "per memory frame",
                count_parameters(mp.value_encoder),
                flops,
                *ref("value_encoder"),
            )
        )
        fcm_out = None
        if m.fuses_features and feats is not None:
            with torch.no_grad():
                fcm_out = m.fcm_features(feats, k, (h, w))
        bank = MemoryBank.from_frame(keys.key, value, r)
        flops = count_flops(lambda: m.propagate_step(bank, keys, fcm_out, (h, w)))
        rows.append(
            CostRow(
                "MPFFM memory read + decoder",
                "per target slice (T=1)",
                count_parameters(mp.decoder),
                flops,
                *ref("decoder"),
            )
        )
    total_flops = count_flops(lambda: m.forward_train(vol, hints, prev, r, [k]))
    total = CostRow(
        "Total (one step)",
        "forward_train, 1 target",
        count_parameters(m),
        total_flops,
        PAPER_REF_PARAMS_M["total"] if paper else None,
        None,
    )
    notes = [
        "FLOPs = 2 x multiply-accumulates of convolutions and matrix products (FlopCounterMode "
        "on the meta device; element-wise ops, norms and softmax not counted).",
        f"Slice resolution {h}x{w}; the VIM runs on the in-plane /{cfg.vim_downsample} grid.",
    ]
    if paper:
        notes.append(
            "Reference columns: the authors' published ICH-HPINet code as we counted it by reading "
            "it (ichseg.models.flops.PAPER_REF_PARAMS_M / PAPER_REF_GFLOPS; GFLOPs = 2 x GMAC at "
            "16x256x256 for the VIM and per 512x512 slice for the 2D modules)."
        )
        notes.append(README_CLAIM + "; neither matches the authors' code at its input sizes.")
    return CostReport("hpinet", input_dhw, rows, total, "meta device", notes)


def _is_paper_sized(cfg: dict[str, Any]) -> bool:
    from ichseg.models.hpinet import paper_config

    ref = paper_config().to_dict()
    keys = [
        "vim_base",
        "vim_levels",
        "vim_pools",
        "vim_skip",
        "sim_block",
        "sim_layers",
        "sim_widths",
        "sim_aspp_channels",
        "key_block",
        "key_layers",
        "key_widths",
        "key_dim",
        "value_dim",
        "value_widths",
        "decoder_widths",
        "fcm_channels",
    ]
    return all(cfg.get(k) == ref[k] for k in keys) and cfg.get("propagation") == "hybrid"


def generic_cost(
    model: nn.Module,
    input_dhw: tuple[int, int, int],
    name: str,
    input_shape: tuple[int, ...] | None = None,
) -> CostReport:
    """Per-child parameters and whole-model FLOPs for a model called as
    ``model(x (1, in_channels, D, H, W))`` (``in_channels`` from ``model.in_channels``, default 1),
    or on ``input_shape`` (e.g. from the model's ``example_input_shape``, see the module
    docstring). FLOPs are ``None`` (with a note) if that call fails."""
    m = _meta_copy(model)
    shown, prefix = m, ""
    while len(list(shown.children())) == 1:  # a wrapper: list the wrapped network's modules
        child_name, shown = next(iter(shown.named_children()))
        prefix += child_name + "."
    rows = [
        CostRow(prefix + child, "", n, None)
        for child, n in parameters_by_child(shown).items()
        if n > 0
    ]
    in_ch = int(getattr(m, "in_channels", 1))
    shape = tuple(input_shape) if input_shape is not None else (1, in_ch, *input_dhw)
    x = torch.zeros(*shape, device="meta")
    notes: list[str] = []
    try:
        flops: float | None = count_flops(lambda: m(x))
    except Exception as exc:
        flops = None
        notes.append(f"FLOPs not counted: forward on {tuple(x.shape)} failed ({exc}).")
    unit = "per volume" if input_shape is None else "per input " + "x".join(map(str, shape))
    total = CostRow("Total", unit, count_parameters(m), flops)
    return CostReport(name, input_dhw, rows, total, "meta device", notes, input_shape)


def model_cost(
    model: nn.Module,
    input_dhw: tuple[int, int, int] | None,
    name: str = "",
) -> CostReport:
    """:func:`hpinet_cost` for HPINet, :func:`generic_cost` otherwise. ``input_dhw=None`` asks
    a model with ``example_input_shape`` for its own input (others need a size)."""
    from ichseg.models.hpinet import HPINet

    if isinstance(model, HPINet):
        if input_dhw is None:
            raise ConfigError("the HPINet cost needs an input size")
        return hpinet_cost(model, input_dhw)
    hook = getattr(model, "example_input_shape", None)
    shape = None
    if callable(hook):
        shape = tuple(int(v) for v in (hook() if input_dhw is None else hook(tuple(input_dhw))))
    if input_dhw is None:
        if shape is None:
            raise ConfigError(f"{name or type(model).__name__}: give an input size")
        input_dhw = (1, 1, 1)  # unused: the model's own input shape is counted
    return generic_cost(model, input_dhw, name or type(model).__name__, shape)
