"""Paged decode attention over head-dimension slices (the headslice plan's Triton kernels) against
an independent dense fp64 reference.

The test holds all m slices of every head: each slice's call runs the kernels on its dims, and
its `reduce_scores` stands in for the all-reduce over the slice group, adding the other slices'
partial scores. The reference unpages keys and values by walking the block table and computes
softmax(scale * q.k) . v over whole heads in fp64; slice r's output must be its value dims.
Without CUDA the kernels run in Triton's CPU interpreter (see triton_interpreter.py).
"""
from __future__ import annotations

import pytest
import torch
from triton_interpreter import kernel_test_module

# module fixtures and the fresh-process rerun, collected by pytest under these names
(DEVICE, NEEDS_FRESH_PROCESS, _interpreter_while_these_tests_run, _needs_interpreter,
 test_rerun_in_fresh_interpreter) = kernel_test_module(__file__, "the sliced decode kernels")

from helix_core.fast_decode import paged_attention, paged_attention_torch  # noqa: E402
from helix_core.kernels.decode_launch import DecodeConfig  # noqa: E402
from helix_core.kernels.head_groups import HeadGroups  # noqa: E402
from helix_core.kernels.sliced_decode import paged_sliced_attention  # noqa: E402


TOL = {  # (out atol, out rtol, lse atol)
    torch.float32: (3e-5, 1e-5, 3e-5),
    torch.float16: (2e-3, 2e-3, 2e-3),
    torch.bfloat16: (1e-2, 1e-2, 1e-2),
}


class Problem:
    """Whole heads in a shuffled page pool, and the m dimension slices a slice group would hold."""

    def __init__(self, lengths, hq, hkv, head_dim, value_dim, page_size, slices, dtype, seed=0, spare_pages=3):
        gen = torch.Generator().manual_seed(seed)
        counts = [-(-n // page_size) for n in lengths]
        pool = sum(counts) + spare_pages
        self.keys = torch.randn(pool, page_size, hkv, head_dim, generator=gen).to(dtype)
        self.values = torch.randn(pool, page_size, hkv, value_dim, generator=gen).to(dtype)
        self.q = torch.randn(len(lengths), hq, head_dim, generator=gen).to(dtype)
        order = torch.randperm(pool, generator=gen)
        # unused entries point at a page no row owns (the engine's scratch page)
        self.table = torch.full((len(lengths), max(1, max(counts))), int(order[-1]), dtype=torch.int32)
        used = 0
        for row, count in enumerate(counts):
            self.table[row, :count] = order[used:used + count].to(torch.int32)
            used += count
        self.lengths = torch.tensor(lengths, dtype=torch.int32)
        self.page_size = page_size
        self.kv_head_of_q = torch.arange(hq) // (hq // hkv)
        self.scale = head_dim ** -0.5 * 1.3
        self.key_dims = _even_pieces(head_dim, slices)
        self.value_dims = _even_pieces(value_dim, slices)

    def slice_inputs(self, r):
        """(q, key pages, value pages) of slice r, contiguous on the kernels' device."""
        kd, vd = self.key_dims[r], self.value_dims[r]
        return (self.q[..., kd].contiguous().to(DEVICE), self.keys[..., kd].contiguous().to(DEVICE),
                self.values[..., vd].contiguous().to(DEVICE))

    def reference(self):
        """fp64 (out [B, Hq, Dv], lse [B, Hq]) over whole heads; out 0 and lse -inf for empty rows."""
        batch, hq, _ = self.q.shape
        out = torch.zeros(batch, hq, self.values.shape[-1], dtype=torch.float64)
        lse = torch.full((batch, hq), float("-inf"), dtype=torch.float64)
        for b in range(batch):
            n = int(self.lengths[b])
            if n == 0:
                continue
            positions = torch.arange(n)
            pages = self.table[b].long()[positions // self.page_size]
            k = self.keys[pages, positions % self.page_size].double()[:, self.kv_head_of_q]  # [n, Hq, D]
            v = self.values[pages, positions % self.page_size].double()[:, self.kv_head_of_q]
            scores = torch.einsum("hd,nhd->hn", self.q[b].double(), k) * self.scale
            lse[b] = torch.logsumexp(scores, dim=-1)
            out[b] = torch.einsum("hn,nhd->hd", torch.softmax(scores, dim=-1), v)
        return out, lse


def _even_pieces(dim, parts):
    bounds = [dim * i // parts for i in range(parts + 1)]
    return [slice(lo, hi) for lo, hi in zip(bounds, bounds[1:])]


def run_slices(prob, config=None, max_length=None, table=None):
    """Every slice's kernels, their scores summed as the all-reduce would: a first pass records each
    slice's partial scores, a second gives every slice the sum. -> [(out, lse)] per slice."""
    slices = len(prob.key_dims)
    groups = HeadGroups(prob.kv_head_of_q.tolist())
    table = (prob.table if table is None else table).to(DEVICE)
    partials = [None] * slices

    def call(r, reduce):
        q, keys, values = prob.slice_inputs(r)
        return paged_sliced_attention(q, keys, values, table, prob.lengths.to(DEVICE), prob.scale, groups,
                                      reduce, max_length=max_length, config=config)

    def record(r):
        def reduce(scores):
            partials[r] = scores.clone()
            return scores
        return reduce

    def all_reduce(r):
        def reduce(scores):
            for other in range(slices):
                if other != r:
                    scores += partials[other]
            return scores
        return reduce

    if slices == 1:
        return [call(0, None)]
    for r in range(slices):
        call(r, record(r))
    return [call(r, all_reduce(r)) for r in range(slices)]


def check(prob, results, dtype):
    ref_out, ref_lse = prob.reference()
    atol, rtol, lse_atol = TOL[dtype]
    empty = prob.lengths == 0
    for r, (out, lse) in enumerate(results):
        out, lse = out.cpu(), lse.cpu()
        assert out.dtype == torch.float32 and lse.dtype == torch.float32
        assert torch.isneginf(lse[empty]).all() and (out[empty] == 0).all()
        assert torch.isfinite(out).all() and torch.isfinite(lse[~empty]).all()
        torch.testing.assert_close(out.double(), ref_out[..., prob.value_dims[r]], atol=atol, rtol=rtol)
        torch.testing.assert_close(lse[~empty].double(), ref_lse[~empty], atol=lse_atol, rtol=1e-5)


# (lengths, Hq, Hkv, head dim, value dim, page size, slices, splits): GQA group 4 and MHA, a padding
# row (length 0), lengths not multiples of the page size, one / several / more splits than tiles,
# page sizes below, above and not dividing the 16-key tile, slice widths that are not powers of two
CASES = [
    pytest.param([13, 0, 37], 8, 2, 32, 32, 4, 2, 3, id="gqa4-m2-3splits-padding-row"),
    pytest.param([21, 6], 4, 4, 32, 32, 3, 2, 2, id="mha-m2-page3"),
    pytest.param([40, 1], 8, 2, 48, 24, 32, 4, 1, id="gqa4-m4-page32-onesplit"),
    pytest.param([9, 0, 30], 4, 1, 40, 40, 5, 2, 9, id="mqa-m2-dim20-empty-splits"),
    pytest.param([26], 8, 2, 32, 32, 8, 1, 2, id="gqa4-one-slice-no-reduce"),
]


@pytest.mark.parametrize("ahead", [False, True], ids=["in-tile", "pages-ahead"])
@pytest.mark.parametrize("lengths,hq,hkv,head_dim,value_dim,page_size,slices,splits", CASES)
def test_fp32_slices_match_dense_reference(lengths, hq, hkv, head_dim, value_dim, page_size, slices, splits, ahead):
    """Both kernels, with each tile's block-table entries read in its iteration or one iteration ahead."""
    prob = Problem(lengths, hq, hkv, head_dim, value_dim, page_size, slices, torch.float32)
    check(prob, run_slices(prob, DecodeConfig(num_splits=splits, block_n=16, pages_ahead=ahead)), torch.float32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision(dtype):
    prob = Problem([35, 0, 11], 8, 2, 32, 32, 4, 2, dtype, seed=1)
    check(prob, run_slices(prob, DecodeConfig(num_splits=3, block_n=16)), dtype)


def test_default_launch_config_mha16_shape():
    """The benchmark's MHA shape scaled down: 16 heads (16 head blocks of one), two slices of a 64-dim
    head, bf16, the default tiles and split count."""
    prob = Problem([70, 0, 3], 16, 16, 64, 64, 16, 2, torch.bfloat16, seed=2)
    check(prob, run_slices(prob), torch.bfloat16)


def test_static_bound_cuts_the_table_and_sets_the_score_width():
    """The engine's table spans the whole pool; max_length (the graph's length hint) keeps only
    ceil(max_length / page) pages, and that is the width of the scores the slice group sums."""
    prob = Problem([10, 0, 17], 4, 2, 32, 32, 4, 2, torch.float32, seed=3, spare_pages=12)
    pool = prob.keys.shape[0]
    wide = torch.cat([prob.table, prob.table[:, :1].expand(-1, pool - prob.table.shape[1])], dim=1)
    widths = []
    q, keys, values = prob.slice_inputs(0)
    paged_sliced_attention(q, keys, values, wide.to(DEVICE), prob.lengths.to(DEVICE), prob.scale,
                           HeadGroups(prob.kv_head_of_q.tolist()), lambda s: widths.append(s.shape[-1]) or s,
                           max_length=32, config=DecodeConfig(block_n=16))
    assert widths == [32]
    check(prob, run_slices(prob, DecodeConfig(num_splits=2, block_n=16), max_length=18, table=wide), torch.float32)


def test_columns_past_each_length_are_never_read():
    """The summed scores past a row's length are garbage (unwritten memory, summed): NaN there must
    not reach the output, which equals that of the same scores without the NaN."""
    prob = Problem([11, 0, 25], 8, 2, 32, 32, 4, 1, torch.float32, seed=4)
    lengths, table = prob.lengths.to(DEVICE), prob.table.to(DEVICE)
    visible = torch.arange(table.shape[1] * prob.page_size, device=DEVICE)[None, :] < lengths[:, None]
    q, keys, values = prob.slice_inputs(0)
    groups = HeadGroups(prob.kv_head_of_q.tolist())
    cfg = DecodeConfig(num_splits=2, block_n=16)
    poisoned = paged_sliced_attention(q, keys, values, table, lengths, prob.scale, groups,
                                      lambda s: s.masked_fill_(~visible[:, None, :], float("nan")), config=cfg)
    clean = paged_sliced_attention(q, keys, values, table, lengths, prob.scale, groups, None, config=cfg)
    for got, want in zip(poisoned, clean):
        torch.testing.assert_close(got, want, atol=0, rtol=0)
    check(prob, [poisoned], torch.float32)


def test_preallocated_strided_outputs():
    """out/lse into the channels of a packed [B, Hq, Dv + 1] buffer, as the fast path's exchange
    buffers: nothing written outside them."""
    prob = Problem([19, 0, 7], 4, 2, 32, 32, 4, 2, torch.float32, seed=5)
    ref_out, ref_lse = prob.reference()
    groups = HeadGroups(prob.kv_head_of_q.tolist())
    q, keys, values = prob.slice_inputs(0)
    q2, keys2, _ = prob.slice_inputs(1)
    other = []
    paged_sliced_attention(q2, keys2, values, prob.table.to(DEVICE), prob.lengths.to(DEVICE), prob.scale, groups,
                           lambda s: other.append(s.clone()) or s, config=DecodeConfig(num_splits=2, block_n=16))
    for splits in (1, 3):
        packed = torch.full((3, 4, 16 + 2), float("nan"), device=DEVICE)
        out, lse = paged_sliced_attention(q, keys, values, prob.table.to(DEVICE), prob.lengths.to(DEVICE),
                                          prob.scale, groups, lambda s: s.add_(other[0]),
                                          out=packed[..., :16], lse=packed[..., 16],
                                          config=DecodeConfig(num_splits=splits, block_n=16))
        assert out.data_ptr() == packed.data_ptr() and torch.isnan(packed[..., 17]).all()
        empty = prob.lengths == 0
        torch.testing.assert_close(out.cpu().double(), ref_out[..., :16], atol=3e-5, rtol=1e-5)
        torch.testing.assert_close(lse.cpu()[~empty].double(), ref_lse[~empty], atol=3e-5, rtol=1e-5)
        assert torch.isneginf(lse.cpu()[empty]).all()


def test_fast_path_dispatch_matches_its_torch_reference():
    """fast_decode.paged_attention takes the sliced kernels when given head groups and a score
    reduction, and agrees with paged_attention_torch (same reduction, same static bound)."""
    prob = Problem([14, 0, 29], 8, 2, 32, 32, 4, 2, torch.float32, seed=6)
    q, keys, values = prob.slice_inputs(0)
    q2, keys2, _ = prob.slice_inputs(1)
    table, lengths = prob.table.to(DEVICE), prob.lengths.to(DEVICE)
    other = torch.einsum("bhd,bshd->bhs", q2.double(),
                         keys2[table.long()].flatten(1, 2)[:, :, prob.kv_head_of_q.to(DEVICE)].double()).float()
    calls = []

    def add_other_slice(scores):
        calls.append(scores.shape)
        return scores.add_(other[..., :scores.shape[-1]])

    kv_head_of_q = prob.kv_head_of_q.to(DEVICE)
    got = paged_attention(q, keys, values, table, lengths, prob.scale, kv_head_of_q,
                          HeadGroups(prob.kv_head_of_q.tolist()), reduce_scores=add_other_slice, max_length=32)
    want = paged_attention_torch(q, keys, values, table, lengths, prob.scale, kv_head_of_q,
                                 reduce_scores=add_other_slice, max_keys=32)
    assert len(calls) == 2
    torch.testing.assert_close(got[0], want[0], atol=3e-5, rtol=1e-5)
    torch.testing.assert_close(got[1], want[1], atol=3e-5, rtol=1e-5)


def test_mla_values_as_key_view_are_refused():
    prob = Problem([4], 2, 1, 32, 32, 4, 1, torch.float32)
    q, keys, _ = prob.slice_inputs(0)
    with pytest.raises(NotImplementedError, match="MLA"):
        paged_sliced_attention(q, keys, None, prob.table.to(DEVICE), prob.lengths.to(DEVICE), 1.0,
                               HeadGroups([0, 0]), None)
