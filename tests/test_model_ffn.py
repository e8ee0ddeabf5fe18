"""A layer's FFN part on its own (DecoderStack.ffn, what `helix bench` times as the FFN phase) against the
same layer's post-attention norm and MLP in Hugging Face transformers, on the same weights."""
import pytest
import torch

from helix_core.comm import Comm
from helix_core.engine import Engine, EngineOptions
from helix_core.plan import Plan

from engine_fixtures import hf_model, model_dir


@pytest.mark.parametrize("model", ["llama", "deepseek_v3"])
@pytest.mark.parametrize("static_shapes", [False, True])
def test_ffn_matches_the_hf_layer(model, static_shapes):
    plan, device = Plan.helix(1, 1), torch.device("cpu")
    engine = Engine(model_dir(model), plan, 0, Comm(plan, 0, device), device, EngineOptions())
    hf = hf_model(model)
    gen = torch.Generator().manual_seed(5)
    hidden = hf.config.hidden_size
    x, delta = torch.randn(3, hidden, generator=gen), torch.randn(3, hidden, generator=gen)
    for index in range(len(engine.model.layers)):  # deepseek_v3: a dense layer, then MoE layers
        layer = hf.model.layers[index]
        with torch.no_grad():
            ref_y = layer.mlp(layer.post_attention_layernorm(x + delta)[None])[0]
            total, y = engine.model.ffn(index, x, delta, static_shapes=static_shapes)
        assert torch.allclose(total, x + delta)
        assert torch.allclose(y, ref_y, atol=1e-5, rtol=1e-4), (model, index, (y - ref_y).abs().max())


def test_bench_phase_functions_run_every_layer_and_leave_the_cache_alone(monkeypatch):
    """`helix bench` times each phase by capturing these functions in CUDA graphs (GPU only); on CPU they run
    eagerly here: every phase runs once per layer, and none writes the KV cache."""
    from helix_core.bench.phases import phase_functions
    from helix_core.engine import PrefillItem
    from helix_core.sampling import SamplingParams

    plan, device = Plan.helix(1, 1), torch.device("cpu")
    options = EngineOptions(page_size=8, stage_size=16, fast_decode="on", max_batch=2)
    engine = Engine(model_dir("llama"), plan, 0, Comm(plan, 0, device), device, options)
    engine.prefill([PrefillItem(0, [3, 17, 42, 9, 100], SamplingParams()), PrefillItem(1, [5, 6], SamplingParams())])
    engine.decode([0, 1])
    layers = engine.cfg.num_layers
    calls = {"ffn": 0, "attention": 0}
    ffn = engine.model.ffn

    def counted_ffn(*args, **kwargs):
        calls["ffn"] += 1
        return ffn(*args, **kwargs)

    monkeypatch.setattr(engine.model, "ffn", counted_ffn)
    import helix_core.bench.phases as worker

    attention = worker.FastDecodeContext._attention

    def counted_attention(self, *args, **kwargs):
        calls["attention"] += 1
        return attention(self, *args, **kwargs)

    monkeypatch.setattr(worker.FastDecodeContext, "_attention", counted_attention)
    keys = engine.cache.keys.clone()
    functions = phase_functions(engine, 2)
    assert set(functions) == {"attention_s", "ffn_s", "all_to_all_s", "all_reduce_s"}
    for fn in functions.values():
        fn()
    assert calls == {"ffn": layers, "attention": layers}
    assert torch.equal(engine.cache.keys, keys)


def _hopb_phase_worker(folder: str, rank: int) -> None:
    """Helix KVP=2 with HOP-B in two pieces: each phase function runs the attention kernel and the exchange once
    per piece and layer, over the pieces' rows, as the step does (FastDecodeContext._attend_pieces)."""
    from helix_core.bench import phases as worker
    from helix_core.engine import PrefillItem
    from helix_core.sampling import SamplingParams

    plan, device = Plan.helix(2, 1), torch.device("cpu")
    options = EngineOptions(page_size=8, stage_size=16, fast_decode="on", max_batch=4, hopb_pieces=2)
    engine = Engine(folder, plan, rank, Comm(plan, rank, device), device, options)
    engine.prefill([PrefillItem(i, [3 + i, 17, 42, 9 + i, 100], SamplingParams()) for i in range(4)])
    engine.decode([0, 1, 2, 3])
    rows_attended, exchanged = [], []
    attention = worker.FastDecodeContext._attention
    all_to_all = engine.comm.all_to_all

    def counted_attention(self, q, *args, **kwargs):
        rows_attended.append(q.shape[0])
        return attention(self, q, *args, **kwargs)

    def counted_all_to_all(recv, send, group, *args, **kwargs):
        exchanged.append((group, send.shape[1]))
        return all_to_all(recv, send, group, *args, **kwargs)

    worker.FastDecodeContext._attention = counted_attention
    engine.comm.all_to_all = counted_all_to_all
    try:
        functions = worker.phase_functions(engine, 4)
        functions["attention_s"]()
        functions["all_to_all_s"]()  # a collective: every rank runs it
    finally:
        worker.FastDecodeContext._attention = attention
    layers = engine.cfg.num_layers
    assert rows_attended == [2, 2] * layers, rows_attended
    assert exchanged == [("kvp", 2), ("kvp", 2)] * layers, exchanged  # gloo: the all-to-all, not the gather


def test_bench_phases_follow_the_hopb_pieces():
    import functools

    from gloo_ranks import run_gloo_ranks

    run_gloo_ranks(functools.partial(_hopb_phase_worker, model_dir("llama")), 2)
