"""Which calls the sm_90 Gluon MLA kernel takes (kernels/mla_sm90.py) and how a call that asks for it where
it cannot run fails. Its numbers are checked on a GPU (tests/test_mla_sm90_gpu.py); its sm_90 build in
tests/test_kernel_sm90.py."""
from __future__ import annotations

import pytest
import torch

from helix_core.kernels import decode_attention as da
from helix_core.kernels import decode_launch
from helix_core.kernels import mla_sm90


def pool(pages=4, page_size=64, kv_heads=1, dim=576, dtype=torch.bfloat16):
    return torch.zeros(pages, page_size, kv_heads, dim, dtype=dtype)


@pytest.mark.parametrize("page_size, rows", [(64, 64), (128, 64), (32, 32), (16, 16), (8, 8), (4, 0), (24, 0)])
def test_tma_boxes_are_whole_pages_of_swizzle_atoms(page_size, rows):
    assert mla_sm90.tma_box_rows(pool(page_size=page_size)) == rows


def test_no_tma_for_several_kv_heads_or_pages_apart():
    assert mla_sm90.tma_box_rows(pool(kv_heads=2)) == 0
    wide = torch.zeros(4, 64, 1, 640, dtype=torch.bfloat16)[..., :576]  # rows 640 apart: still one 2-D view
    assert mla_sm90.tma_box_rows(wide) == 64
    every_other = pool(pages=8)[::2]  # pages not adjacent
    assert mla_sm90.tma_box_rows(every_other) == 0


def test_only_absorbed_mla_in_16_bits_fits():
    bf16, fp16, fp32 = torch.bfloat16, torch.float16, torch.float32
    assert mla_sm90.shape_fits(576, 512, True, bf16, bf16)
    assert mla_sm90.shape_fits(576, 512, True, fp16, fp16)
    assert not mla_sm90.shape_fits(576, 512, True, fp32, fp32)
    assert not mla_sm90.shape_fits(576, 512, True, fp32, bf16)  # an fp32 query over a 16-bit cache
    assert not mla_sm90.shape_fits(576, 512, False, bf16, bf16)  # separate value pages
    assert not mla_sm90.shape_fits(128, 128, True, bf16, bf16)
    assert not mla_sm90.shape_fits(576, 256, True, bf16, bf16)


def test_cpu_tensors_keep_the_triton_kernel():
    q = torch.zeros(1, 128, 576, dtype=torch.bfloat16)
    assert not mla_sm90.usable(q, pool(), 512, True)
    assert not da.takes_sm90_mla(da.DecodeConfig(), q, pool(), 512, True)
    assert not da.takes_sm90_mla(da.DecodeConfig(sm90_mla=False), q, pool(), 512, True)


def test_asking_for_it_where_it_cannot_run_is_a_clear_error():
    q = torch.zeros(1, 128, 576, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match=r"sm90_mla=True\) needs absorbed MLA"):
        da.takes_sm90_mla(da.DecodeConfig(sm90_mla=True), q, pool(), 512, True)
    table = torch.zeros(1, 1, dtype=torch.int32)
    lengths = torch.ones(1, dtype=torch.int32)
    with pytest.raises(ValueError, match="sm90_mla=True"):
        da.paged_decode_attention(q, pool(), None, table, lengths, 0.1, 128, value_dim=512,
                                  config=da.DecodeConfig(sm90_mla=True))


def test_asking_for_it_with_a_triton_tile_is_a_clear_error():
    q = torch.zeros(1, 128, 576, dtype=torch.bfloat16)
    for field in ("block_n", "num_warps", "dv_parts"):
        with pytest.raises(ValueError, match="takes num_splits only"):
            da.takes_sm90_mla(da.DecodeConfig(sm90_mla=True, **{field: 2}), q, pool(), 512, True)
    # num_splits is its own field too: no error for it (then the place is checked, and a CPU tensor fails that)
    with pytest.raises(ValueError, match="needs absorbed MLA"):
        da.takes_sm90_mla(da.DecodeConfig(sm90_mla=True, num_splits=4), q, pool(), 512, True)


def test_a_triton_tile_in_the_config_means_the_triton_kernel():
    assert not da.DecodeConfig().triton_tile_set()
    # the merge knobs leave the choice to sm90_mla (the Gluon kernel then merges by the separate kernel)
    assert not da.DecodeConfig(num_splits=8, fuse_merge=True, pdl=False).triton_tile_set()
    for field in ("block_n", "block_h", "num_warps", "num_stages", "dv_parts"):
        assert da.DecodeConfig(**{field: 2}).triton_tile_set(), field
    assert da.DecodeConfig(probs_via_memory=True).triton_tile_set()


@pytest.mark.parametrize("batch, keys", [(1, 4096), (1, 32768), (4, 131072), (4, 1 << 20), (64, 2048)])
def test_splits_fill_one_wave_without_short_splits(batch, keys):
    sms = 132
    splits = decode_launch.choose_num_splits(batch, 2, keys, mla_sm90.BLOCK_N, sms, waves=1)
    assert batch * 2 * splits <= max(sms, batch * 2)  # one program a SM at most (more only for a huge batch)
    tiles = -(-keys // mla_sm90.BLOCK_N)
    assert splits == 1 or tiles // splits >= decode_launch.MIN_TILES_PER_SPLIT


@pytest.mark.parametrize("batch, keys", [(1, 4096), (1, 32768), (1, 131072), (4, 131072), (4, 1 << 20), (64, 2048),
                                         (66, 65536), (200, 1 << 20)])
@pytest.mark.parametrize("head_blocks", [1, 2])
def test_the_fused_merge_can_take_every_default_launch_that_splits(batch, keys, head_blocks):
    """The fused merge's grid barrier needs all of a launch's programs resident at once: the default split count,
    wherever it splits at all, keeps the grid within one program a SM; and the merge's tile (MERGE_P splits, a
    power of two >= 16) covers every split without doubling past what it needs."""
    sms = 132
    splits = decode_launch.choose_num_splits(batch, head_blocks, keys, mla_sm90.BLOCK_N, sms, waves=1)
    if splits > 1:
        assert batch * head_blocks * splits <= sms
        width = mla_sm90.merge_width(splits)
        assert width >= splits and width & (width - 1) == 0 and width >= 16
        assert width == 16 or width < 2 * splits


def test_a_cpu_cache_is_not_taken():
    assert not mla_sm90.takes_cache(pool(), 512)


@pytest.mark.parametrize("shape, dtype", [((12, 16), torch.int32), ((11, 16), torch.int64), ((12, 8), torch.int64),
                                          ((12,), torch.int64)])
def test_a_trace_of_the_wrong_shape_or_type_is_refused_before_launch(shape, dtype):
    """A traced launch of 2 head blocks x 3 splits x 2 sequences needs int64 rows of 16 for 12 programs."""
    pytest.importorskip("triton.experimental.gluon")
    q = torch.zeros(2, 128, 576, dtype=torch.bfloat16)
    group_kv = torch.zeros(2, dtype=torch.int32)
    with pytest.raises(ValueError, match="trace must be int64"):
        mla_sm90.launch(q, pool(), torch.zeros(2, 4, dtype=torch.int32), torch.ones(2, dtype=torch.int32), 0.1,
                        group_kv, torch.zeros(2, 64, dtype=torch.int32), 3, torch.zeros(2, 128, 512),
                        torch.zeros(2, 128), trace=torch.zeros(shape, dtype=dtype))


def test_trace_rows_name_each_program_as_the_kernel_numbers_them():
    """The kernel writes program (head block g, split s, sequence b) at row (b * splits + s) * blocks + g."""
    pytest.importorskip("triton.experimental.gluon")
    blocks, splits, batch = 2, 3, 2
    trace = mla_sm90.trace_buffer(blocks, splits, batch, "cpu")
    assert trace.shape == (12, 16) and trace.dtype == torch.int64 and not trace.any()
    for b in range(batch):
        for s in range(splits):
            for g in range(blocks):
                trace[(b * splits + s) * blocks + g, 9] = 100 * b + 10 * s + g  # the "sm" slot
    rows = mla_sm90.trace_rows(trace, blocks, splits, batch)
    assert [r["sm"] for r in rows] == [100 * r["sequence"] + 10 * r["split"] + r["head_block"] for r in rows]
    assert len({(r["head_block"], r["split"], r["sequence"]) for r in rows}) == 12


def test_queries_go_by_tma_only_from_a_layout_tma_can_address():
    """Rows of 576 values 16-byte aligned, sequences a whole number of rows apart; otherwise None (registers)."""
    pytest.importorskip("triton.experimental.gluon")
    q = torch.zeros(3, 128, 576, dtype=torch.bfloat16)
    assert mla_sm90.query_descriptor(q) is not None
    assert mla_sm90.query_descriptor(torch.zeros(3, 130, 576, dtype=torch.bfloat16)[:, 1:129]) is not None
    assert mla_sm90.query_descriptor(torch.zeros(3, 128, 580, dtype=torch.bfloat16)[..., :576]) is None  # 8 B off
    odd = torch.zeros(3 * 128 * 576 + 576 * 64, dtype=torch.bfloat16).as_strided((3, 128, 576), (128 * 576 + 576 // 2, 576, 1))
    assert mla_sm90.query_descriptor(odd) is None  # sequences half a row apart
    assert mla_sm90.query_descriptor(torch.zeros(1, 128, 576, dtype=torch.bfloat16)) is not None


def test_only_blocks_of_consecutive_heads_count_as_whole_runs():
    assert da.HeadGroups.from_group_size(128, 128).whole_runs(64)
    assert da.HeadGroups([h // 64 for h in range(128)]).whole_runs(64)  # two KV heads, 64 consecutive each
    assert not da.HeadGroups.from_group_size(16, 16).whole_runs(64)  # a block padded with 48 empty rows
    assert not da.HeadGroups([0, 1] * 64).whole_runs(64)  # every other head


def test_trace_rows_and_the_timelines_fused_merge_stages(monkeypatch):
    """The kernel's clock readings as scripts/gpu_gluon_mla.py's timeline reads them: every slot fits a program's
    row, and the fused merge's barrier stages come from its three %globaltimer readings (absent without it)."""
    from pathlib import Path

    from helix_core.kernels import kernel_module

    pytest.importorskip("triton.experimental.gluon")
    slots = kernel_module("_gluon_mla").TRACE_SLOTS
    assert len(slots) <= kernel_module("_gluon_mla").TRACE_ROW.value
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "scripts"))
    import gpu_gluon_mla

    trace = torch.zeros(2 * 2, 16, dtype=torch.int64)  # 2 head blocks x 2 splits, one sequence
    for program in range(4):
        row = dict(time_start=1000 + program, clock_start=0, clock_stored=2000, time_stored=2000 + program,
                   time_values_stored=1500, clock_first_tile=100, clock_loop_end=1100, clock_values_stored=1900,
                   clock_q_ready=50, clock_q_arrived=60, time_arrived=2000 + 1000 * program,
                   time_released=6000 + program, time_merged=9000 + 2 * program)
        for name, value in row.items():
            trace[program, slots.index(name)] = value
    rows = mla_sm90.trace_rows(trace, 2, 2, 1)
    assert [(r["head_block"], r["split"]) for r in rows] == [(0, 0), (1, 0), (0, 1), (1, 1)]
    stages, clock = gpu_gluon_mla._stages(rows, 128, 2)  # 64 keys a split: one tile each
    assert clock == pytest.approx(2.0)  # 2000 cycles in 1000 ns
    assert stages["waited at the barrier"] == [(6000 + p - 2000 - 1000 * p) / 1e3 for p in range(4)]
    assert stages["merged its rows"] == [(9000 + 2 * p - 6000 - p) / 1e3 for p in range(4)]
    assert stages["barrier passed after start"] == [(6000 + p - 1000) / 1e3 for p in range(4)]
    trace[:, slots.index("time_arrived"):] = 0  # no fused merge: no barrier stages
    plain, _ = gpu_gluon_mla._stages(mla_sm90.trace_rows(trace, 2, 2, 1), 128, 2)
    assert plain["waited at the barrier"] == plain["merged its rows"] == []
