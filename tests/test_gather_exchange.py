"""The KVP exchange as a sum over zero-padded slots must deliver exactly what the all-to-all does.

Reference: torch.distributed's all_to_all_single over the same partials (gloo, 4 CPU ranks in two
KVP groups of two, the layout of helix kvp=2 x tpa=2), compared bitwise, including LSEs of rows
with no local keys (-inf) and rows past the slot buffer (which must say they do not fit)."""
import torch

from gloo_ranks import run_gloo_ranks
from helix_core.comm import Comm
from helix_core.gather_exchange import GatherExchange
from helix_core.plan import Plan

HEADS, DV, ROWS = 8, 5, 6  # local query heads per rank (4 go to each KVP peer), value dim, slot rows


def _partials(rank: int, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + rank)
    out = torch.randn(rows, HEADS, DV, generator=gen)
    lse = torch.randn(rows, HEADS, generator=gen)
    lse[0, rank % HEADS] = float("-inf")  # a head of a row that has no keys on this rank
    out[0, rank % HEADS] = 0.0
    return out, lse


def _worker(rank: int) -> None:
    plan = Plan.parse("helix:kvp=2,tpa=2")
    comm = Comm(plan, rank, torch.device("cpu"))
    kvp = comm.size("kvp")
    index = comm.index_in("kvp")
    gather = GatherExchange(comm, kvp, index, HEADS, HEADS // kvp, DV, max_rows=64,
                            device=torch.device("cpu"), max_bytes=ROWS * kvp * HEADS * (DV + 1) * 4)
    assert gather.max_rows == ROWS and gather.fits(ROWS) and not gather.fits(ROWS + 1)
    for lo, hi in ((0, 2), (2, ROWS)):  # two HOP-B pieces, then the same rows again (reuse)
        for _ in range(2):
            out, lse = _partials(rank, hi - lo)
            send_out, send_lse = gather.send_view(lo, hi)
            send_out.copy_(out)
            send_lse.copy_(lse)
            before = gather.slots.clone()
            recv = gather.exchange(lo, hi)
            assert torch.equal(gather.slots, before), "the sum must leave the slots as they were"
            # the reference: the all-to-all of the packed partials (piece j of the heads to peer j)
            packed = torch.cat([out, lse.unsqueeze(-1)], dim=-1)
            send = packed.view(hi - lo, kvp, HEADS // kvp, DV + 1).transpose(0, 1).contiguous()
            expect = torch.empty_like(send)
            comm.all_to_all(expect, send, "kvp")
            assert recv.shape == expect.shape
            assert torch.equal(recv, expect), (rank, lo, hi, (recv - expect).abs().max())
            # other ranks' columns were never written: still zero
            others = [j for j in range(kvp) if j != index]
            assert not gather.slots[:, others].any()


def test_gather_exchange_delivers_the_all_to_all_bitwise():
    run_gloo_ranks(_worker, 4)


def test_single_rank_sum_is_a_copy():
    plan = Plan.helix(1, 1)
    comm = Comm(plan, 0, torch.device("cpu"))
    x = torch.arange(6.0).view(2, 3)
    y = comm.sum_of(x, "kvp")
    assert torch.equal(y, x) and y.data_ptr() != x.data_ptr()
