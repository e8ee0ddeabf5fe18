"""The layout of one forward step, built identically on every rank from replicated metadata."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .kv_cache import PagedKVCache


@dataclass
class SeqSpan:
    seq_id: int
    start_rank: int
    first_position: int  # global position of the span's first new token
    tokens: int  # new tokens of this sequence in the step
    offset: int  # index of the span's first token in the step's token dim


@dataclass
class StepBatch:
    spans: list[SeqSpan]
    input_ids: torch.Tensor  # [T]
    positions: torch.Tensor  # [T] global positions
    write_token_index: torch.Tensor  # tokens whose KV this rank stores
    write_slots: torch.Tensor  # and the cache slots they go to
    sample_index: torch.Tensor  # [S] tokens whose next-token logits are wanted

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])

    def piece_bounds(self, pieces: int) -> list[tuple[int, int]]:
        """Split the spans into at most `pieces` groups of whole sequences -> (first span, stop span)."""
        count = len(self.spans)
        pieces = max(1, min(pieces, count))
        bounds = []
        for p in range(pieces):
            start = p * count // pieces
            stop = (p + 1) * count // pieces
            if stop > start:
                bounds.append((start, stop))
        return bounds


def build_step(cache: PagedKVCache, new_tokens: list[tuple[int, list[int] | torch.Tensor]],
               sample_last: list[bool], device: torch.device) -> StepBatch:
    """Lay out a step whose sequences already had their cache grown to hold the new tokens.

    new_tokens: (seq_id, token ids) per sequence; their positions continue each sequence.
    sample_last: whether the last new token of each sequence is sampled.
    """
    placement, kvp_rank = cache.placement, cache.kvp_rank
    spans, ids, positions, write_index, write_slots, sample_index = [], [], [], [], [], []
    offset = 0
    for (seq_id, tokens), sample in zip(new_tokens, sample_last):
        seq = cache.sequences[seq_id]
        count = len(tokens)
        first = seq.length - count
        span = SeqSpan(seq_id, seq.start_rank, first, count, offset)
        spans.append(span)
        ids.append(torch.as_tensor(tokens, dtype=torch.long))
        pos = torch.arange(first, first + count)
        positions.append(pos)
        mine = placement.owner(pos, seq.start_rank) == kvp_rank
        if bool(mine.any()):
            local = placement.local_index(pos[mine])
            write_index.append(torch.nonzero(mine).flatten() + offset)
            write_slots.append(cache.slots(seq_id, local))
        if sample:
            sample_index.append(offset + count - 1)
        offset += count
    empty = torch.zeros(0, dtype=torch.long)
    return StepBatch(
        spans=spans,
        input_ids=torch.cat(ids).to(device),
        positions=torch.cat(positions).to(device),
        write_token_index=(torch.cat(write_index) if write_index else empty).to(device),
        write_slots=(torch.cat(write_slots) if write_slots else empty).to(device),
        sample_index=torch.tensor(sample_index, dtype=torch.long, device=device),
    )
