"""The KVP exchange as a sum over zero-padded slots: one small all-reduce instead of an all-to-all.

At decode batch sizes the exchange moves a few KiB per layer, and NCCL's all-to-all costs about
15 us between two H200s inside a CUDA graph, mostly latency. The one-shot symmetric-memory
all-reduce costs about 7 us. It can carry the exchange exactly:

- every rank owns one column of a persistent [rows, kvp, Hq, Dv + 1] fp32 buffer: the attention
  kernel writes its partial output and LSE for all its query heads there, and the other columns
  stay zero (nothing else ever writes them);
- the sum over the KVP group is then an all-gather: column j of the result is rank j's partials,
  bitwise (x + 0 = x in floating point, in any order);
- each rank keeps its own slice of the query heads from every column and merges as usual.

Each rank reads kvp times what an all-to-all would deliver, so it is used only for exchanges up
to `GATHER_MAX_BYTES` (larger ones keep the all-to-all); the choice is made from the shape, so
every rank of the group makes the same one.
"""
from __future__ import annotations

import torch

GATHER_MAX_BYTES = 1 << 20  # per exchange (rows x kvp x Hq x (Dv + 1) x 4 B); measured in docs/benchmarks.md


class GatherExchange:
    """One rank's persistent slot buffer for exchanges of up to `max_rows` query rows."""

    def __init__(self, comm, kvp: int, kvp_index: int, heads: int, out_heads: int, value_dim: int,
                 max_rows: int, device: torch.device, max_bytes: int = GATHER_MAX_BYTES):
        self.comm, self.kvp, self.index = comm, kvp, kvp_index
        self.heads, self.out_heads, self.value_dim = heads, out_heads, value_dim
        self.row_bytes = kvp * heads * (value_dim + 1) * 4
        self.max_rows = min(int(max_rows), max(0, max_bytes // self.row_bytes))
        self.slots = torch.zeros(self.max_rows, kvp, heads, value_dim + 1, dtype=torch.float32, device=device)

    @property
    def numel(self) -> int:
        """The largest sum one exchange asks of the group (sizes the symmetric buffer)."""
        return self.slots.numel()

    def fits(self, stop_row: int) -> bool:
        """Rows up to `stop_row` have slots (a static choice per shape: the same on every rank)."""
        return 0 < stop_row <= self.max_rows

    def send_view(self, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(out [T, Hq, Dv], lse [T, Hq]): where this rank's partials of rows lo:hi go."""
        mine = self.slots[lo:hi, self.index]
        return mine[..., : self.value_dim], mine[..., self.value_dim]

    def exchange(self, lo: int, hi: int, every_head: bool = False) -> torch.Tensor:
        """Every rank's partials for this rank's query heads: recv [kvp, T, out_heads, Dv + 1]
        (the layout of the all-to-all's receive buffer, as a view); every_head: for all Hq heads of
        the group (a rank that projects them all itself, see OutProjection)."""
        gathered = self.comm.sum_of(self.slots[lo:hi], "kvp")  # [T, kvp, Hq, Dv + 1]
        if every_head:
            return gathered.transpose(0, 1)
        heads = slice(self.index * self.out_heads, (self.index + 1) * self.out_heads)
        return gathered[:, :, heads].transpose(0, 1)
