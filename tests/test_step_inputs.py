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
            ids, slots, lengths = step_inputs(meta, table, feedback, placement=placement, rank=rank, page=page,
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


def test_compiled_step_functions_equal_eager():
    """The fast path runs step_inputs and the greedy pick through torch.compile (one generated kernel each
    instead of a dozen or more small ones); the generated code must give the eager results. Compiled here
    for the CPU (Inductor's C++ backend); on CUDA the same graphs become Triton kernels."""
    from torch._dynamo.utils import counters

    from helix_core.models.ops import compiled_function
    from helix_core.sampling import greedy_tokens_and_logprobs

    before = counters["stats"]["unique_graphs"]
    meta = torch.tensor([[7, 8, 9], [5, 17, 30], [0, 1, 1], [1, 1, 0], [-1, 0, -1]])
    table = torch.arange(30, dtype=torch.int32).view(3, 10)
    feedback = torch.tensor([40, 41, 42])
    kwargs = dict(placement=StagePlacement(2, 4), rank=1, page=4, scratch_slot=396)
    for got, want in zip(compiled_function(step_inputs)(meta, table, feedback, **kwargs),
                         step_inputs(meta, table, feedback, **kwargs)):
        assert torch.equal(got, want)
    logits = torch.randn(2, 3000, generator=torch.Generator().manual_seed(1))
    logits[0, 2500] = logits[0, 100] = logits[0].max() + 1  # a tie across pieces
    tokens, logprobs = compiled_function(greedy_tokens_and_logprobs)(logits)
    ref_tokens, ref_logprobs = greedy_tokens_and_logprobs(logits)
    assert torch.equal(tokens, ref_tokens) and int(tokens[0]) == 100
    assert torch.allclose(logprobs, ref_logprobs, atol=1e-6)
    assert counters["stats"]["unique_graphs"] >= before + 2  # both really compiled (no eager fallback)
