"""The replicated output projection (EngineOptions.o_projection = "replicated").

Every rank holds all of o_proj; where the fast path's KVP exchange is a gather (every rank receives
every head's partials), each rank projects every head itself and the layer's attention needs no
all-reduce. Checked here: the weights a rank holds against the checkpoint's tensor, the tokens and
logits against HF transformers, and which steps took the replicated path.
"""
import dataclasses

import pytest
import torch
from safetensors import safe_open

from helix_core.config import ModelConfig
from helix_core.engine import EngineOptions, ModelSource
from helix_core.launcher import LocalCluster
from helix_core.models import build_model, replicated_o_supported
from helix_core.plan import Plan
from helix_core.verify import check_free_running

from engine_fixtures import PROMPTS, hf_model, model_dir
from triton_interpreter import interpret_in_spawned_ranks

OPTIONS = EngineOptions(page_size=8, stage_size=16, prefill_chunk=16, fast_decode="on", max_batch=4,
                        o_projection="replicated")


def _checkpoint_tensor(folder: str, name: str) -> torch.Tensor:
    from pathlib import Path

    for path in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            if name in f.keys():
                return f.get_tensor(name)
    raise KeyError(name)


@pytest.mark.parametrize("spec", ["helix:kvp=2,tpa=1", "helix:kvp=4,tpa=1"])
def test_each_rank_holds_the_whole_o_proj_and_its_own_columns_as_a_view(spec):
    folder = model_dir("llama")
    plan = Plan.parse(spec)
    cfg = ModelConfig.from_dir(folder)
    name = "model.layers.1.self_attn.o_proj.weight"
    whole = _checkpoint_tensor(folder, name).float()
    width = whole.shape[1] // plan.world_size  # each rank's exact heads after the exchange: H / N of them
    for rank in range(plan.world_size):
        source = ModelSource.checkpoint(folder, torch.float32, torch.device("cpu"))
        replicated = build_model(cfg, plan, rank, source.reader, source.load, replicate_o=True).layers[1].wo
        sharded = build_model(cfg, plan, rank, source.reader, source.load).layers[1].wo
        assert sharded.full is None
        assert torch.equal(replicated.full, whole)
        assert torch.equal(replicated.local, whole[:, rank * width:(rank + 1) * width])
        assert torch.equal(replicated.local, sharded.local)
        assert replicated.local.untyped_storage().data_ptr() == replicated.full.untyped_storage().data_ptr()


def test_supported_plans_and_models():
    llama, mla = ModelConfig.from_dir(model_dir("llama")), ModelConfig.from_dir(model_dir("deepseek_v3"))
    assert replicated_o_supported(llama, Plan.helix(2, 1)) and replicated_o_supported(llama, Plan.helix(4, 1))
    for plan in (Plan.helix(1, 1), Plan.helix(2, 2), Plan.tp(2), Plan.headslice(2, 1)):
        assert not replicated_o_supported(llama, plan), plan  # no KVP, or ranks without every query head
    assert not replicated_o_supported(mla, Plan.helix(2, 1))  # DeepSeek's o_proj is too large to replicate
    with pytest.raises(ValueError, match="Llama-family models only"):
        source = ModelSource.checkpoint(model_dir("deepseek_v3"), torch.float32, torch.device("cpu"))
        build_model(mla, Plan.helix(2, 1), 0, source.reader, source.load, replicate_o=True)


# (model, plan, exchange, HOP-B pieces, what the decode steps do with o_proj)
GRID = [
    ("llama", "helix:kvp=2,tpa=1", "gather", 2, "replicated"),  # two pieces, each gathered
    ("qwen2", "helix:kvp=4,tpa=1", "gather", 1, "replicated"),  # four slot columns; q/k/v biases
    ("llama", "helix:kvp=2,tpa=1", "auto", 1, "sharded"),  # CPU auto exchange is the all-to-all: no gather
    ("llama", "helix:kvp=2,tpa=2", "gather", 1, "sharded"),  # a rank attends only its group's heads
]


@pytest.mark.parametrize("model,spec,exchange,hopb,use", GRID, ids=[f"{m}-{s}-{e}" for m, s, e, _, _ in GRID])
def test_replicated_o_matches_transformers(model, spec, exchange, hopb, use):
    options = dataclasses.replace(OPTIONS, exchange=exchange, hopb_pieces=hopb)
    with LocalCluster(model_dir(model), Plan.parse(spec), options=options) as cluster:
        report = check_free_running(cluster, hf_model(model), PROMPTS, 12, tolerance=1e-4)
        stats = cluster.stats()
    assert report.argmax_mismatches == 0
    assert report.max_abs_diff < 1e-4, report.max_abs_diff
    layers = ModelConfig.from_dir(model_dir(model)).num_layers
    for s in stats:
        if use == "replicated":
            assert s["o_projection"].startswith("replicated: batches up to 4 rows"), s["o_projection"]
            assert s["replicated_o_projections"] >= layers, s  # counted per layer call (eager or captured)
        else:
            assert s["replicated_o_projections"] == 0, s
            assert s["o_projection"].startswith("sharded: replicated needs"), s["o_projection"]


def test_replicated_o_holds_the_other_ranks_columns_too():
    """weight_bytes grows by (N - 1) / N of o_proj a layer (fp32 here), and by nothing else; not at all where
    the exchange does not gather (the CPU's auto exchange is the all-to-all)."""
    cfg = ModelConfig.from_dir(model_dir("llama"))
    sizes = {}
    for choice, exchange in (("sharded", "gather"), ("replicated", "gather"), ("replicated", "auto")):
        options = dataclasses.replace(OPTIONS, exchange=exchange, o_projection=choice)
        with LocalCluster(model_dir("llama"), Plan.helix(2, 1), options=options) as c:
            sizes[choice, exchange] = [s["weight_bytes"] for s in c.stats()]
    o_bytes = cfg.hidden_size * cfg.num_heads * cfg.head_dim * 4
    grown = [r - s for r, s in zip(sizes["replicated", "gather"], sizes["sharded", "gather"])]
    assert grown == [cfg.num_layers * o_bytes // 2] * 2, sizes
    assert sizes["replicated", "auto"] == sizes["sharded", "gather"], sizes


def test_batch_one_merges_every_head_inside_the_whole_projection(monkeypatch):
    """The GPU fast path at batch 1 under Triton's interpreter: the decode kernel writes its slot column,
    the gather hands every rank every head, and the one-row kernel merges all of them while projecting
    with the whole o_proj (small_linear.merge_linear)."""
    interpret_in_spawned_ranks(monkeypatch)
    options = dataclasses.replace(OPTIONS, exchange="gather", decode_kernel="on", small_linear="on")
    with LocalCluster(model_dir("llama"), Plan.helix(2, 1), options=options) as cluster:
        report = check_free_running(cluster, hf_model("llama"), {2: PROMPTS[2]}, 5, tolerance=1e-4)
        stats = cluster.stats()
    assert report.argmax_mismatches == 0
    assert report.max_abs_diff < 1e-4, report.max_abs_diff
    assert all(s["replicated_o_projections"] > 0 and s["merges_in_projection"] > 0 for s in stats), stats


def test_unknown_o_projection_is_refused():
    from helix_core.comm import Comm
    from helix_core.engine import Engine

    plan = Plan.helix(1, 1)
    with pytest.raises(ValueError, match="o_projection .both.: choose sharded or replicated"):
        Engine(model_dir("llama"), plan, 0, Comm(plan, 0, torch.device("cpu")), torch.device("cpu"),
               EngineOptions(o_projection="both"))
