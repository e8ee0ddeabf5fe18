"""Launch-config choice of the decode kernel and the fast path's graph per context class.

No kernel runs here: these are the host-side decisions (tile sizes, splits, which captured graph).
"""
from types import SimpleNamespace

import pytest

import torch

from helix_core.fast_decode import DecodeRunner
from helix_core.kernels.decode_launch import DecodeConfig, LONG_MLA_KEYS, long_context_keys, resolve_launch
from helix_core.kernels.head_groups import HeadGroups
from helix_core.kv_cache import StagePlacement

CPU = torch.device("cpu")


def test_only_absorbed_mla_shapes_change_config_with_the_context():
    assert long_context_keys(576, 512, 64, torch.bfloat16) == LONG_MLA_KEYS  # 64 heads a latent (TP-sharded)
    # DeepSeek-V3's 128 heads over the latent: one config at every length, so one graph
    assert long_context_keys(576, 512, 128, torch.bfloat16) is None
    assert long_context_keys(576, 512, 128, torch.bfloat16, values_are_keys=False) == LONG_MLA_KEYS
    assert long_context_keys(576, 512, 16, torch.bfloat16) is None  # few heads a latent: no 64-head tiles
    assert long_context_keys(576, 512, 64, torch.float32) is None  # fp32 math keeps its own tiles
    assert long_context_keys(128, 128, 32, torch.bfloat16) is None  # GQA / MQA


def test_mla_tiles_switch_at_the_long_context_key_count():
    groups = HeadGroups.from_group_size(64, 64)
    short = resolve_launch(576, 512, groups, 4, LONG_MLA_KEYS - 1, False, DecodeConfig(), CPU)
    long = resolve_launch(576, 512, groups, 4, LONG_MLA_KEYS, False, DecodeConfig(), CPU)
    assert short[1] == 16 and short[5] == 1 and not short.probs_via_memory
    assert long[1] == 64 and long[2] == 8 and long[5] == 1
    # the long tile passes P through memory (each score computed once), three stages, the block table ahead
    assert (long.probs_via_memory, long.num_stages, long.pages_ahead) == (True, 3, True)
    # separate value pages keep P in registers; fp32 math cannot take the scratch path
    assert not resolve_launch(576, 512, groups, 4, LONG_MLA_KEYS, False, DecodeConfig(), CPU, False).probs_via_memory
    with pytest.raises(ValueError, match="probs_via_memory needs a 16-bit"):
        resolve_launch(576, 512, groups, 4, LONG_MLA_KEYS, True, DecodeConfig(probs_via_memory=True), CPU)
    # the long-context default takes at most one program per SM (8 SMs off the GPU): 1 row x 1 head
    # block x 8 splits, 3 rows x 1 x 2 (not 3: 9 programs would leave a second wave of 1); 64-head
    # blocks asked for below it keep about four a SM (32 splits)
    assert resolve_launch(576, 512, groups, 1, LONG_MLA_KEYS, False, DecodeConfig(), CPU)[4] == 8
    assert resolve_launch(576, 512, groups, 3, LONG_MLA_KEYS, False, DecodeConfig(), CPU)[4] == 2
    assert resolve_launch(576, 512, groups, 1, LONG_MLA_KEYS - 1, False, DecodeConfig(block_h=64), CPU)[4] == 32
    forced = resolve_launch(576, 512, groups, 4, LONG_MLA_KEYS, False, DecodeConfig(block_h=32, dv_parts=1), CPU)
    assert forced[1] == 32 and forced[5] == 1  # an explicit config wins


def test_many_heads_a_latent_take_value_parts_at_every_length():
    groups = HeadGroups.from_group_size(128, 128)
    for length in (100, LONG_MLA_KEYS - 1, LONG_MLA_KEYS, 10 ** 6):
        block_n, block_h, warps, stages, splits, parts, ahead, pdl, via_memory = resolve_launch(
            576, 512, groups, 1, length, False, DecodeConfig(), CPU)
        assert (block_n, block_h, warps, parts, ahead, pdl, via_memory) == (32, 128, 8, 2, False, False, False)
        # one wave: 2 programs a split on 8 SMs, at most 4 splits; short rows keep >= 4 tiles a split
        assert splits == min(4, max(1, -(-length // 32) // 4))
    # 96 heads: still one 128-head block (32 rows masked); 3 rows x 2 parts: one split
    assert resolve_launch(576, 512, HeadGroups.from_group_size(96, 96), 3, 10 ** 5, False, DecodeConfig(), CPU
                          )[1:6:4] == (128, 2)


def test_value_parts_only_where_values_are_the_keys():
    # separate value pages of the same widths: the 64-head tiles from the long-context count, one part
    groups = HeadGroups.from_group_size(128, 128)
    assert resolve_launch(576, 512, groups, 1, LONG_MLA_KEYS, False, DecodeConfig(), CPU, False)[1:6:4] == (64, 1)
    assert resolve_launch(576, 512, groups, 1, 100, False, DecodeConfig(), CPU, False)[1:6:4] == (16, 1)
    with pytest.raises(ValueError, match="dv_parts=2"):
        resolve_launch(576, 512, groups, 1, LONG_MLA_KEYS, False, DecodeConfig(dv_parts=2), CPU, False)
    with pytest.raises(ValueError, match="dv_parts=2"):  # values not a power of two wide
        resolve_launch(576, 480, groups, 1, 100, False, DecodeConfig(dv_parts=2), CPU)
    # such values keep one part, and the graph hint knows the config then changes with the length
    assert long_context_keys(576, 480, 128, torch.bfloat16) == LONG_MLA_KEYS
    assert resolve_launch(576, 480, groups, 1, LONG_MLA_KEYS, False, DecodeConfig(), CPU)[1:6:4] == (64, 1)


def test_gqa_reads_the_block_table_a_tile_ahead_with_two_programs_a_sm():
    groups = HeadGroups.from_group_size(32, 4)  # llama3-8b: 8 KV heads, a 16-head block each
    launch = resolve_launch(128, 128, groups, 1, 131072, False, DecodeConfig(), CPU)
    # 8 SMs off the GPU: two programs a SM, rounded down (16 // 8 head blocks)
    assert launch == (64, 16, 4, 3, 2, 1, True, True, False)  # PDL wanted for GQA; P in registers
    assert resolve_launch(128, 128, groups, 3, 131072, False, DecodeConfig(), CPU).num_splits == 1  # 16 // 24
    # fp32 math keeps its tiles and the in-tile block-table load; MLA is not GQA-sized; explicit values win
    assert resolve_launch(128, 128, groups, 1, 131072, True, DecodeConfig(), CPU).pages_ahead is False
    assert resolve_launch(576, 512, HeadGroups.from_group_size(16, 16), 1, 4096, False, DecodeConfig(), CPU
                          ).pages_ahead is False
    assert resolve_launch(128, 128, groups, 1, 131072, False, DecodeConfig(pages_ahead=False, num_stages=2), CPU
                          )[3:7:3] == (2, False)


def _runner(long_keys, lengths, kvp=2, stage=16, bounded_gather=False):
    runner = object.__new__(DecodeRunner)
    runner.long_keys, runner.bounded_gather = long_keys, bounded_gather
    cache = SimpleNamespace(placement=StagePlacement(kvp, stage), page_size=8,
                            sequences={i: SimpleNamespace(length=n) for i, n in enumerate(lengths)})
    runner.engine = SimpleNamespace(cache=cache)
    return runner


def test_graph_hint_follows_the_longest_sequence_local_keys():
    threshold = 1000
    assert _runner(None, [10 ** 6]).length_hint([0]) is None  # no length-dependent config: one graph
    # 2 KVP ranks, stages of 16: a rank holds at most ceil(L / 32) * 16 of a sequence's L keys
    assert _runner(threshold, [1000, 1984]).length_hint([0, 1]) == threshold - 1  # 62 stages -> 992 local
    assert _runner(threshold, [1000, 1985]).length_hint([0, 1]) is None  # 63 stages: 1008 local keys possible
    assert _runner(threshold, [1985]).length_hint([0]) is None
    assert _runner(threshold, [1985, 5]).length_hint([1]) == threshold - 1  # only the step's sequences count


def test_torch_path_gathers_up_to_a_power_of_two_bound():
    """The torch path's gather bound covers every local key count and grows in powers of two."""
    def hint(lengths, kvp=2):
        return _runner(None, lengths, kvp=kvp, bounded_gather=True).length_hint(list(range(len(lengths))))
    assert hint([1]) == 16  # one stage of 16 keys
    assert hint([33]) == 32  # ceil(33 / 32) stages of 16 on a rank
    assert hint([65]) == 64 and hint([100, 3]) == 64 and hint([129]) == 128
    assert hint([100], kvp=1) == 128
    placement = StagePlacement(2, 16)
    for length in range(1, 400):  # the bound holds for every start rank
        assert max(placement.local_count(length, start, rank) for start in (0, 1) for rank in (0, 1)) <= hint([length])


def test_wide_heads_take_three_stages_and_two_programs_a_sm():
    """MHA 16 x 512 (the headslice reference example's helix rank) keeps 32-key tiles and its in-tile
    block-table read (measured faster for it), with three stages and two programs a SM."""
    groups = HeadGroups.from_group_size(16, 1)
    launch = resolve_launch(512, 512, groups, 8, 5000, False, DecodeConfig(), CPU, values_are_keys=False)
    assert launch[:4] == (32, 16, 4, 3) and not launch.pages_ahead and launch.pdl
    assert launch.num_splits == 1  # 8 SMs off the GPU: 16 programs over 8 rows x 1 head block, rounded down
    fp32 = resolve_launch(512, 512, groups, 8, 5000, True, DecodeConfig(), CPU, False)
    assert fp32.num_stages == 2 and not fp32.pages_ahead  # fp32 math keeps its tiles
