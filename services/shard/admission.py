"""KV admission: pages every KVP rank must keep for a request until it ends.

A request is admitted only if each KVP rank can reserve the pages of its whole life, prompt +
max_new_tokens, so that no running request ever hits a full cache (no preemption needed). The
page count uses the engine's own StagePlacement arithmetic; since the engine picks a sequence's
first KVP rank round-robin, the reservation takes, for each KVP rank, the most pages any first
rank could put there (at most one page more than the exact count).
"""

from __future__ import annotations

from helix_core.kv_cache import StagePlacement


class KVReservations:
    def __init__(self, placement: StagePlacement, page_size: int, pages_per_rank: int):
        self.placement = placement
        self.page_size = page_size
        self.pages_per_rank = pages_per_rank
        self.reserved = [0] * placement.kvp

    def pages_for(self, tokens: int) -> list[int]:
        """Pages each KVP rank must reserve for a sequence of `tokens` tokens, whatever its start."""
        kvp = self.placement.kvp
        return [
            max(-(-self.placement.local_count(tokens, start, rank) // self.page_size) for start in range(kvp))
            for rank in range(kvp)
        ]

    def fits_when_empty(self, tokens: int) -> bool:
        return max(self.pages_for(tokens)) <= self.pages_per_rank

    def max_sequence_tokens(self, limit: int) -> int:
        """The longest sequence (<= limit) an empty cache can reserve."""
        low, high = 0, limit
        while low < high:
            middle = (low + high + 1) // 2
            if self.fits_when_empty(middle):
                low = middle
            else:
                high = middle - 1
        return low

    def try_reserve(self, tokens: int) -> list[int] | None:
        """Reserve the pages of a `tokens`-long sequence on every KVP rank, or None if one lacks room."""
        need = self.pages_for(tokens)
        if any(used + extra > self.pages_per_rank for used, extra in zip(self.reserved, need)):
            return None
        self.reserved = [used + extra for used, extra in zip(self.reserved, need)]
        return need

    def release(self, reservation: list[int]) -> None:
        self.reserved = [used - extra for used, extra in zip(self.reserved, reservation)]
