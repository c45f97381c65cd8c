"""VIM: shapes, depth padding for any depth, feature strides, dropout in train vs eval."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ichseg.errors import ConfigError, DimensionalityError
from ichseg.models.vim import VIM

torch.set_num_threads(1)

ANISO = [(1, 2, 2), (2, 2, 2), (2, 2, 2)]


@pytest.mark.parametrize("depth", [7, 13, 16])
def test_vim_shapes_for_any_depth(depth: int) -> None:
    vim = VIM(4, 4, 4, ANISO).eval()
    assert vim.depth_multiple == 4 and vim.plane_multiple == 8
    x = torch.rand(1, 4, depth, 30, 22)  # not multiples of 8 in-plane either
    with torch.no_grad():
        logits, feats = vim(x)
    assert logits.shape == (1, 1, depth, 30, 22)
    assert feats.depth == depth
    assert feats.depth_strides == (1, 1, 2) and feats.plane_strides == (1, 2, 4)
    assert feats.d1.shape == (1, 4, depth, 30, 22)
    assert feats.d2.shape == (1, 8, depth, 15, 11)
    assert feats.d3.shape == (1, 16, -(-depth // 2), 8, 6)
    # every slice k has its level index k // s inside the cropped features
    assert (depth - 1) // feats.depth_strides[2] < feats.d3.shape[2]


def test_vim_internal_padding_equals_explicit_zero_padding_then_crop() -> None:
    torch.manual_seed(0)
    vim = VIM(4, 4, 4, ANISO).eval()
    x = torch.rand(1, 4, 7, 20, 20)
    with torch.no_grad():
        logits, feats = vim(x)
        ref_logits, ref_feats = vim(F.pad(x, (0, 4, 0, 4, 0, 1)))  # 8 x 24 x 24
    torch.testing.assert_close(logits, ref_logits[:, :, :7, :20, :20])
    torch.testing.assert_close(feats.d3, ref_feats.d3[:, :, :4, :5, :5])
    assert ref_feats.d3.shape[2] == 4  # 8 padded slices / depth stride 2


def test_vim_isotropic_paper_layout_and_three_levels() -> None:
    vim = VIM(4, 2, 5)  # paper layout at base 2: 5 levels, isotropic pooling
    assert vim.channels == [2, 4, 8, 16, 32]
    assert vim.depth_multiple == 16
    logits, feats = vim(torch.rand(1, 4, 5, 16, 16))
    assert logits.shape == (1, 1, 5, 16, 16)
    assert feats.d3.shape == (1, 8, 2, 4, 4)
    three = VIM(4, 2, 3, [(1, 2, 2), (2, 2, 2)])
    _, f3 = three(torch.rand(1, 4, 6, 16, 16))
    assert f3.d3.shape == (1, 8, 3, 4, 4)  # the bottleneck is d3 with 3 levels


def test_vim_concat_skip_mode() -> None:
    vim = VIM(4, 4, 3, [(1, 2, 2), (2, 2, 2)], skip="concat")
    logits, _ = vim(torch.rand(1, 4, 4, 16, 16))
    assert logits.shape == (1, 1, 4, 16, 16)
    assert vim.decoders[0].conv1[0].in_channels == 2 * 8


def test_vim_dropout_active_in_train_off_in_eval() -> None:
    torch.manual_seed(0)
    vim = VIM(4, 4, 3, [(1, 2, 2), (2, 2, 2)], dropout=0.5)
    x = torch.rand(1, 4, 4, 16, 16)
    vim.train()
    with torch.no_grad():
        a, _ = vim(x)
        b, _ = vim(x)
    assert not torch.equal(a, b)
    vim.eval()
    with torch.no_grad():
        c, fc = vim(x)
        d, fd = vim(x)
    assert torch.equal(c, d) and torch.equal(fc.d1, fd.d1)


def test_vim_rejects_bad_input_and_config() -> None:
    vim = VIM(4, 4, 3, [(1, 2, 2), (2, 2, 2)])
    with pytest.raises(DimensionalityError):
        vim(torch.rand(1, 3, 4, 16, 16))
    with pytest.raises(DimensionalityError):
        vim(torch.rand(4, 16, 16))
    with pytest.raises(ConfigError):
        VIM(4, 4, 2)
    with pytest.raises(ConfigError):
        VIM(4, 4, 3, [(1, 2, 2)])
    with pytest.raises(ConfigError):
        VIM(4, 4, 3, [(1, 3, 3), (2, 2, 2)])
    with pytest.raises(ConfigError):
        VIM(4, 4, 3, skip="add")
