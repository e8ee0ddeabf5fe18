"""Paged split-KV decode attention (Triton) against partial_attention, the independent reference.

Without CUDA the kernels run in Triton's CPU interpreter. TRITON_INTERPRET=1 must be set when
triton is first imported (Triton decorates its own tl.* helpers, e.g. tl.cdiv/tl.max, at import),
so this module imports triton under it at collection time and restores the variable right away;
a module fixture sets it again only while these tests run (other tests and their subprocesses
never see it). If another module imported triton earlier without it, the kernel tests here skip
and one test re-runs this file in a fresh interpreter. With CUDA they run compiled on the GPU.
Everything skips only when triton is not importable.
"""
from __future__ import annotations

import pytest
import torch
from triton_interpreter import ON_GPU, kernel_test_module

# module fixtures and the fresh-process rerun, collected by pytest under these names
(DEVICE, NEEDS_FRESH_PROCESS, _interpreter_while_these_tests_run, _needs_interpreter,
 test_rerun_in_fresh_interpreter) = kernel_test_module(__file__, "the Triton decode kernels")

from helix_core.attention import merge_partials as torch_merge_partials  # noqa: E402
from helix_core.attention import partial_attention  # noqa: E402
from helix_core.kernels import block_tables, decode_launch, kernel_module, pdl_usable, sm_count, split_merge  # noqa: E402
from helix_core.kernels import decode_attention as da  # noqa: E402
from helix_core.kv_cache import PagedKVCache, StagePlacement  # noqa: E402


TOL = {  # (out atol, out rtol, lse atol)
    torch.float32: (2e-5, 1e-5, 2e-5),
    torch.float16: (2e-3, 2e-3, 1e-3),
    torch.bfloat16: (1e-2, 1e-2, 1e-3),
}


def make_paged(batch_lengths, num_pages_extra, page_size, hkv, dk, dv, dtype, gen, shared_values=False):
    """Random pool with shuffled page ids; returns key_pages, value_pages|None, block_table, lengths."""
    counts = [-(-n // page_size) for n in batch_lengths]
    pool = sum(counts) + num_pages_extra
    keys = torch.randn(pool, page_size, hkv, dk, generator=gen).to(dtype)
    values = None if shared_values else torch.randn(pool, page_size, hkv, dv, generator=gen).to(dtype)
    perm = torch.randperm(pool, generator=gen)
    width = max(1, max(counts))
    # unused table entries point at a real page of no sequence: the kernel must not read them
    foreign = int(perm[-1]) if num_pages_extra else 0
    table = torch.full((len(batch_lengths), width), foreign, dtype=torch.int32)
    used = 0
    for row, count in enumerate(counts):
        table[row, :count] = perm[used:used + count].to(torch.int32)
        used += count
    return keys, values, table, torch.tensor(batch_lengths, dtype=torch.int32)


def reference(q, keys, values, table, lengths, scale, kv_head_of_q, dv):
    """partial_attention over each sequence's keys gathered from its pages (fp32 out/lse)."""
    batch = q.shape[0]
    page_size = keys.shape[1]
    outs, lses = [], []
    for b in range(batch):
        n = int(lengths[b])
        idx = torch.arange(n)
        pages = table[b].long()[idx // page_size]
        k = keys[pages, idx % page_size]
        v = k[..., :dv] if values is None else values[pages, idx % page_size]
        o, l = partial_attention(q[b:b + 1].cpu(), k.cpu(), v.cpu(), scale, torch.tensor([n]), idx,
                                 kv_head_of_q.cpu(), key_block=7)
        outs.append(o)
        lses.append(l)
    return torch.cat(outs), torch.cat(lses)


def check(out, lse, ref_out, ref_lse, dtype, lengths):
    atol, rtol, lse_atol = TOL[dtype]
    out, lse = out.cpu(), lse.cpu()
    assert out.dtype == torch.float32 and lse.dtype == torch.float32
    empty = lengths.cpu() == 0
    assert torch.isneginf(lse[empty]).all() and (out[empty] == 0).all()
    assert torch.isfinite(lse[~empty]).all() and torch.isfinite(out).all()
    torch.testing.assert_close(out, ref_out, atol=atol, rtol=rtol)
    torch.testing.assert_close(lse[~empty], ref_lse[~empty], atol=lse_atol, rtol=1e-5)


def run_case(*, lengths, hq, hkv, dk, dv, page_size, dtype=torch.float32, splits=None, block_h=None,
             block_n=None, mla=False, mapping=None, seed=0, q_dtype=None, pass_as="int", fuse_merge=True, dv_parts=1,
             pdl=None, pages_ahead=None, probs_via_memory=None, num_stages=None, prefetch=None):
    gen = torch.Generator().manual_seed(seed)
    keys, values, table, lens = make_paged(lengths, 3, page_size, hkv, dk, dv, dtype, gen, shared_values=mla)
    q = torch.randn(len(lengths), hq, dk, generator=gen).to(q_dtype or dtype)
    scale = dk ** -0.5 * 1.7
    kv_head_of_q = torch.arange(hq) // (hq // hkv) if mapping is None else torch.tensor(mapping)
    ref_out, ref_lse = reference(q, keys, values, table, lens, scale, kv_head_of_q, dv)
    if mapping is not None or pass_as == "tensor":
        heads_arg = kv_head_of_q.to(DEVICE)
    elif pass_as == "groups":
        heads_arg = da.HeadGroups(kv_head_of_q)
    else:
        heads_arg = hq // hkv
    cfg = da.DecodeConfig(num_splits=splits, block_h=block_h, block_n=block_n, fuse_merge=fuse_merge,
                          dv_parts=dv_parts, pdl=pdl, pages_ahead=pages_ahead, probs_via_memory=probs_via_memory,
                          num_stages=num_stages)
    out, lse = da.paged_decode_attention(
        q.to(DEVICE), keys.to(DEVICE), None if mla else values.to(DEVICE), table.to(DEVICE), lens.to(DEVICE),
        scale, heads_arg, value_dim=dv if mla else None, config=cfg, prefetch=prefetch)
    check(out, lse, ref_out, ref_lse, dtype, lens)
    return out, lse


# (lengths, Hq, Hkv, Dk, Dv, page_size, splits): group sizes 1/2/4/8, lengths 0/1/not multiples
# of the page size, page sizes below/above/not dividing the tile, several and empty splits
GQA_CASES = [
    pytest.param([7, 16], 2, 2, 16, 16, 4, None, id="g1-auto"),
    pytest.param([0, 1, 10], 4, 2, 16, 8, 3, 2, id="g2-len0-len1-dk>dv"),
    pytest.param([33, 5], 8, 2, 32, 32, 16, 3, id="g4-page16-3splits"),
    pytest.param([70], 8, 1, 40, 40, 8, 1, id="g8-dim40-onesplit"),
    pytest.param([19, 1], 8, 1, 8, 16, 5, 9, id="g8-dk<dv-empty-splits"),
    pytest.param([130, 0, 64], 4, 4, 16, 16, 64, 4, id="g1-page64"),
]


@pytest.mark.parametrize("lengths,hq,hkv,dk,dv,page_size,splits", GQA_CASES)
def test_gqa_fp32(lengths, hq, hkv, dk, dv, page_size, splits):
    run_case(lengths=lengths, hq=hq, hkv=hkv, dk=dk, dv=dv, page_size=page_size, splits=splits, block_n=16)


@pytest.mark.parametrize("lengths,hq,hkv,dk,dv,page_size,splits", GQA_CASES)
@pytest.mark.parametrize("ahead", [False, True])
def test_block_table_read_in_tile_or_ahead(lengths, hq, hkv, dk, dv, page_size, splits, ahead):
    """Both ways of reading the block table, in 16-bit (the GPU default reads it a tile ahead): page
    boundaries inside and across tiles, the last tile's look-ahead past the split's end, empty rows and
    splits."""
    run_case(lengths=lengths, hq=hq, hkv=hkv, dk=dk, dv=dv, page_size=page_size, splits=splits, block_n=16,
             dtype=torch.bfloat16, pages_ahead=ahead)


def test_wide_heads_with_their_default_launch():
    """MHA heads of 256 dims (K and V 512 wide together) take the wide-head default: 32-key tiles, three
    stages; pages smaller than a tile, a ragged last tile."""
    run_case(lengths=[45, 3], hq=2, hkv=2, dk=256, dv=256, page_size=8, splits=2, dtype=torch.float16)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(dtype):
    run_case(lengths=[45, 0, 9], hq=8, hkv=2, dk=32, dv=32, page_size=8, dtype=dtype, splits=3, block_n=16)


def test_fp32_query_on_bf16_cache():
    """A query of another dtype than the cache: scores computed in fp32 (no rounding of q)."""
    run_case(lengths=[30, 4], hq=4, hkv=2, dk=16, dv=16, page_size=4, dtype=torch.bfloat16,
             q_dtype=torch.float32, splits=2, block_n=16)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mla_values_are_key_view(dtype):
    """MLA-shaped: one KV head, values = first Dv dims of the keys, key tail (rope) dims beyond Dv."""
    run_case(lengths=[50, 1, 0], hq=8, hkv=1, dk=40, dv=32, page_size=4, dtype=dtype, splits=4, mla=True,
             block_n=16)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("splits", [1, 3])
def test_mla_values_in_two_parts(dtype, splits):
    """dv_parts=2: two programs per head block, each owning half of the values; the scores use both halves and
    the rope tail, the LSE comes from one of them (fused merge requested: it falls back to the merge kernel)."""
    run_case(lengths=[50, 1, 0, 37], hq=8, hkv=1, dk=72, dv=64, page_size=4, dtype=dtype, splits=splits, mla=True,
             block_n=16, dv_parts=2)


def test_mla_values_in_two_parts_production_dims():
    run_case(lengths=[40, 0, 17], hq=64, hkv=1, dk=576, dv=512, page_size=16, dtype=torch.bfloat16, mla=True,
             splits=2, block_h=128, dv_parts=2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("splits", [1, 3])
def test_mla_probabilities_through_memory(dtype, splits):
    """probs_via_memory: P and the rescale factors go through the per-program scratch, slots alternating by
    tile (rows of 50 keys in 16-key tiles: up to four tiles a split, a ragged last one, empty rows and splits)."""
    run_case(lengths=[50, 1, 0, 37], hq=8, hkv=1, dk=72, dv=64, page_size=4, dtype=dtype, splits=splits, mla=True,
             block_n=16, probs_via_memory=True)


def test_probabilities_through_memory_gqa_and_fused_merge():
    """The scratch path for GQA heads without a key tail, several head blocks, the fused merge."""
    run_case(lengths=[70, 9, 0], hq=8, hkv=2, dk=32, dv=32, page_size=8, dtype=torch.bfloat16, splits=2,
             block_n=16, probs_via_memory=True)


@pytest.mark.parametrize("stages,ahead", [(2, False), (3, True)])
def test_mla_probabilities_through_memory_production_dims(stages, ahead):
    """DeepSeek's latent under TP=2 (64 heads): the long-context default tile (three stages, the block table
    read ahead) and the two-stage one."""
    run_case(lengths=[70, 0, 17], hq=64, hkv=1, dk=576, dv=512, page_size=16, dtype=torch.bfloat16, mla=True,
             splits=2, block_h=64, block_n=32, probs_via_memory=True, num_stages=stages, pages_ahead=ahead)


def test_dv_parts_needs_values_that_are_keys():
    keys = torch.zeros(2, 4, 1, 16)
    with pytest.raises(ValueError, match="dv_parts=2"):
        da.paged_decode_attention(torch.zeros(1, 2, 16), keys, keys.clone(), torch.zeros(1, 2, dtype=torch.int32),
                                  torch.ones(1, dtype=torch.int32), 1.0, 2, config=da.DecodeConfig(dv_parts=2))
    with pytest.raises(ValueError, match="dv_parts must be 1 or 2"):
        da.paged_decode_attention(torch.zeros(1, 2, 16), keys, None, torch.zeros(1, 2, dtype=torch.int32),
                                  torch.ones(1, dtype=torch.int32), 1.0, 2, config=da.DecodeConfig(dv_parts=4))


@pytest.mark.parametrize("mla", [False, True], ids=["gqa-128", "mla-576-512"])
def test_production_shapes_default_config(mla):
    """The head dims and default launch configs used on GPU (GQA 128/128 group 4; MLA 576/512, 64 heads ->
    two 32-head blocks), bf16, short lengths so the interpreter stays quick."""
    if mla:
        run_case(lengths=[70, 0, 33], hq=64, hkv=1, dk=576, dv=512, page_size=16, dtype=torch.bfloat16, mla=True,
                 splits=2)
    else:
        run_case(lengths=[100, 1, 0], hq=16, hkv=4, dk=128, dv=128, page_size=16, dtype=torch.bfloat16)


@pytest.mark.parametrize("seed", range(6))
def test_random_shapes(seed):
    gen = torch.Generator().manual_seed(100 + seed)

    def pick(options):
        return options[int(torch.randint(len(options), (1,), generator=gen))]
    hkv = pick([1, 2, 3])
    group = pick([1, 2, 4, 8])
    mla = pick([False, True])
    dv = pick([8, 16, 24, 32])
    dk = dv + pick([0, 8, 24]) if mla else pick([8, 16, 40])
    page_size = pick([1, 3, 4, 16])
    lengths = [int(torch.randint(0, 60, (1,), generator=gen)) for _ in range(pick([1, 2, 3]))]
    run_case(lengths=lengths, hq=hkv * group, hkv=hkv, dk=dk, dv=dv, page_size=page_size, mla=mla,
             splits=pick([None, 1, 2, 7]), block_n=pick([16, 32]), block_h=pick([None, 16]),
             dtype=pick([torch.float32, torch.bfloat16]), seed=seed)


def test_head_blocks_smaller_than_group():
    """32 query heads on one KV head, 16 per program: two head blocks read the same KV head."""
    run_case(lengths=[21], hq=32, hkv=1, dk=24, dv=16, page_size=4, splits=2, block_h=16, mla=True, block_n=16)


def test_arbitrary_head_mapping():
    """A non-monotonic kv_head_of_q tensor (and Helix's offset mapping) instead of h // group."""
    run_case(lengths=[12, 25], hq=6, hkv=3, dk=16, dv=16, page_size=4, splits=2, mapping=[2, 0, 2, 1, 0, 2],
             block_n=16)


def test_head_groups_object_and_auto_splits():
    out_a, lse_a = run_case(lengths=[40, 3], hq=4, hkv=2, dk=16, dv=16, page_size=8, pass_as="groups")
    out_b, lse_b = run_case(lengths=[40, 3], hq=4, hkv=2, dk=16, dv=16, page_size=8, pass_as="tensor", splits=5,
                            block_n=16)
    torch.testing.assert_close(out_a, out_b, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(lse_a, lse_b, atol=2e-5, rtol=1e-5)


def test_noncontiguous_query_and_preallocated_outputs():
    gen = torch.Generator().manual_seed(3)
    keys, _, table, lens = make_paged([17, 6], 2, 4, 1, 24, 16, torch.float32, gen, shared_values=True)
    base = torch.randn(4, 2, 30, generator=gen).to(DEVICE)
    q = base.transpose(0, 1)[..., :24]  # [2, 4, 24] with strides (30, 60, 1), on the kernel's device
    assert not q.is_contiguous()
    ref_out, ref_lse = reference(q.cpu(), keys, None, table, lens, 0.2, torch.zeros(4, dtype=torch.long), 16)
    big = torch.full((2, 4, 20), float("nan"), device=DEVICE)
    out_view = big[..., :16]
    lse_buf = torch.full((2, 4), float("nan"), device=DEVICE)
    out, lse = da.paged_decode_attention(q, keys.to(DEVICE), None, table.to(DEVICE),
                                         lens.to(DEVICE), 0.2, 4, value_dim=16, out=out_view, lse=lse_buf,
                                         config=da.DecodeConfig(num_splits=2, block_n=16))
    assert out.data_ptr() == big.data_ptr() and lse is lse_buf
    check(out, lse, ref_out, ref_lse, torch.float32, lens)
    assert torch.isnan(big[..., 16:]).all()  # nothing written beyond Dv


def test_choose_num_splits_fills_machine():
    # one short-ish sequence, 8 head blocks on 132 SMs: many splits, but each keeps >= 4 tiles
    assert decode_launch.choose_num_splits(1, 8, 131072, 64, 132) == 66
    assert decode_launch.choose_num_splits(1, 8, 1000, 64, 132) == 4
    assert decode_launch.choose_num_splits(64, 8, 131072, 64, 132) == 2
    assert decode_launch.choose_num_splits(1, 1, 10 ** 9, 64, 132) == decode_launch.MAX_SPLITS
    assert decode_launch.choose_num_splits(4, 8, 0, 64, 132) == 1


@pytest.mark.parametrize("strided", [False, True])
def test_merge_partials_kernel(strided):
    gen = torch.Generator().manual_seed(5)
    parts, tokens, heads, dim = 3, 4, 5, 12
    if strided:  # the exchange's packed layout: [P, T, H, D + 1], LSE the last channel
        packed = torch.randn(parts, tokens, heads, dim + 1, generator=gen)
        packed[1, 0, :, dim] = float("-inf")
        packed[:, 2, 3, dim] = float("-inf")  # no shard saw a key
        packed[:, 2, 3, :dim] = 0.0
        outs, lses = packed[..., :dim], packed[..., dim]
    else:
        outs = torch.randn(parts, tokens, heads, dim, generator=gen)
        lses = torch.randn(parts, tokens, heads, generator=gen) * 3
        lses[0, 1] = float("-inf")
    expect = torch_merge_partials(outs, lses)
    got = split_merge.merge_partials(outs.to(DEVICE), lses.to(DEVICE)).cpu()
    torch.testing.assert_close(got, expect, atol=1e-5, rtol=1e-5)
    # stored in the model's dtype: one rounding of the fp32 result (the interpreter truncates: 1 ulp)
    low = split_merge.merge_partials(outs.to(DEVICE), lses.to(DEVICE), out_dtype=torch.bfloat16).cpu()
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), expect, atol=0, rtol=2 ** -7)


def test_merge_partials_kernel_reads_parts_in_several_tiles():
    """Many parts of a wide Dv (the split merge of MLA: 512 dims, up to 256 splits): the kernel walks the parts
    in several [BLOCK_S, Dv] tiles, the last one ragged, with empty parts (LSE -inf, garbage output) among them."""
    gen = torch.Generator().manual_seed(11)
    parts, tokens, heads, dim = 21, 2, 3, 512
    assert parts > split_merge.MERGE_KERNEL_TILE // dim  # several tiles
    outs = torch.randn(parts, tokens, heads, dim, generator=gen)
    lses = torch.randn(parts, tokens, heads, generator=gen) * 4
    lses[::5] = float("-inf")
    outs[::5] = float("nan")  # an empty split's output is never written: it must weigh nothing
    expect = torch_merge_partials(outs.nan_to_num(0.0), lses)
    got = split_merge.merge_partials(outs.to(DEVICE), lses.to(DEVICE)).cpu()
    torch.testing.assert_close(got, expect, atol=1e-5, rtol=1e-5)
    # the row's 512 values over 4 programs of 128 (or 2 of 256): each weighs its columns alike
    for columns in (128, 256):
        split = split_merge.merge_partials(outs.to(DEVICE), lses.to(DEVICE), columns=columns).cpu()
        torch.testing.assert_close(split, expect, atol=1e-5, rtol=1e-5)
    lse = torch.full((tokens, heads), float("nan"), device=DEVICE)  # written once, by the first column block
    result = torch.empty(tokens, heads, dim, device=DEVICE)
    split_merge.launch_merge(outs.to(DEVICE), lses.to(DEVICE), result, lse, lse_in_log2=False, columns=128)
    torch.testing.assert_close(lse.cpu(), torch.logsumexp(lses, 0), atol=1e-5, rtol=1e-5)


def test_merge_of_16_bit_partials_reads_them_in_tiles_of_their_own():
    """bf16 partials (the sm_90 MLA kernel's option) take a tile of twice the parts: 37 parts of 512 values are
    three tiles of 16, the last ragged, with empty parts among them; the merge weighs the bf16 values as given."""
    gen = torch.Generator().manual_seed(12)
    parts, tokens, heads, dim = 37, 1, 3, 512
    assert split_merge.MERGE_KERNEL_TILE_16BIT // dim < parts
    outs = torch.randn(parts, tokens, heads, dim, generator=gen).bfloat16()
    lses = torch.randn(parts, tokens, heads, generator=gen) * 4
    lses[1::6] = float("-inf")
    outs[1::6] = float("nan")
    expect = torch_merge_partials(outs.float().nan_to_num(0.0), lses)
    result = torch.empty(tokens, heads, dim, device=DEVICE)
    lse = torch.empty(tokens, heads, device=DEVICE)
    split_merge.launch_merge(outs.to(DEVICE), lses.to(DEVICE), result, lse, lse_in_log2=False)
    torch.testing.assert_close(result.cpu(), expect, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse.cpu(), torch.logsumexp(lses, 0), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mla", [False, True])
def test_decode_attention_for_step_matches_cache_gather(mla):
    """End to end on a real PagedKVCache (KVP rank 1 of 2, staged placement, interleaved page
    allocation with a freed sequence): the kernel path equals the gather + partial_attention path
    of ShardedAttention._local_attention for a decode step."""
    gen = torch.Generator().manual_seed(11)
    hkv, dk, dv = (1, 24, 16) if mla else (2, 16, 16)
    hq = 4
    placement = StagePlacement(kvp=2, stage_size=3)
    cache = PagedKVCache(num_layers=2, num_pages=40, page_size=4, kv_heads=hkv, key_dim=dk,
                         value_dim=None if mla else dv, placement=placement, kvp_rank=1,
                         dtype=torch.float32, device=DEVICE)
    cache.keys.copy_(torch.randn(cache.keys.shape, generator=gen))
    if cache.values is not None:
        cache.values.copy_(torch.randn(cache.values.shape, generator=gen))
    targets = {10: (0, 29), 11: (1, 2), 12: (0, 1), 13: (1, 17)}
    cache.add_sequence(99, 0)
    cache.grow(99, 8)
    for seq_id, (start, _) in targets.items():
        cache.add_sequence(seq_id, start)
    for step in range(1, 30):  # grow round-robin so pages interleave
        for seq_id, (_, final) in targets.items():
            if step <= final:
                cache.grow(seq_id, step)
        if step == 5:
            cache.free(99)
    seq_ids = [12, 10, 13, 11]
    assert cache.local_length(12) == 0
    q = torch.randn(len(seq_ids), hq, dk, generator=gen).to(DEVICE)
    kv_head_of_q = (torch.arange(hq) // (hq // hkv)).to(DEVICE)
    for layer in range(2):
        out, lse = block_tables.decode_attention_for_step(cache, layer, seq_ids, q, 0.3, kv_head_of_q,
                                                value_dim=dv if mla else None)
        for row, seq_id in enumerate(seq_ids):
            keys, values = cache.gather(layer, seq_id)
            if values is None:
                values = keys[..., :dv]
            seq = cache.sequences[seq_id]
            k_pos = placement.global_positions(keys.shape[0], seq.start_rank, 1)
            q_pos = torch.tensor([seq.length - 1])  # the new token's position
            ref_out, ref_lse = partial_attention(q[row:row + 1].cpu(), keys.cpu(), values.cpu(), 0.3, q_pos, k_pos,
                                                 kv_head_of_q.cpu())
            check(out[row:row + 1], lse[row:row + 1], ref_out, ref_lse, torch.float32,
                  torch.tensor([keys.shape[0]]))
    # the block-table memo notices growth
    _, l1, _ = block_tables.build_block_table(cache, seq_ids, DEVICE)
    cache.grow(12, 9)  # 12 now has local tokens on rank 1 (positions 3..5 are stage 1)
    _, l2, m2 = block_tables.build_block_table(cache, seq_ids, DEVICE)
    assert int(l1[0]) == 0 and int(l2[0]) == cache.local_length(12) > 0
    assert m2 == max(cache.local_length(s) for s in seq_ids)


def test_rejects_bad_shapes():
    q = torch.zeros(2, 4, 16)
    keys = torch.zeros(3, 4, 2, 16)
    table = torch.zeros(2, 1, dtype=torch.int32)
    lens = torch.zeros(2, dtype=torch.int32)
    with pytest.raises(ValueError):
        da.paged_decode_attention(q, keys, None, table, lens, 1.0, 2, value_dim=32)
    with pytest.raises(ValueError):
        da.paged_decode_attention(q, keys, None, table, lens, 1.0, [0, 1, 2, 3])
    with pytest.raises(ValueError):
        da.paged_decode_attention(q[:, :, :8], keys, None, table, lens, 1.0, 2)


def test_programmatic_dependent_launch_only_where_supported():
    """PDL (the merge launched while the split kernel runs) needs compiled Triton on an sm_90+ GPU: asked
    for elsewhere it is refused; left to the default it is used only there, with the same result."""
    case = dict(lengths=[70, 33], hq=4, hkv=2, dk=16, dv=16, page_size=8, splits=3, fuse_merge=False)
    supported = pdl_usable(torch.device(DEVICE))
    assert supported == (ON_GPU and torch.cuda.get_device_capability()[0] >= 9)
    if not supported:
        with pytest.raises(ValueError, match="pdl=True"):
            run_case(**case, pdl=True)
    run_case(**case, pdl=None)  # run_case checks against the fp32 reference
    run_case(**case, pdl=False)


def test_split_merge_ending_with_an_l2_prefetch_gives_the_same_result():
    """The split merge's L2 prefetch variant (run where it compiles, an sm_90+ GPU; a hint ignored elsewhere):
    the output and LSE are those of the merge without it, bit for bit, and match the reference."""
    case = dict(lengths=[70, 33], hq=4, hkv=2, dk=16, dv=16, page_size=8, splits=3, fuse_merge=False)
    target = torch.randn(1 << 16, device=DEVICE)  # 256 KiB, of which the first 100000 bytes (rounded to 16)
    plain = run_case(**case)
    fetched = run_case(**case, prefetch=(target, 100_000))
    assert torch.equal(plain[0], fetched[0]) and torch.equal(plain[1], fetched[1])


def test_decode_kernel_usable_only_on_cuda(monkeypatch):
    q = torch.zeros(1, 1, 16, device=DEVICE)
    assert da.decode_kernel_usable(q) == ON_GPU
    monkeypatch.setenv("HELIX_DISABLE_TRITON_DECODE", "1")
    assert not da.decode_kernel_usable(q)


@pytest.mark.parametrize("mla", [False, True])
def test_bench_problem_and_check(mla):
    """The benchmark's data layout (contiguous copy scattered to shuffled pages) and its chunked fp32
    check agree with the kernel, and the check rejects a slightly wrong output."""
    from helix_core.kernels import bench_decode as bd
    dk, dv, hkv = (40, 32, 1) if mla else (32, 32, 2)
    prob = bd.Problem(batch=2, context=45, heads=4, kv_heads=hkv, dk=dk, dv=dv, mla=mla, page_size=16,
                      dtype=torch.bfloat16, seed=0, device=DEVICE)
    out, lse = da.paged_decode_attention(prob.q, prob.key_pages, prob.value_pages, prob.block_table, prob.lengths,
                                         prob.scale, da.HeadGroups(prob.kv_head_of_q),
                                         value_dim=dv if mla else None, max_length=45,
                                         config=da.DecodeConfig(block_n=16, num_splits=2))
    ok, detail = bd.check(prob, out, lse)
    assert ok, detail
    assert not bd.check(prob, out * 1.05, lse)[0]
    assert not bd.check(prob, out, lse + 0.01)[0]


@pytest.mark.parametrize("first_call_s, iters, want", [(0.001, 100, 25), (0.02, 100, 25), (0.05, 100, 10),
                                                       (0.2, 100, 3), (0.001, 8, 10)])
def test_bench_baselines_are_timed_within_half_a_second(first_call_s, iters, want):
    from helix_core.kernels import bench_decode as bd
    assert bd._baseline_iters(first_call_s, iters) == want


def test_bench_refuses_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    from helix_core.kernels import bench_decode as bd
    with pytest.raises(SystemExit) as exc:
        bd.main(["--context", "64"])
    assert exc.value.code == 2


# ---------------------------------------------------------------------------------------------
# fused merge: the last split program of each (sequence, head block) merges the partials
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def merge_launches(monkeypatch):
    """Counts launches of the separate merge kernel (0 when the merge is fused)."""
    mod = kernel_module("_triton_decode")
    real = mod._merge_kernel
    launches = []

    class Spy:
        def __getitem__(self, grid):
            launches.append(grid)
            return real[grid]

    monkeypatch.setattr(mod, "_merge_kernel", Spy())
    return launches


def counter_key() -> str:
    """The counters are keyed by the tensors' device: "cuda:0", not "cuda"."""
    return str(torch.device("cuda", torch.cuda.current_device()) if DEVICE.type == "cuda" else DEVICE)


def counters_clean() -> bool:
    buf = split_merge._COUNTERS.get(counter_key())
    return buf is not None and not bool(buf.any())


# (lengths, Hq, Hkv, Dk, Dv, page_size, splits, mla): empty sequences, uneven lengths, batch > 1,
# empty splits (9 splits of 19 keys), MLA values = keys[..., :Dv] with a rope tail
FUSED_CASES = [
    pytest.param([0, 37, 5, 64], 8, 2, 16, 16, 4, 3, False, id="gqa-g4-3splits"),
    pytest.param([19, 1, 0], 4, 4, 16, 8, 3, 9, False, id="gqa-g1-empty-splits"),
    pytest.param([45, 0, 12], 8, 1, 40, 32, 4, 5, True, id="mla-5splits"),
    pytest.param([0, 0], 4, 2, 16, 16, 4, 4, False, id="all-empty"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("lengths,hq,hkv,dk,dv,page_size,splits,mla", FUSED_CASES)
def test_fused_merge_matches_reference_and_unfused(merge_launches, lengths, hq, hkv, dk, dv, page_size, splits,
                                                   mla, dtype):
    case = {"lengths": lengths, "hq": hq, "hkv": hkv, "dk": dk, "dv": dv, "page_size": page_size, "splits": splits,
            "mla": mla, "dtype": dtype, "block_n": 16}
    fused = run_case(**case)  # checked against partial_attention inside
    assert not merge_launches and counters_clean()
    unfused = run_case(**case, fuse_merge=False)
    assert len(merge_launches) == 1
    for a, b in zip(fused, unfused):  # same partials, same weights: only the summation order differs
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_fused_merge_twice_in_a_row(merge_launches):
    """The last program resets its counter: a second call (other lengths, other queries, a row that
    had keys now empty and vice versa) merges correctly too."""
    for seed, lengths in enumerate([[33, 0, 7], [0, 50, 7], [33, 0, 7]]):
        run_case(lengths=lengths, hq=8, hkv=2, dk=16, dv=16, page_size=4, splits=4, block_n=16, seed=seed)
        assert counters_clean()
    assert not merge_launches


@pytest.mark.parametrize("tile,splits_per_tile", [(8, 1), (16, 2)])
def test_fused_merge_several_tiles_per_pass(merge_launches, monkeypatch, tile, splits_per_tile):
    """Tiny merge tiles: 7 splits take 7 or 4 output tiles and 4 LSE tiles, the last ones partial."""
    monkeypatch.setattr(decode_launch, "MERGE_TILE_PER_WARP", tile)
    monkeypatch.setattr(decode_launch, "MERGE_LSE_TILE", 4)
    assert decode_launch.merge_tiles(16, 4, 16, 8) == (4, splits_per_tile, 2)  # 4 heads a block, Dv 16, fp32: 8 warps
    case = {"lengths": [90, 3, 0, 61], "hq": 8, "hkv": 2, "dk": 16, "dv": 16, "page_size": 4, "splits": 7,
            "block_n": 16}
    fused = run_case(**case)
    assert not merge_launches
    unfused = run_case(**case, fuse_merge=False)
    torch.testing.assert_close(fused[0], unfused[0], atol=1e-6, rtol=1e-6)


def test_merge_too_large_for_one_program_is_not_fused(merge_launches, monkeypatch):
    monkeypatch.setattr(da, "FUSED_MERGE_MAX_BYTES", 0)
    run_case(lengths=[30, 4], hq=4, hkv=2, dk=16, dv=16, page_size=4, splits=3, block_n=16)
    assert len(merge_launches) == 1


def test_counters_grow_only_outside_graph_capture(merge_launches, monkeypatch):
    """A capture that would need a bigger counter buffer falls back to the merge kernel (no
    allocation inside the graph); outside capture the buffer grows and the old one stays alive."""
    monkeypatch.setattr(split_merge, "_COUNTERS", {})
    monkeypatch.setattr(split_merge, "_RETIRED_COUNTERS", [])
    monkeypatch.setattr(split_merge, "COUNTERS_MIN", 4)
    case = {"hq": 8, "hkv": 2, "dk": 16, "dv": 16, "page_size": 4, "splits": 3, "block_n": 16}  # 2 head blocks a row
    run_case(lengths=[20, 9], **case)
    first = split_merge._COUNTERS[counter_key()]
    assert first.numel() == 4 and not merge_launches
    monkeypatch.setattr(split_merge, "_capturing", lambda device: True)
    run_case(lengths=[20, 9, 0], **case)  # needs 6 slots
    assert len(merge_launches) == 1 and split_merge._COUNTERS[counter_key()] is first
    run_case(lengths=[20, 9], **case)  # fits: still fused while "capturing"
    assert len(merge_launches) == 1
    monkeypatch.setattr(split_merge, "_capturing", lambda device: False)
    run_case(lengths=[20, 9, 0], **case)
    assert len(merge_launches) == 1 and split_merge._COUNTERS[counter_key()].numel() == 8
    assert split_merge._RETIRED_COUNTERS == [first] and counters_clean()


@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("splits,fuse", [(1, True), (3, True), (3, False)], ids=["one-split", "fused", "unfused"])
def test_16bit_output(out_dtype, splits, fuse):
    """out in bf16/fp16 is the fp32 result rounded once (the kernel casts at the store); lse stays fp32."""
    gen = torch.Generator().manual_seed(8)
    keys, _, table, lens = make_paged([26, 0, 9], 2, 4, 1, 24, 16, torch.bfloat16, gen, shared_values=True)
    q = torch.randn(3, 4, 24, generator=gen).to(torch.bfloat16).to(DEVICE)
    args = (q, keys.to(DEVICE), None, table.to(DEVICE), lens.to(DEVICE), 0.3, 4)
    cfg = da.DecodeConfig(num_splits=splits, block_n=16, fuse_merge=fuse)
    out32, lse32 = da.paged_decode_attention(*args, value_dim=16, config=cfg)
    out16, lse16 = da.paged_decode_attention(*args, value_dim=16, config=cfg, out_dtype=out_dtype)
    assert out16.dtype == out_dtype and lse16.dtype == torch.float32
    # the GPU rounds to nearest even like torch; the interpreter of Triton 3.9 truncates to bf16: one ulp
    ulp = {"atol": 0, "rtol": 0} if ON_GPU else {"atol": 1e-6, "rtol": torch.finfo(out_dtype).eps}
    torch.testing.assert_close(out16, out32.to(out_dtype), **ulp)
    torch.testing.assert_close(lse16, lse32, atol=0, rtol=0)
    buf = torch.full((3, 4, 16), float("nan"), dtype=out_dtype, device=DEVICE)
    got, _ = da.paged_decode_attention(*args, value_dim=16, config=cfg, out=buf)
    assert got is buf
    torch.testing.assert_close(buf, out16, atol=0, rtol=0)


def test_out_dtype_validation():
    q = torch.zeros(1, 2, 16, device=DEVICE)
    keys = torch.zeros(2, 4, 1, 16, device=DEVICE)
    table = torch.zeros(1, 1, dtype=torch.int32, device=DEVICE)
    lens = torch.zeros(1, dtype=torch.int32, device=DEVICE)
    with pytest.raises(ValueError):
        da.paged_decode_attention(q, keys, None, table, lens, 1.0, 2, out_dtype=torch.int32)
    with pytest.raises(ValueError):
        da.paged_decode_attention(q, keys, None, table, lens, 1.0, 2, out_dtype=torch.bfloat16,
                                  out=torch.zeros(1, 2, 16, device=DEVICE))


def test_bench_sweep_covers_wide_groups_and_more_splits():
    """The launch-config sweep of the kernel benchmark: the default without the fused merge, block_h 32
    tiles for MQA-sized groups, and split counts above and below the default for short contexts."""
    from helix_core.kernels import bench_decode as bd
    mqa = bd.Problem(batch=1, context=64, heads=32, kv_heads=1, dk=16, dv=16, mla=False, page_size=16,
                     dtype=torch.float32, seed=0, device=DEVICE)
    gqa = bd.Problem(batch=1, context=4096, heads=8, kv_heads=2, dk=16, dv=16, mla=False, page_size=16,
                     dtype=torch.float32, seed=0, device=DEVICE)
    wide = bd._sweep_configs(mqa, da.HeadGroups(mqa.kv_head_of_q), mla=False)
    narrow = bd._sweep_configs(gqa, da.HeadGroups(gqa.kv_head_of_q), mla=False)
    assert wide[0][1].fuse_merge is True and wide[0][1].block_n is None
    assert wide[1][1] == da.DecodeConfig(pdl=False)  # the merge launched after the split kernel, not early
    assert any(cfg.block_h == 32 for _, cfg in wide) and not any(cfg.block_h == 32 for _, cfg in narrow)
    base = bd._splits_used(gqa, da.DecodeConfig(), da.HeadGroups(gqa.kv_head_of_q), False)
    forced = sorted({cfg.num_splits for _, cfg in narrow if cfg.num_splits and not cfg.pages_ahead})
    assert forced == [base // 4, base // 2, 2 * base, 4 * base]


def test_bench_sweep_times_probabilities_through_memory_for_mla():
    """The MLA sweep holds the scratch-P tiles (64 heads, one value part), with splits for at most one
    program per SM."""
    from helix_core.kernels import bench_decode as bd
    mla = bd.Problem(batch=1, context=4096, heads=128, kv_heads=1, dk=576, dv=512, mla=True, page_size=16,
                     dtype=torch.bfloat16, seed=0, device=DEVICE)
    pmem = [(label, cfg) for label, cfg in bd._sweep_configs(mla, da.HeadGroups(mla.kv_head_of_q), mla=True)
            if cfg.probs_via_memory]
    assert len(pmem) == len(bd.MLA_PMEM_SWEEP) and all(label.endswith("/pmem") for label, _ in pmem)
    sms = sm_count(mla.q.device)
    assert all(cfg.block_h == 64 and cfg.dv_parts == 1 and 2 * cfg.num_splits <= max(2, sms) for _, cfg in pmem)
