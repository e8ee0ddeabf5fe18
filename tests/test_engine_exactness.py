"""Every plan gives the tokens and logits of the unsharded model (HF transformers, fp32).

Multi-process (gloo) clusters on CPU; 32 greedy steps for three sequences of different lengths
decoding in one batch; logits within 1e-4 at every step and identical greedy tokens.
"""
import dataclasses

import pytest

from helix_core.config import ModelConfig
from helix_core.engine import EngineOptions
from helix_core.launcher import LocalCluster
from helix_core.plan import Plan
from helix_core.verify import check_free_running

from engine_fixtures import PROMPTS, hf_model, model_dir
from triton_interpreter import interpret_in_spawned_ranks

STEPS = 32
OPTIONS = EngineOptions(page_size=8, stage_size=16, prefill_chunk=16)

GRID = [
    # Llama GQA (2 KV heads): KVP alone, TPA alone, KVP x TPA, TP duplicating KV (N=4 > 2 heads)
    ("llama", "helix:kvp=1,tpa=1"),
    ("llama", "helix:kvp=2,tpa=1"),
    ("llama", "helix:kvp=4,tpa=1"),
    ("llama", "helix:kvp=2,tpa=2"),
    ("llama", "tp:n=2"),
    ("llama", "tp:n=4"),
    ("llama", "helix:kvp=4,tpa=2"),  # 8 ranks, one 8-GPU node: o and the FFN tensor-parallel over all 8
    # Mistral; Llama-2 style MHA with linear RoPE scaling and tied embeddings
    ("mistral", "helix:kvp=2,tpa=1"),
    ("llama2", "helix:kvp=2,tpa=2"),
    # Qwen2: biases, tied embeddings, 4 KV heads
    ("qwen2", "helix:kvp=1,tpa=1"),
    ("qwen2", "helix:kvp=2,tpa=2"),
    ("qwen2", "helix:kvp=4,tpa=1"),
    ("qwen2", "tp:n=4"),
    # DeepSeek-V3 MLA + MoE: KVP over the latent cache, EP with and without FFN-TP
    ("deepseek_v3", "helix:kvp=1,tpa=1"),
    ("deepseek_v3", "helix:kvp=2,tpa=1"),
    ("deepseek_v3", "helix:kvp=4,tpa=1,ep=2"),  # EP 2 x FFN-TP 2
    ("deepseek_v3", "helix:kvp=4,tpa=1,ep=4"),
    ("deepseek_v3", "helix:kvp=8,tpa=1,ep=4"),  # 8 ranks: EP 4 x FFN-TP 2
    ("deepseek_v3", "tp:n=4"),  # latent cache duplicated on every rank
    ("deepseek_v3_fused", "helix:kvp=2,tpa=1,ep=2"),  # fused expert tensors, sharded checkpoint
    # the head-group x dimension-slice partition on a 16-head MHA model
    ("mha16", "headslice:n=2,m=2"),
    ("mha16", "headslice:n=1,m=4"),
    ("mha16", "headslice:n=4,m=1"),
]


@pytest.mark.parametrize("model,spec", GRID, ids=[f"{m}-{s}" for m, s in GRID])
def test_plan_matches_transformers(model, spec):
    hopb = 2 if "kvp=1" not in spec and spec.startswith("helix") else 1
    options = EngineOptions(**{**OPTIONS.__dict__, "hopb_pieces": hopb})
    with LocalCluster(model_dir(model), Plan.parse(spec), options=options) as cluster:
        report = check_free_running(cluster, hf_model(model), PROMPTS, STEPS, tolerance=1e-4)
        stats = cluster.stats()
    assert report.steps == STEPS * len(PROMPTS)
    assert report.argmax_mismatches == 0
    assert report.max_abs_diff < 1e-4, report.max_abs_diff
    if hopb > 1:
        assert stats[0]["hopb_pieces_run"] == hopb


FAST_GRID = [
    ("llama", "helix:kvp=2,tpa=2"),
    ("llama", "helix:kvp=4,tpa=2"),  # 8 ranks
    ("llama", "tp:n=4"),
    ("qwen2", "helix:kvp=4,tpa=1"),
    ("deepseek_v3", "helix:kvp=4,tpa=1,ep=2"),
    ("deepseek_v3", "helix:kvp=1,tpa=1"),
    ("mha16", "headslice:n=2,m=2"),
]


@pytest.mark.parametrize("model,spec", FAST_GRID, ids=[f"{m}-{s}" for m, s in FAST_GRID])
def test_static_fast_decode_path_matches_transformers(model, spec):
    """The decode path that CUDA graphs capture (static shapes, device-side slots, paged
    attention, HOP-B pieces), run eagerly on CPU with the torch reference of the kernel."""
    options = EngineOptions(**{**OPTIONS.__dict__, "fast_decode": "on", "hopb_pieces": 2, "max_batch": 4})
    with LocalCluster(model_dir(model), Plan.parse(spec), options=options) as cluster:
        report = check_free_running(cluster, hf_model(model), PROMPTS, STEPS, tolerance=1e-4)
    assert report.argmax_mismatches == 0
    assert report.max_abs_diff < 1e-4, report.max_abs_diff
    assert report.max_logprob_diff < 1e-4, report.max_logprob_diff  # computed inside the step (graph)


def test_hopb_on_and_off_give_the_same_tokens():
    tokens = {}
    for pieces in (1, 3):
        options = EngineOptions(**{**OPTIONS.__dict__, "hopb_pieces": pieces})
        with LocalCluster(model_dir("llama"), Plan.helix(2, 1), options=options) as cluster:
            outs = cluster.generate([_item(s, p) for s, p in PROMPTS.items()], 8)
            tokens[pieces] = {s: [o.token_id for o in v] for s, v in outs.items()}
            assert cluster.stats()[0]["hopb_pieces_run"] == pieces
    assert tokens[1] == tokens[3]


def _item(seq_id, prompt, **kw):
    from helix_core.engine import PrefillItem

    return PrefillItem(seq_id, prompt, **kw)


@pytest.mark.parametrize("all_reduce", ["symm", "nccl-window"])
def test_cuda_all_reduce_request_off_gpu_keeps_gloo_and_exactness(all_reduce):
    """--all-reduce symm and nccl-window are CUDA features: on CPU the engine says it kept gloo and stays exact
    (the GPU run of helix verify --all-reduce ... checks the kernels themselves against HF)."""
    options = EngineOptions(**{**OPTIONS.__dict__, "all_reduce": all_reduce, "fast_decode": "on", "max_batch": 4})
    with LocalCluster(model_dir("llama"), Plan.helix(2, 1), options=options) as cluster:
        report = check_free_running(cluster, hf_model("llama"), PROMPTS, 8, tolerance=1e-4)
        stats = cluster.stats()
    assert report.argmax_mismatches == 0 and report.max_abs_diff < 1e-4
    assert all(s["all_reduce"].startswith("gloo") for s in stats), stats


def test_unknown_all_reduce_and_merge_choices_are_refused():
    import torch

    from helix_core.comm import Comm
    from helix_core.engine import Engine

    plan = Plan.helix(1, 1)
    with pytest.raises(ValueError, match="all_reduce .mpi.: choose auto"):
        Engine(model_dir("llama"), plan, 0, Comm(plan, 0, torch.device("cpu")), torch.device("cpu"),
               EngineOptions(all_reduce="mpi"))
    with pytest.raises(ValueError, match="merge_in_projection .on.: choose auto or off"):
        Engine(model_dir("llama"), plan, 0, Comm(plan, 0, torch.device("cpu")), torch.device("cpu"),
               EngineOptions(merge_in_projection="on"))


KERNEL_GRID = [
    ("llama", "helix:kvp=2,tpa=1", 2),  # packed exchange buffer written by the kernel, HOP-B pieces
    ("llama", "tp:n=2", 1),
    ("deepseek_v3", "helix:kvp=2,tpa=1", 1),  # MLA: values are the latent's first dims
    ("mha16", "headslice:n=2,m=2", 1),  # sliced kernels: q.k partials summed over 2 dim slices
]


@pytest.mark.parametrize("model,spec,hopb", KERNEL_GRID, ids=[f"{m}-{s}" for m, s, _ in KERNEL_GRID])
def test_fast_path_with_the_triton_kernel_matches_transformers(model, spec, hopb, monkeypatch):
    """The fast decode path exactly as on a GPU (Triton decode kernel writing the exchange
    buffer, Triton KVP merge), run by Triton's CPU interpreter in every rank process."""
    interpret_in_spawned_ranks(monkeypatch)  # TRITON_INTERPRET=1, read by the ranks when they import triton
    options = EngineOptions(**{**OPTIONS.__dict__, "fast_decode": "on", "decode_kernel": "on",
                               "hopb_pieces": hopb, "max_batch": 4})
    with LocalCluster(model_dir(model), Plan.parse(spec), options=options) as cluster:
        report = check_free_running(cluster, hf_model(model), PROMPTS, 6, tolerance=1e-4)
        stats = cluster.stats()
    assert report.argmax_mismatches == 0
    assert report.max_abs_diff < 1e-4, report.max_abs_diff
    assert stats[0]["decode_kernel"] is True


GATHER_GRID = [
    ("llama", "helix:kvp=2,tpa=1", "off", 2),  # torch path, two HOP-B pieces in one slot buffer
    ("llama", "helix:kvp=2,tpa=2", "off", 1),  # two KVP groups: each rank keeps its own head slice
    ("deepseek_v3", "helix:kvp=4,tpa=1,ep=2", "off", 1),  # MLA latent values, four slot columns
    ("llama", "helix:kvp=2,tpa=1", "on", 2),  # the Triton kernel writes into its slot column
]


@pytest.mark.parametrize("model,spec,kernel,hopb", GATHER_GRID, ids=[f"{m}-{s}-kernel-{k}" for m, s, k, _ in GATHER_GRID])
def test_gather_exchange_matches_transformers(model, spec, kernel, hopb, monkeypatch):
    """The KVP exchange as one sum over zero-padded slots (on GPU by the symm-mem one-shot kernel,
    here by gloo's all-reduce) stays exact against HF."""
    if kernel == "on":
        interpret_in_spawned_ranks(monkeypatch)
    options = EngineOptions(**{**OPTIONS.__dict__, "fast_decode": "on", "decode_kernel": kernel,
                               "exchange": "gather", "hopb_pieces": hopb, "max_batch": 4})
    with LocalCluster(model_dir(model), Plan.parse(spec), options=options) as cluster:
        report = check_free_running(cluster, hf_model(model), PROMPTS, 6 if kernel == "on" else 16, tolerance=1e-4)
        stats = cluster.stats()
    assert report.argmax_mismatches == 0
    assert report.max_abs_diff < 1e-4, report.max_abs_diff
    assert all(s["exchange"].startswith("gather by gloo all-reduce") for s in stats), stats


def test_exchange_defaults_to_the_all_to_all_off_gpu_and_refuses_unknown_choices():
    import torch

    from helix_core.comm import Comm
    from helix_core.engine import Engine

    options = EngineOptions(**{**OPTIONS.__dict__, "fast_decode": "on", "max_batch": 4})
    with LocalCluster(model_dir("llama"), Plan.helix(2, 1), options=options) as cluster:
        assert all(s["exchange"].startswith("gloo all-to-all") for s in cluster.stats())
    plan = Plan.helix(1, 1)
    with pytest.raises(ValueError, match="exchange .scatter.: choose auto"):
        Engine(model_dir("llama"), plan, 0, Comm(plan, 0, torch.device("cpu")), torch.device("cpu"),
               EngineOptions(exchange="scatter"))


def test_small_batch_linear_kernel_in_the_fast_path_matches_transformers(monkeypatch):
    """Decode-batch projections by the Triton weight-streaming kernel (CPU interpreter here), with
    the decode kernel and the gather exchange: the whole GPU fast path, against HF."""
    interpret_in_spawned_ranks(monkeypatch)
    options = EngineOptions(**{**OPTIONS.__dict__, "fast_decode": "on", "decode_kernel": "on", "small_linear": "on",
                               "exchange": "gather", "max_batch": 4, "l2_prefetch_mib": 24})
    one_sequence = {2: PROMPTS[2]}  # batch-1 decode steps: the one-row case the kernel takes
    cases = (("llama", "helix:kvp=2,tpa=1", "auto"), ("llama", "helix:kvp=2,tpa=1", "off"), ("qwen2", "tp:n=2", "auto"),
             ("deepseek_v3", "helix:kvp=2,tpa=1", "auto"))
    for model, spec, merge_in_projection in cases:
        case_options = dataclasses.replace(options, merge_in_projection=merge_in_projection)
        with LocalCluster(model_dir(model), Plan.parse(spec), options=case_options) as cluster:
            report = check_free_running(cluster, hf_model(model), one_sequence, 5, tolerance=1e-4)
            stats = cluster.stats()
        assert report.argmax_mismatches == 0, (model, spec)
        assert report.max_abs_diff < 1e-4, (model, spec, report.max_abs_diff)
        assert all(s["small_linear"] is True for s in stats)
        # Llama's KVP merge runs inside the o projection's kernel (one per layer and step) unless turned off;
        # TP has no merge, and MLA's merged latent goes through W_UV first
        # L2 prefetch pairs (o -> gate/up, down -> next q/k/v) registered on every rank of a Llama-family model;
        # the prefetch itself is a hint the CPU never runs, so the numbers above are unchanged by it
        layers = ModelConfig.from_dir(model_dir(model)).num_layers
        assert all(s["l2_prefetch_pairs"] == (0 if model == "deepseek_v3" else 2 * layers) for s in stats), stats
        fused = [s["merges_in_projection"] for s in stats]
        if model == "llama" and merge_in_projection == "auto":
            assert all(n > 0 for n in fused), fused
        else:
            assert not any(fused), (model, merge_in_projection, fused)
