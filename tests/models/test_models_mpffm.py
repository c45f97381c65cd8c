"""SIM, FCM and MPFFM: shapes, affinity (softmax, top-k), memory read, one-hot positions."""

from __future__ import annotations

import math

import pytest
import torch

from ichseg.errors import ConfigError, DimensionalityError, PromptError
from ichseg.models.fcm import FCM
from ichseg.models.mpffm import MPFFM, KeyFeatures, compute_affinity
from ichseg.models.sim import SIM, ASPPPooling
from ichseg.models.vim import VIMFeatures

torch.set_num_threads(1)


def small_mpffm(**kw: object) -> MPFFM:
    torch.manual_seed(0)
    args = dict(
        key_block="basic",
        key_layers=(1, 1, 1),
        key_widths=(8, 8, 16),
        value_layers=(1, 1, 1),
        value_widths=(4, 8, 8),
        key_dim=8,
        value_dim=16,
        decoder_widths=(16, 8, 8),
        top_k=5,
    )
    args.update(kw)
    return MPFFM(**args)  # type: ignore[arg-type]


def test_affinity_columns_sum_to_one_and_match_formula() -> None:
    torch.manual_seed(0)
    mk, qk = torch.randn(2, 8, 30), torch.randn(2, 8, 12)
    aff = compute_affinity(mk, qk, top_k=None)
    assert aff.shape == (2, 30, 12)
    torch.testing.assert_close(aff.sum(1), torch.ones(2, 12))
    assert (aff > 0).all()
    # softmax over memory of -||m - q||^2 / sqrt(d)
    dist = ((mk[:, :, :, None] - qk[:, :, None, :]) ** 2).sum(1)
    torch.testing.assert_close(aff, torch.softmax(-dist / math.sqrt(8), dim=1))


def test_affinity_top_k_keeps_exactly_k_per_query() -> None:
    torch.manual_seed(1)
    mk, qk = torch.randn(1, 8, 40), torch.randn(1, 8, 9)
    aff = compute_affinity(mk, qk, top_k=7)
    assert ((aff > 0).sum(1) == 7).all()
    torch.testing.assert_close(aff.sum(1), torch.ones(1, 9))
    full = compute_affinity(mk, qk, top_k=None)
    # the kept entries are the 7 largest of the full affinity
    assert torch.equal(aff > 0, full >= full.topk(7, dim=1).values[:, -1:, :])
    # top_k >= number of memory positions is the plain softmax
    torch.testing.assert_close(compute_affinity(mk, qk, top_k=40), full)
    with pytest.raises(ConfigError):
        compute_affinity(mk, qk, top_k=0)
    with pytest.raises(DimensionalityError):
        compute_affinity(mk, torch.randn(1, 4, 9))


def test_key_and_value_encoders_shapes_and_indexing() -> None:
    m = small_mpffm()
    keys = m.encode_key(torch.rand(3, 1, 64, 48))
    assert keys.key.shape == (3, 8, 4, 3)
    assert keys.query_value.shape == (3, 16, 4, 3)
    assert keys.f16.shape == (3, 16, 4, 3)
    assert keys.f8.shape == (3, 8, 8, 6)
    assert keys.f4.shape == (3, 8, 16, 12)
    assert len(keys) == 3 and len(keys.index(1)) == 1 and len(keys.index([0, 2])) == 2
    torch.testing.assert_close(keys.index([2]).f4, keys.f4[2:3])
    assert len(KeyFeatures.cat([keys, keys.index(0)])) == 4
    value = m.encode_value(torch.rand(3, 1, 64, 48), torch.rand(3, 1, 64, 48), keys)
    assert value.shape == (3, 16, 4, 3)
    with pytest.raises(DimensionalityError):
        m.encode_key(torch.rand(3, 2, 64, 48))
    with pytest.raises(DimensionalityError):
        m.encode_value(torch.rand(3, 1, 64, 48), torch.rand(3, 1, 32, 48), keys)


def test_read_memory_multi_frame_and_broadcast() -> None:
    m = small_mpffm()
    torch.manual_seed(2)
    mem_k, mem_v = torch.randn(1, 3, 8, 4, 3), torch.randn(1, 3, 16, 4, 3)
    q = torch.randn(2, 8, 4, 3)
    out = m.read_memory(mem_k, mem_v, q)  # memory batch 1 broadcast to 2 queries
    assert out.shape == (2, 16, 4, 3)
    one = m.read_memory(mem_k, mem_v, q[1:])
    torch.testing.assert_close(out[1:], one)
    # readout is a convex combination of memory values (per channel within min/max)
    flat = mem_v.permute(0, 2, 1, 3, 4).reshape(16, -1)
    assert (out.reshape(2, 16, -1) <= flat.max(1).values[None, :, None] + 1e-5).all()
    with pytest.raises(DimensionalityError):
        m.read_memory(mem_k, torch.randn(1, 3, 16, 2, 3), q)
    with pytest.raises(DimensionalityError):
        m.read_memory(torch.randn(3, 3, 8, 4, 3), torch.randn(3, 3, 16, 4, 3), q)


def test_read_memory_without_affinity_is_frame_mean_and_ignores_keys() -> None:
    m = small_mpffm(use_affinity=False)
    mem_v = torch.randn(2, 2, 16, 4, 3)
    a = m.read_memory(torch.randn(2, 2, 8, 4, 3), mem_v, torch.randn(2, 8, 4, 3))
    b = m.read_memory(torch.randn(2, 2, 8, 4, 3), mem_v, torch.randn(2, 8, 4, 3))
    torch.testing.assert_close(a, mem_v.mean(1))
    torch.testing.assert_close(a, b)


def test_decoder_with_and_without_fused_features() -> None:
    m = small_mpffm(fused_channels=6)
    keys = m.encode_key(torch.rand(2, 1, 64, 64))
    readout = torch.randn(2, 16, 4, 4)
    fused = [torch.randn(2, 2, 16, 16), torch.randn(2, 4, 16, 16)]
    assert m.decode(readout, keys, fused, (64, 64)).shape == (2, 1, 64, 64)
    with pytest.raises(ConfigError, match="fused"):
        m.decode(readout, keys, None, (64, 64))
    plain = small_mpffm()
    keys = plain.encode_key(torch.rand(1, 1, 64, 64))
    assert plain.decode(readout[:1], keys, None, (64, 64)).shape == (1, 1, 64, 64)


def test_sim_shapes_and_real_global_pooling() -> None:
    torch.manual_seed(0)
    sim = SIM(4, block="basic", layers=(1, 1, 1, 1), widths=(4, 8, 8, 16), aspp_channels=8)
    assert sim(torch.rand(2, 4, 48, 40)).shape == (2, 1, 48, 40)
    with pytest.raises(DimensionalityError):
        sim(torch.rand(2, 3, 48, 40))
    pool = ASPPPooling(6, 4)
    y = pool(torch.rand(1, 6, 5, 7))
    assert y.shape == (1, 4, 5, 7)
    assert torch.equal(y, y[:, :, :1, :1].expand_as(y))  # one value per channel: global pooling


def make_feats(depth: int = 7) -> VIMFeatures:
    torch.manual_seed(3)
    return VIMFeatures(
        d1=torch.randn(1, 4, depth, 16, 16),
        d2=torch.randn(1, 8, depth, 8, 8),
        d3=torch.randn(1, 16, -(-depth // 2), 4, 4),
        depth_strides=(1, 1, 2),
        plane_strides=(1, 2, 4),
        depth=depth,
    )


def test_fcm_shapes_positions_and_batching() -> None:
    torch.manual_seed(0)
    fcm = FCM((4, 8, 16), (4, 8, 16), (1, 1, 2))
    assert fcm.adapters[2][0].in_channels == 16 + 2  # one-hot sub-slice position appended
    assert fcm.adapters[0][0].in_channels == 4  # finest level adapted too, no position map
    feats = make_feats()
    out = fcm(feats, 4, [(8, 8)] * 3, slice_size=(32, 32))
    assert [f.shape for f in out.features] == [(1, 4, 8, 8), (1, 8, 8, 8), (1, 16, 8, 8)]
    assert [a.shape for a in out.aux_logits] == [(1, 1, 32, 32), (1, 1, 32, 32)]
    assert out.channels == 28
    # slices 4 and 5 share d3 index 2 but differ in the position map
    a3_4 = fcm.select(feats, 4)[2]
    a3_5 = fcm.select(feats, 5)[2]
    assert not torch.allclose(a3_4, a3_5)
    # batched targets are k-major and equal the single calls
    many = fcm.select(feats, [1, 4, 6])
    for i, k in enumerate([1, 4, 6]):
        for lvl in range(3):
            torch.testing.assert_close(many[lvl][i : i + 1], fcm.select(feats, k)[lvl])
    assert fcm(feats, [1, 2], [(8, 8)] * 3).aux_logits == []


def test_fcm_rejects_bad_index_and_mismatched_strides() -> None:
    fcm = FCM((4, 8, 16), (4, 8, 16), (1, 1, 2))
    feats = make_feats()
    with pytest.raises(PromptError):
        fcm.select(feats, 7)
    with pytest.raises(PromptError):
        fcm.select(feats, [])
    other = FCM((4, 8, 16), (4, 8, 16), (1, 2, 4))
    with pytest.raises(ConfigError, match="depth strides"):
        other.select(feats, 1)
