"""A decode step's device-side inputs (fast_decode.step_inputs) against the host placement arithmetic."""
import itertools

import torch

from helix_core.fast_decode import step_inputs
from helix_core.kv_cache import StagePlacement


def test_slots_lengths_and_tokens_match_stage_placement():
    page, scratch_page, max_pages = 4, 99, 10  # 10 pages of 4 hold every local key (< 40)
    gen = torch.Generator().manual_seed(0)
    for kvp, stage in itertools.product((1, 2, 3), (1, 4, 6)):
        placement = StagePlacement(kvp, stage)
        positions = list(range(0, 40, 3))
        batch = len(positions)
        starts = [(i * 7) % kvp for i in range(batch)]
        valid = [i % 5 != 4 for i in range(batch)]  # some padded rows
        sources = [i - 1 if i % 3 == 0 else -1 for i in range(batch)]  # some tokens from the last step's rows
        host_tokens = [1000 + i for i in range(batch)]
        feedback = torch.arange(500, 500 + batch)
        table = torch.randint(0, 90, (batch, max_pages), generator=gen, dtype=torch.int32)
        meta = torch.tensor([host_tokens, positions, starts, [int(v) for v in valid], sources])
        for rank in range(kvp):
            ids, slots, lengths = step_inputs(meta, table, feedback, kvp=kvp, stage=stage, rank=rank, page=page,
                                              scratch_slot=scratch_page * page)
            for i, pos in enumerate(positions):
                assert int(ids[i]) == (500 + sources[i] if sources[i] >= 0 else host_tokens[i])
                want_len = placement.local_count(pos + 1, starts[i], rank) if valid[i] else 0
                assert int(lengths[i]) == want_len, (kvp, stage, rank, i)
                owner = int(placement.owner(torch.tensor(pos), starts[i]))
                if valid[i] and owner == rank:
                    local = int(placement.local_index(torch.tensor(pos)))
                    assert local == want_len - 1  # the appended token is the last local key
                    assert int(slots[i]) == int(table[i, local // page]) * page + local % page
                else:
                    assert int(slots[i]) == scratch_page * page
            assert lengths.dtype == torch.int32
