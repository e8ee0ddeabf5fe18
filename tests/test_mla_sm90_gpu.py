"""The sm_90 Gluon MLA decode kernel against fp32 attention over the gathered keys (an H100 / H200 only:
Gluon has no CPU interpreter; CI compiles the kernel for sm_90 in tests/test_kernel_sm90.py instead)."""
from __future__ import annotations

import math
import os

import pytest
import torch

from helix_core.kernels import mla_sm90

if not (torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0)
        and os.environ.get("TRITON_INTERPRET", "0") in ("", "0") and mla_sm90.gluon_hopper_available()):
    pytest.skip("needs an sm_90 GPU and Triton with Gluon", allow_module_level=True)

from helix_core.bench.probes import capture_graph  # noqa: E402
from helix_core.kernels import decode_attention as da  # noqa: E402
from helix_core.kernels import split_merge  # noqa: E402

import mla_cases  # noqa: E402
from mla_cases import make_case  # noqa: E402

SCALE = 1.0 / math.sqrt(192)


def reference(q, keys, table, lengths):
    return mla_cases.reference(q, keys, table, lengths, SCALE)


def assert_matches(out, lse, ref_out, ref_lse):
    live = torch.isfinite(ref_lse)
    torch.testing.assert_close(out.float()[live], ref_out[live], atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(lse[live], ref_lse[live], atol=1e-3, rtol=0)
    assert (lse[~live] == float("-inf")).all() and (out[~live] == 0).all()  # a sequence with no keys


@pytest.mark.parametrize("lengths, heads, page_size, splits", [
    ([1000], 128, 64, None),  # a partial last tile (cp.async), the rest by TMA
    ([0, 77, 5000], 128, 16, None),  # an empty sequence; four 16-key boxes a tile
    ([0, 77, 5000], 128, 16, 1),  # one split: the final output straight from the kernel
    ([4096, 129], 64, 8, 3),  # 8-key boxes, a forced split count
    ([300, 64], 16, 32, None),  # 16 heads: a 64-head block padded with 48 empty rows
    ([33000], 128, 4, None),  # pages too small for a TMA box: cp.async for every tile
    ([20000, 64], 128, 128, 7),  # pages wider than a tile
])
def test_matches_fp32_attention(lengths, heads, page_size, splits):
    q, keys, table, lens = make_case(lengths, heads, page_size)
    for out_dtype in (torch.float32, torch.bfloat16):
        out, lse = da.paged_decode_attention(q, keys, None, table, lens, SCALE, heads, value_dim=512,
                                             max_length=max(lengths),
                                             config=da.DecodeConfig(sm90_mla=True, num_splits=splits),
                                             out_dtype=out_dtype)
        assert out.dtype == out_dtype
        assert_matches(out, lse, *reference(q, keys, table, lens))


@pytest.mark.parametrize("lengths, page_size, splits", [
    ([1000], 64, 66),  # 16 tiles over 66 splits: empty splits between the others
    ([0, 77, 8000], 16, 66),  # an empty sequence, one tile, 125 tiles (59 splits of 2, 7 of 1)
    ([33000], 64, None),  # 516 tiles over the default splits, a partial last tile
    ([4096, 129], 8, 3),  # 8-key boxes, a forced split count
])
def test_even_splits_match_fp32_attention(lengths, page_size, splits):
    """Splits within a tile of each other (EVEN_SPLITS) cover each key once: the result is attention over all
    of them, with empty splits anywhere in the row."""
    heads = 128
    q, keys, table, lens = make_case(lengths, heads, page_size)
    groups = da.HeadGroups.from_group_size(heads, heads)
    group_kv, group_heads = groups.tables(64, q.device)
    count = splits or mla_sm90.choose_splits(len(lengths), groups, max(lengths), q.device)
    out = torch.empty(len(lengths), heads, 512, device="cuda")
    lse = torch.empty(len(lengths), heads, device="cuda")
    mla_sm90.launch(q, keys, table, lens, SCALE, group_kv, group_heads, count, out, lse, q_by_tma=True,
                    staged_store=True, even_splits=True)
    assert_matches(out, lse, *reference(q, keys, table, lens))


def test_fp16_cache_and_several_head_groups():
    """fp16, and 128 query heads over two KV heads (64 each; each block reads its own head, cp.async)."""
    gen = torch.Generator(device="cuda").manual_seed(1)
    q = torch.randn(2, 128, 576, device="cuda", generator=gen).half()
    keys = torch.randn(40, 16, 2, 576, device="cuda", generator=gen).half()
    table = torch.arange(40, device="cuda", dtype=torch.int32).view(2, 20)
    lens = torch.tensor([300, 317], dtype=torch.int32, device="cuda")
    mapping = [h // 64 for h in range(128)]
    out, lse = da.paged_decode_attention(q, keys, None, table, lens, SCALE, mapping, value_dim=512,
                                         config=da.DecodeConfig(sm90_mla=True))
    for kv in range(2):
        rows = slice(64 * kv, 64 * kv + 64)
        ref_out, ref_lse = reference(q[:, rows].contiguous(), keys[:, :, kv:kv + 1].contiguous(), table, lens)
        assert_matches(out[:, rows], lse[:, rows], ref_out, ref_lse)


def test_tma_and_cp_async_loads_agree():
    """Keys by TMA or cp.async, queries by TMA or through registers (also from a q whose sequences are 130
    head rows apart): the same math in the same order, so the same bits."""
    q, keys, table, lens = make_case([5000, 4097], 128, 64)
    wide = torch.zeros(2, 130, 576, dtype=q.dtype, device="cuda")
    wide[:, 1:129] = q
    groups = da.HeadGroups.from_group_size(128, 128)
    group_kv, group_heads = groups.tables(64, q.device)
    results = []
    for use_tma, q_by_tma, query in ((True, False, q), (False, False, q), (True, True, q), (True, True, wide[:, 1:129])):
        out = torch.empty(2, 128, 512, device="cuda")
        lse = torch.empty(2, 128, device="cuda")
        mla_sm90.launch(query, keys, table, lens, SCALE, group_kv, group_heads, 4, out, lse, use_tma=use_tma,
                        q_by_tma=q_by_tma)
        results.append((out, lse))
    for out, lse in results[1:]:
        torch.testing.assert_close(out, results[0][0], atol=0, rtol=0)
        torch.testing.assert_close(lse, results[0][1], atol=0, rtol=0)
    assert_matches(*results[0], *reference(q, keys, table, lens))


@pytest.mark.parametrize("partials", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("heads, splits", [(128, 4), (16, 3), (128, 1)])
def test_outputs_staged_through_shared_memory_are_the_same_bits(partials, heads, splits):
    """The staged store (each warpgroup's outputs through its freed key buffers, out in whole-sector rows) writes
    what the direct store writes: the same values into the same places and nothing for the padded rows of a block
    (16 heads in a block of 64, their queries through registers); split partials in fp32 or bf16, and one split's
    final output."""
    q, keys, table, lens = make_case([5000, 77], heads, 64)
    groups = da.HeadGroups.from_group_size(heads, heads)
    group_kv, group_heads = groups.tables(64, q.device)
    results = []
    for staged in (False, True):
        out = torch.full((2, heads, 512), 7.0, device="cuda")
        lse = torch.full((2, heads), 7.0, device="cuda")
        mla_sm90.launch(q, keys, table, lens, SCALE, group_kv, group_heads, splits, out, lse,
                        q_by_tma=heads % 64 == 0, partials=partials, staged_store=staged)
        results.append((out, lse))
    torch.testing.assert_close(results[1][0], results[0][0], atol=0, rtol=0)
    torch.testing.assert_close(results[1][1], results[0][1], atol=0, rtol=0)
    assert_matches(*results[1], *reference(q, keys, table, lens))


def test_traced_launch_gives_the_same_output_and_ordered_readings():
    """The measurement trace (scripts/gpu_gluon_mla.py timeline) changes no output bit, and each program's
    readings come in the order of its stages, on SMs of this GPU."""
    q, keys, table, lens = make_case([5000, 300], 128, 64)
    groups = da.HeadGroups.from_group_size(128, 128)
    group_kv, group_heads = groups.tables(64, q.device)
    splits, blocks = 3, group_kv.shape[0]
    trace = mla_sm90.trace_buffer(blocks, splits, 2, "cuda")
    results = []
    for traced in (None, trace):
        out = torch.empty(2, 128, 512, device="cuda")
        lse = torch.empty(2, 128, device="cuda")
        mla_sm90.launch(q, keys, table, lens, SCALE, group_kv, group_heads, splits, out, lse, trace=traced,
                        q_by_tma=True)
        results.append((out, lse))
    torch.testing.assert_close(results[0][0], results[1][0], atol=0, rtol=0)
    torch.testing.assert_close(results[0][1], results[1][1], atol=0, rtol=0)
    rows = mla_sm90.trace_rows(trace, blocks, splits, 2)
    assert {(r["head_block"], r["split"], r["sequence"]) for r in rows} == {
        (g, s, b) for g in range(blocks) for s in range(splits) for b in range(2)}
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for r in rows:
        clocks = [r[k] for k in ("clock_start", "clock_q_ready", "clock_q_arrived", "clock_first_tile",
                                 "clock_loop_end", "clock_stored")]
        assert clocks == sorted(clocks) and clocks[0] > 0, r
        assert r["clock_values_stored"] >= r["clock_loop_end"], r
        assert 0 < r["time_start"] <= r["time_stored"] and 0 <= r["sm"] < sms, r


def test_cuda_graph_replays_with_new_lengths():
    """Captured once, replayed after the sequences grew: lengths and pages are read on the device."""
    q, keys, table, lens = make_case([3200, 6500], 128, 64)  # pages for the grown lengths
    lens.copy_(torch.tensor([3000, 6000], dtype=torch.int32))
    groups = da.HeadGroups.from_group_size(128, 128)
    out = torch.empty(2, 128, 512, device="cuda")
    lse = torch.empty(2, 128, device="cuda")

    def call():
        da.paged_decode_attention(q, keys, None, table, lens, SCALE, groups, value_dim=512, max_length=8192,
                                  out=out, lse=lse)
    graph = capture_graph(call)
    lens.copy_(torch.tensor([3100, 6400], dtype=torch.int32))
    graph.replay()
    torch.cuda.synchronize()
    assert_matches(out, lse, *reference(q, keys, table, lens))


def _counters_zero(batch_blocks: int) -> bool:
    from helix_core.kernels.split_merge import merge_counters

    return bool((merge_counters(torch.device("cuda"), batch_blocks)[:batch_blocks] == 0).all())


@pytest.mark.parametrize("cooperative", [True, False])
@pytest.mark.parametrize("lengths, heads, page_size, splits", [
    ([131072], 128, 64, None),  # 1 x 128K: 66 splits, one row of a block a program
    ([0, 77, 5000, 20000], 128, 16, None),  # an empty sequence, short ones; several rows a program
    ([300, 64], 16, 32, 5),  # 16 heads padded to a block of 64: rows without a head are skipped
    ([4096, 129], 64, 8, 3),  # 8-key boxes, a forced split count
])
def test_fused_merge_matches_the_merge_kernel(cooperative, lengths, heads, page_size, splits):
    """The split kernel's own merge (a grid barrier per sequence and head block, then each program merges its
    rows) gives fp32 attention, as the merge kernel does, within a few ulps of it; launched twice in a row (the
    counters go back to 0) and without the cooperative launch too."""
    q, keys, table, lens = make_case(lengths, heads, page_size)
    groups = da.HeadGroups.from_group_size(heads, heads)
    group_kv, group_heads = groups.tables(64, q.device)
    n = splits or mla_sm90.choose_splits(len(lengths), groups, max(lengths), q.device)
    assert mla_sm90.fused_merge_counters(q.device, len(lengths), group_kv.shape[0], n) is not None
    ref_out, ref_lse = reference(q, keys, table, lens)
    for out_dtype in (torch.float32, torch.bfloat16):
        kernel_out = torch.empty(len(lengths), heads, 512, device="cuda", dtype=out_dtype)
        kernel_lse = torch.empty(len(lengths), heads, device="cuda")
        mla_sm90.launch(q, keys, table, lens, SCALE, group_kv, group_heads, n, kernel_out, kernel_lse,
                        q_by_tma=heads % 64 == 0, staged_store=True)
        for _ in range(2):
            out = torch.full_like(kernel_out, 7.0)
            lse = torch.full_like(kernel_lse, 7.0)
            mla_sm90.launch(q, keys, table, lens, SCALE, group_kv, group_heads, n, out, lse,
                            q_by_tma=heads % 64 == 0, staged_store=True, fused_merge=True, cooperative=cooperative)
            torch.cuda.synchronize()
            assert _counters_zero(len(lengths) * group_kv.shape[0])
            assert_matches(out, lse, ref_out, ref_lse)
            live = torch.isfinite(ref_lse)
            torch.testing.assert_close(out[live].float(), kernel_out[live].float(), atol=2e-6 if out_dtype ==
                                       torch.float32 else 1e-2, rtol=1e-5 if out_dtype == torch.float32 else 1e-2)
            torch.testing.assert_close(lse[live], kernel_lse[live], atol=1e-5, rtol=1e-6)


def test_fused_merge_in_a_cuda_graph_and_when_it_cannot_fuse(monkeypatch):
    """Captured (cooperatively) once and replayed after the sequences grew; and more programs than SMs
    (a forced split count) fall back to the merge kernel instead of a barrier that could wait for ever, as do
    bf16 partials (never run fused)."""
    q, keys, table, lens = make_case([3200, 6500], 128, 64)
    lens.copy_(torch.tensor([3000, 6000], dtype=torch.int32))
    groups = da.HeadGroups.from_group_size(128, 128)
    group_kv, group_heads = groups.tables(64, q.device)
    out = torch.empty(2, 128, 512, device="cuda")
    lse = torch.empty(2, 128, device="cuda")

    def call():
        mla_sm90.launch(q, keys, table, lens, SCALE, group_kv, group_heads, 8, out, lse, q_by_tma=True,
                        staged_store=True, fused_merge=True)
    graph = capture_graph(call)
    lens.copy_(torch.tensor([3100, 6400], dtype=torch.int32))
    for _ in range(3):
        graph.replay()
    torch.cuda.synchronize()
    assert _counters_zero(4)
    assert_matches(out, lse, *reference(q, keys, table, lens))

    sms = torch.cuda.get_device_properties(0).multi_processor_count
    too_many = sms // 2 + 1  # x 2 head blocks x 2 sequences > SMs
    assert mla_sm90.fused_merge_counters(q.device, 2, 2, too_many) is None
    merges = []
    real_merge = split_merge.launch_merge
    monkeypatch.setattr(split_merge, "launch_merge", lambda *a, **k: (merges.append(1), real_merge(*a, **k)))
    mla_sm90.launch(q, keys, table, lens, SCALE, group_kv, group_heads, too_many, out, lse, q_by_tma=True,
                    staged_store=True, fused_merge=True)
    torch.cuda.synchronize()
    assert merges == [1]
    assert_matches(out, lse, *reference(q, keys, table, lens))
    mla_sm90.launch(q, keys, table, lens, SCALE, group_kv, group_heads, 8, out, lse, q_by_tma=True,
                    staged_store=True, fused_merge=True, partials=torch.bfloat16)
    torch.cuda.synchronize()
    assert merges == [1, 1] and bool(torch.isfinite(out).all())
