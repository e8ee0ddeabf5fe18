"""scripts/partials_rounding.py, the model behind keeping the MLA kernel's split partials in fp32: its key ranges
are the kernel's (whole tiles, contiguous, covering every key), and its merge of unrounded partials is attention
over all keys at once (torch's softmax over the whole row)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

_spec = importlib.util.spec_from_file_location(
    "partials_rounding", Path(__file__).resolve().parents[1] / "scripts" / "partials_rounding.py")
partials_rounding = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(partials_rounding)


@pytest.mark.parametrize("length,splits", [(1000, 7), (4096, 64), (65, 3), (64, 5)])
def test_split_bounds_cover_the_keys_in_whole_tiles(length, splits):
    bounds = partials_rounding.split_bounds(length, splits)
    assert bounds[0][0] == 0 and bounds[-1][1] == length and len(bounds) <= splits
    assert all(hi == next_lo for (_, hi), (next_lo, _) in zip(bounds, bounds[1:]))
    assert all(lo % partials_rounding.TILE == 0 and hi > lo for lo, hi in bounds)


def test_merge_of_fp32_partials_is_attention_over_all_keys():
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(partials_rounding.HEADS, partials_rounding.KEY_DIM, generator=gen) * 3
    keys = torch.randn(700, partials_rounding.KEY_DIM, generator=gen)
    exact = torch.softmax(q @ keys.T * partials_rounding.SCALE, 1) @ keys[:, :partials_rounding.VALUE_DIM]
    bounds = partials_rounding.split_bounds(700, 5)
    assert len(bounds) == 4  # 140 keys a split round up to 192: the fifth split has none, as in the kernel
    torch.testing.assert_close(partials_rounding.merged(q, keys, bounds, torch.float32), exact,
                               rtol=1e-5, atol=1e-5)
    rounded = partials_rounding.merged(q, keys, bounds, torch.bfloat16)
    assert not torch.equal(rounded, exact)
    torch.testing.assert_close(rounded, exact, rtol=1e-2, atol=1e-2)
