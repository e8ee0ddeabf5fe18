"""The NCCL-window all-reduce's staging (copy in, sum of the window slice, copy out) on the CPU, where the
window is an ordinary buffer summed by gloo: every call must return the sum worked out here, in place or
into `out` (leaving the input as it was), for tensors of several sizes through the one window; what it does
not take must say so. The window's NCCL registration runs only on GPUs (scripts/gpu_next.sh, through
helix_core.bench.collective_probe and `--all-reduce nccl-window`)."""
import pytest
import torch
import torch.distributed as dist

from gloo_ranks import run_gloo_ranks
from helix_core.comm import Comm
from helix_core.plan import Plan
from helix_core.window_all_reduce import WindowAllReduce

RANKS = 2


def _values(rank: int, shape, dtype) -> torch.Tensor:
    gen = torch.Generator().manual_seed(10 + rank)
    return torch.randint(-50, 50, shape, generator=gen).to(dtype)  # small integers: exact sums in any order


def _worker(rank: int) -> None:
    for dtype in (torch.float32, torch.bfloat16):
        reducer = WindowAllReduce(dist.group.WORLD, 64, dtype, torch.device("cpu"))
        for shape in ((4, 16), (3,), (64,)):  # sizes up to the window's, one window reused
            expect = sum(_values(r, shape, torch.float32) for r in range(RANKS)).to(dtype)
            mine = _values(rank, shape, dtype)
            assert reducer.handles(mine)
            same = reducer(mine.clone())
            assert same.shape == shape and torch.equal(same, expect), (dtype, shape)
            out = torch.full(shape, 7.0, dtype=dtype)
            kept = mine.clone()
            assert reducer(kept, out=out) is out
            assert torch.equal(out, expect) and torch.equal(kept, mine), "out= must leave the input as it was"
        assert not reducer.handles(torch.zeros(65, dtype=dtype))  # larger than the window
        assert not reducer.handles(torch.zeros(8, 8, dtype=dtype).t())  # not contiguous
        other = torch.float16 if dtype == torch.float32 else torch.float32
        assert not reducer.handles(torch.zeros(8, dtype=other))


def test_window_staging_sums_exactly_in_place_and_into_out():
    run_gloo_ranks(_worker, RANKS)


def test_window_dtypes_and_single_rank():
    with pytest.raises(ValueError, match="supports"):
        WindowAllReduce(None, 8, torch.int32, torch.device("cpu"))
    comm = Comm(Plan.helix(1, 1), 0, torch.device("cpu"))
    assert comm.enable_window_all_reduce(64, torch.bfloat16) == "none (one rank)"
