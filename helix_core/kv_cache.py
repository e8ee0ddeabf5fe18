"""Paged KV cache of one rank, and the staged round-robin placement of tokens over KVP ranks.

Placement: token position p of a sequence lies in stage t = p // stage_size, owned by KVP rank
(start + t) % KVP, where `start` is the sequence's own first rank. So every rank's share of a
sequence stays within one stage of the others, and short sequences spread over all ranks.
Page size (allocation granularity) is independent of the stage size.

Page accounting is replicated: every rank tracks the pages of every KVP rank from the same
sequence metadata, so a request that would not fit is refused identically everywhere, before
any collective starts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


class KVCapacityError(RuntimeError):
    """A sequence's KV would not fit in the pages left on some KVP rank."""


@dataclass(frozen=True)
class StagePlacement:
    kvp: int
    stage_size: int

    def owner(self, positions: torch.Tensor, start: int) -> torch.Tensor:
        return (start + positions // self.stage_size) % self.kvp

    def local_index(self, positions: torch.Tensor) -> torch.Tensor:
        """Index of each position inside its owner's shard of the sequence."""
        stage = positions // self.stage_size
        return (stage // self.kvp) * self.stage_size + positions % self.stage_size

    def local_count(self, length: int, start: int, kvp_rank: int) -> int:
        """How many of the first `length` tokens of a sequence lie on `kvp_rank`."""
        full_stages, rest = divmod(length, self.stage_size)
        first = (kvp_rank - start) % self.kvp  # first stage this rank owns
        if full_stages <= first:
            owned_full = 0
        else:
            owned_full = (full_stages - first + self.kvp - 1) // self.kvp
        partial = rest if rest and (start + full_stages) % self.kvp == kvp_rank else 0
        return owned_full * self.stage_size + partial

    def max_local_count(self, length: int) -> int:
        """A bound of local_count over every start and rank: whole stages, dealt round robin."""
        return -(-length // (self.kvp * self.stage_size)) * self.stage_size

    def global_positions(self, count: int, start: int, kvp_rank: int, device=None) -> torch.Tensor:
        """Global positions of the first `count` tokens held by `kvp_rank` (for causal masks)."""
        local = torch.arange(count, device=device)
        first = (kvp_rank - start) % self.kvp
        stage = (local // self.stage_size) * self.kvp + first
        return stage * self.stage_size + local % self.stage_size


@dataclass
class SequenceShard:
    start_rank: int
    length: int = 0  # global tokens of the sequence in the cache
    pages: list[int] = field(default_factory=list)  # this rank's pages, in order


class PagedKVCache:
    """One rank's pages: K (and V, unless values are a view of K as in MLA) for every layer."""

    def __init__(self, *, num_layers: int, num_pages: int, page_size: int, kv_heads: int, key_dim: int,
                 value_dim: int | None, placement: StagePlacement, kvp_rank: int,
                 dtype: torch.dtype, device: torch.device):
        self.page_size = page_size
        self.num_pages = num_pages
        self.placement = placement
        self.kvp_rank = kvp_rank
        # one extra page past the pool: padded rows of a static decode batch write there
        shape = (num_layers, num_pages + 1, page_size, kv_heads)
        self.scratch_page = num_pages
        self.keys = torch.zeros(*shape, key_dim, dtype=dtype, device=device)
        self.values = None if value_dim is None else torch.zeros(*shape, value_dim, dtype=dtype, device=device)
        self.sequences: dict[int, SequenceShard] = {}
        self._free_pages = list(range(num_pages - 1, -1, -1))
        # pages every KVP rank holds, tracked identically on all ranks
        self._pages_used = [0] * placement.kvp

    # ---- accounting -------------------------------------------------------------------------
    def free_pages(self, kvp_rank: int | None = None) -> int:
        rank = self.kvp_rank if kvp_rank is None else kvp_rank
        return self.num_pages - self._pages_used[rank]

    def pages_used_per_rank(self) -> list[int]:
        return list(self._pages_used)

    def _pages_for(self, length: int, start: int, kvp_rank: int) -> int:
        count = self.placement.local_count(length, start, kvp_rank)
        return -(-count // self.page_size)

    def extra_pages(self, seq_id: int, new_length: int, start: int | None = None) -> list[int]:
        """Pages each KVP rank would need beyond what `seq_id` holds to reach `new_length` tokens."""
        seq = self.sequences.get(seq_id)
        start = seq.start_rank if seq else start
        old = seq.length if seq else 0
        return [
            self._pages_for(new_length, start, r) - self._pages_for(old, start, r)
            for r in range(self.placement.kvp)
        ]

    def check_fits(self, growth: dict[int, int], starts: dict[int, int]) -> None:
        """Raise KVCapacityError if growing each sequence to its new length overflows any KVP rank."""
        need = [0] * self.placement.kvp
        for seq_id, new_length in growth.items():
            for r, extra in enumerate(self.extra_pages(seq_id, new_length, starts.get(seq_id))):
                need[r] += extra
        for r, extra in enumerate(need):
            if extra > self.free_pages(r):
                raise KVCapacityError(
                    f"KV cache full on KVP rank {r}: needs {extra} more pages of {self.page_size} tokens, "
                    f"{self.free_pages(r)} free"
                )

    def longest_length(self, starts: list[int]) -> int:
        """The most tokens each of these new sequences (one per start rank) can all reach together
        in the free pages: the capacity a long-context request is admitted against."""
        def fits(length: int) -> bool:
            return all(sum(self._pages_for(length, s, r) for s in starts) <= self.free_pages(r)
                       for r in range(self.placement.kvp))

        low, high = 0, self.num_pages * self.page_size * self.placement.kvp + 1  # fits(low), not fits(high)
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if fits(middle) else (low, middle)
        return low

    # ---- sequences --------------------------------------------------------------------------
    def add_sequence(self, seq_id: int, start_rank: int) -> None:
        if seq_id in self.sequences:
            raise ValueError(f"sequence {seq_id} already exists")
        self.sequences[seq_id] = SequenceShard(start_rank)

    def grow(self, seq_id: int, new_length: int) -> None:
        """Reserve pages so the sequence can hold `new_length` tokens (call check_fits first)."""
        seq = self.sequences[seq_id]
        for r, extra in enumerate(self.extra_pages(seq_id, new_length)):
            self._pages_used[r] += extra
            if r == self.kvp_rank:
                for _ in range(extra):
                    seq.pages.append(self._free_pages.pop())
        seq.length = new_length

    def free(self, seq_id: int) -> None:
        seq = self.sequences.pop(seq_id, None)
        if seq is None:
            return
        for r in range(self.placement.kvp):
            self._pages_used[r] -= self._pages_for(seq.length, seq.start_rank, r)
        self._free_pages.extend(reversed(seq.pages))

    def local_length(self, seq_id: int) -> int:
        seq = self.sequences[seq_id]
        return self.placement.local_count(seq.length, seq.start_rank, self.kvp_rank)

    # ---- slots ------------------------------------------------------------------------------
    def slots(self, seq_id: int, local_index: torch.Tensor) -> torch.Tensor:
        """Flat slot (page * page_size + offset) of each local index of a sequence."""
        pages = torch.tensor(self.sequences[seq_id].pages, dtype=torch.long, device=local_index.device)
        return pages[local_index // self.page_size] * self.page_size + local_index % self.page_size

    def write(self, layer: int, slots: torch.Tensor, keys: torch.Tensor, values: torch.Tensor | None) -> None:
        self.keys[layer].view(-1, *self.keys.shape[-2:])[slots] = keys.to(self.keys.dtype)
        if self.values is not None:
            self.values[layer].view(-1, *self.values.shape[-2:])[slots] = values.to(self.values.dtype)

    def gather(self, layer: int, seq_id: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This rank's K (and V) of a sequence, in local order: [n_local, kv_heads, dim]."""
        count = self.local_length(seq_id)
        slots = self.slots(seq_id, torch.arange(count, device=self.keys.device))
        keys = self.keys[layer].view(-1, *self.keys.shape[-2:])[slots]
        values = None if self.values is None else self.values[layer].view(-1, *self.values.shape[-2:])[slots]
        return keys, values

    def bytes_per_token(self) -> int:
        per = self.keys[0, 0, 0].numel() * self.keys.element_size()
        if self.values is not None:
            per += self.values[0, 0, 0].numel() * self.values.element_size()
        return per * self.keys.shape[0]

    def total_bytes(self) -> int:
        """Bytes of the usable pages (the scratch page not counted)."""
        total = self.keys[:, : self.num_pages].numel() * self.keys.element_size()
        if self.values is not None:
            total += self.values[:, : self.num_pages].numel() * self.values.element_size()
        return total
