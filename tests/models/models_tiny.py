"""Tiny HPINet configurations and inputs shared by the model tests (not a test module)."""

from __future__ import annotations

import torch

from ichseg.models.hpinet import HPINet, HPINetConfig

#: A few-thousand-parameter HPINet: 48x48 slices -> 3x3 key grid, so top-k 5 < 9 positions.
TINY: dict = {
    "slice_size": 48,
    "default_depth": 7,
    "vim_base": 4,
    "vim_levels": 3,
    "vim_pools": [[1, 2, 2], [2, 2, 2]],
    "vim_dropout": 0.0,
    "sim_widths": [8, 8, 16, 16],
    "sim_aspp_channels": 8,
    "sim_aspp_rates": [1, 2, 3],
    "key_widths": [8, 8, 16],
    "value_widths": [4, 8, 8],
    "key_dim": 8,
    "value_dim": 16,
    "decoder_widths": [16, 8, 8],
    "top_k": 5,
}

#: A tiny HPINet on 32x32 slices (lite preset otherwise), as the training, interaction and
#: evaluation tests build it.
TINY32: dict = {
    "slice_size": 32,
    "vim_base": 4,
    "sim_widths": [8, 8, 16, 16],
    "sim_aspp_channels": 8,
    "key_widths": [8, 8, 16],
    "value_widths": [8, 8, 16],
    "key_dim": 8,
    "value_dim": 16,
    "decoder_widths": [16, 8, 8],
}


def tiny_model(seed: int = 0, **overrides: object) -> HPINet:
    """A tiny HPINet with deterministic initial weights."""
    torch.manual_seed(seed)
    return HPINet(HPINetConfig.preset("lite", **{**TINY, **overrides}))


def tiny_inputs(
    depth: int = 7, size: int = 48, seed: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(volume, hints, prev_mask) at slice resolution with a blob and a few hint strokes."""
    g = torch.Generator().manual_seed(seed)
    vol = torch.rand(1, 1, depth, size, size, generator=g) * 0.2
    vol[..., size // 3 : size // 2, size // 3 : size // 2] += 0.6
    hints = torch.zeros(1, 2, depth, size, size)
    hints[0, 0, depth // 2, size // 3 + 2, size // 3 : size // 2] = 1.0
    hints[0, 1, depth // 2, 5, 5:20] = 1.0
    prev = (torch.rand(1, 1, depth, size, size, generator=g) > 0.7).float()
    return vol, hints, prev
