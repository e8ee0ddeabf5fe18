"""Decode steps launched before the previous one is finished (Engine.decode_launch / decode_finish):
the next tokens stay on the device, and the results still match Hugging Face exactly.

The static-shape fast path runs on CPU too (fast_decode="on", torch attention, no CUDA graphs), so
the device-side feedback of tokens is exercised here as on a GPU.
"""
import pytest
import torch

from helix_core.comm import Comm
from helix_core.engine import Engine, EngineOptions, PrefillItem, RequestError
from helix_core.launcher import LocalCluster
from helix_core.plan import Plan
from helix_core.sampling import SamplingParams
from helix_core.verify import check_free_running, hf_greedy

from engine_fixtures import PROMPTS, hf_model, model_dir

OPTIONS = EngineOptions(page_size=8, stage_size=16, prefill_chunk=16, fast_decode="on", max_batch=4)
# the one-rank tests run where the pinned copies, events and CUDA graphs are, when there is a GPU
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def one_rank_engine(model: str = "llama", **changes) -> Engine:
    plan = Plan.helix(1, 1)
    options = EngineOptions(**{**OPTIONS.__dict__, **changes})
    return Engine(model_dir(model), plan, 0, Comm(plan, 0, DEVICE), DEVICE, options)


@pytest.mark.parametrize("model,spec", [("llama", "helix:kvp=2,tpa=1"), ("deepseek_v3", "helix:kvp=2,tpa=1")])
def test_pipelined_steps_match_transformers(model, spec):
    with LocalCluster(model_dir(model), Plan.parse(spec), options=OPTIONS) as cluster:
        report = check_free_running(cluster, hf_model(model), PROMPTS, 12, tolerance=1e-4, pipelined=True)
    assert report.steps == 12 * len(PROMPTS)
    assert report.argmax_mismatches == 0
    assert report.max_abs_diff < 1e-4, report.max_abs_diff


def _run(engine: Engine, prompts: dict, steps: int, sampling: SamplingParams, pipelined: bool) -> dict:
    outs = {o.seq_id: [o.token_id] for o in engine.prefill([PrefillItem(s, p, sampling) for s, p in prompts.items()])}
    ids, in_flight = list(prompts), None
    for _ in range(steps):
        if not pipelined:
            finished = engine.decode(ids)
        else:
            ticket = engine.decode_launch(ids)
            finished = [] if in_flight is None else engine.decode_finish(in_flight)
            in_flight = ticket
        for out in finished:
            outs[out.seq_id].append(out.token_id)
    for out in engine.decode_finish(in_flight) if in_flight is not None else []:
        outs[out.seq_id].append(out.token_id)
    return outs


def test_greedy_tokens_pipelined_match_transformers():
    prompts = {s: PROMPTS[s] for s in list(PROMPTS)[:2]}
    pipelined = _run(one_rank_engine(), prompts, 10, SamplingParams(), pipelined=True)
    for seq_id, prompt in prompts.items():
        assert pipelined[seq_id] == hf_greedy(hf_model("llama"), prompt, 11)


def test_seeded_sampling_gives_the_same_tokens_pipelined():
    """Sampled tokens (drawn on the host side of the step, then fed back on the device) are the same
    as one step at a time: a seeded draw depends only on (seed, position)."""
    sampling = SamplingParams(temperature=0.9, top_k=20, top_p=0.9, seed=1234)
    prompts = {s: PROMPTS[s] for s in list(PROMPTS)[:2]}
    one_at_a_time = _run(one_rank_engine(), prompts, 8, sampling, pipelined=False)
    pipelined = _run(one_rank_engine(), prompts, 8, sampling, pipelined=True)
    assert pipelined == one_at_a_time
    assert all(len(tokens) == 9 for tokens in pipelined.values())


def test_a_token_left_in_an_older_step_must_be_finished_first():
    engine = one_rank_engine()
    a, b = list(PROMPTS)[:2]
    engine.prefill([PrefillItem(a, PROMPTS[a]), PrefillItem(b, PROMPTS[b])])
    first = engine.decode_launch([a, b])
    second = engine.decode_launch([a])  # a's token from step `first`, on the device
    with pytest.raises(RequestError, match=f"sequence {b}'s next token is in launched decode step {first}"):
        engine.decode_launch([b])  # the device now holds `second`'s tokens, not b's
    outs_first = engine.decode_finish(first)  # b's token comes to the host ...
    third = engine.decode_launch([a, b])  # ... so b can go again, with a from `second` on the device
    outs = {o.seq_id: o.token_id for o in engine.decode_finish(second) + engine.decode_finish(third)}
    assert set(outs) == {a, b} and len(outs_first) == 2
    with pytest.raises(RequestError, match="no launched decode step"):
        engine.decode_finish(third)


def test_a_sequence_freed_in_flight_still_gets_its_token():
    """The server frees a request that hit a stop token while its next step is already launched: that
    step's token for it is returned (and dropped by the server), nothing else changes."""
    engine = one_rank_engine()
    a, b = list(PROMPTS)[:2]
    engine.prefill([PrefillItem(a, PROMPTS[a]), PrefillItem(b, PROMPTS[b])])
    reference = one_rank_engine()
    reference.prefill([PrefillItem(a, PROMPTS[a]), PrefillItem(b, PROMPTS[b])])
    expected = [reference.decode([a, b]) for _ in range(2)]
    first = engine.decode_launch([a, b])
    second = engine.decode_launch([a, b])
    engine.free([a])
    got = [engine.decode_finish(first), engine.decode_finish(second)]
    assert [[o.token_id for o in step] for step in got] == [[o.token_id for o in step] for step in expected]
    assert engine.decode([b])[0].token_id == reference.decode([b])[0].token_id
