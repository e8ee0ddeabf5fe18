"""Shard-local attention with LSE and the merge, against plain softmax attention over all keys."""
import pytest
import torch

from helix_core.attention import merge_partials, partial_attention


def dense_reference(q, k, v, scale, q_pos, k_pos, kv_of_q):
    scores = torch.einsum("thd,shd->hts", q.double(), k[:, kv_of_q].double()) * scale
    scores = scores.masked_fill(k_pos[None, None, :] > q_pos[None, :, None], float("-inf"))
    return torch.einsum("hts,shd->thd", scores.softmax(-1), v[:, kv_of_q].double())


@pytest.mark.parametrize("shards,key_block", [(1, 2048), (3, 5), (4, 1)])
def test_sharded_blocked_attention_equals_dense_softmax(shards, key_block):
    gen = torch.Generator().manual_seed(0)
    tokens, keys, hq, hkv, dk, dv = 6, 37, 4, 2, 8, 5
    q = torch.randn(tokens, hq, dk, generator=gen)
    k = torch.randn(keys, hkv, dk, generator=gen)
    v = torch.randn(keys, hkv, dv, generator=gen)
    q_pos = torch.arange(keys - tokens, keys)  # the last 6 positions query causally
    k_pos = torch.randperm(keys, generator=gen)  # shards hold arbitrary positions
    kv_of_q = torch.tensor([0, 0, 1, 1])
    outs, lses = [], []
    for shard in torch.arange(keys).chunk(shards):
        out, lse = partial_attention(q, k[shard], v[shard], 0.3, q_pos, k_pos[shard], kv_of_q, key_block=key_block)
        outs.append(out)
        lses.append(lse)
    merged = merge_partials(torch.stack(outs), torch.stack(lses))
    ref = dense_reference(q, k, v, 0.3, q_pos, k_pos, kv_of_q)
    assert torch.allclose(merged.double(), ref, atol=1e-5)


def test_a_shard_with_no_visible_key_contributes_nothing():
    q = torch.randn(1, 2, 4)
    k, v = torch.randn(3, 1, 4), torch.randn(3, 1, 4)
    kv_of_q = torch.tensor([0, 0])
    empty_out, empty_lse = partial_attention(q, k[:0], v[:0], 1.0, torch.tensor([5]), torch.tensor([], dtype=torch.long), kv_of_q)
    future_out, future_lse = partial_attention(q, k, v, 1.0, torch.tensor([0]), torch.tensor([7, 8, 9]), kv_of_q)
    assert torch.isinf(empty_lse).all() and torch.isinf(future_lse).all()
    real_out, real_lse = partial_attention(q, k, v, 1.0, torch.tensor([5]), torch.tensor([1, 2, 3]), kv_of_q)
    merged = merge_partials(torch.stack([empty_out, real_out, future_out]), torch.stack([empty_lse, real_lse, future_lse]))
    assert torch.allclose(merged, real_out) and not torch.isnan(merged).any()


def test_score_reduction_over_dimension_slices_is_exact():
    """Splitting the head dim in m slices and summing the partial scores before the softmax."""
    gen = torch.Generator().manual_seed(1)
    q, k, v = torch.randn(3, 2, 8, generator=gen), torch.randn(9, 2, 8, generator=gen), torch.randn(9, 2, 8, generator=gen)
    pos_q, pos_k, kv_of_q = torch.tensor([6, 7, 8]), torch.arange(9), torch.tensor([0, 1])
    full, _ = partial_attention(q, k, v, 0.5, pos_q, pos_k, kv_of_q)
    slices = [slice(0, 4), slice(4, 8)]

    def reducer_for(mine):
        def reduce(scores):
            other = [s for s in slices if s != mine][0]
            qf = q[:, :, other].float().transpose(0, 1)
            kf = k[:, :, other].float()[:, kv_of_q].transpose(0, 1)
            return scores + qf @ kf.transpose(1, 2)  # stands in for the all-reduce of the peer's scores
        return reduce

    outs = [partial_attention(q[:, :, s], k[:, :, s], v[:, :, s], 0.5, pos_q, pos_k, kv_of_q, reducer_for(s))[0]
            for s in slices]
    assert torch.allclose(torch.cat(outs, dim=-1), full, atol=1e-6)
