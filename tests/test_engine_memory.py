"""Per-rank memory against formulas from the config and the plan, and KV balance over KVP ranks.

Replication, stated: Helix replicates the q/k/v projections (and MLA's q and latent-KV down
projections and W_UK) over the KVP ranks, the router and every norm over all N ranks; all else
(o_proj, FFN, experts, W_UV, embedding, LM head) is split 1/N. The KV cache holds each token's
K/V once (helix, headslice) or once per duplicating rank (tp with N > KV heads).
"""
import pytest

from helix_core.config import ModelConfig
from helix_core.engine import EngineOptions, PrefillItem
from helix_core.launcher import LocalCluster
from helix_core.plan import Plan

from engine_fixtures import PROMPTS, model_dir

FP32 = 4


def split(total, parts, index):
    base, extra = divmod(total, parts)
    return base + (1 if index < extra else 0)


def llama_weight_elements(cfg: ModelConfig, plan: Plan, rank: int) -> int:
    n, groups, slices = plan.world_size, plan.groups, plan.slices
    h, d = cfg.hidden_size, cfg.head_dim
    q_heads = cfg.num_heads // groups
    kv_heads = cfg.num_kv_heads // groups if groups <= cfg.num_kv_heads else 1
    d_local = d // slices
    out_heads = cfg.num_heads // (groups * plan.kvp)
    per_layer = (q_heads + 2 * kv_heads) * d_local * h  # q, k, v: replicated over KVP
    per_layer += h * out_heads * d_local  # o_proj columns of the heads this rank ends with
    per_layer += 3 * h * cfg.intermediate_size // n  # gated MLP, 1/N
    per_layer += 2 * h  # two norms, replicated
    if cfg.qkv_bias:
        per_layer += (q_heads + 2 * kv_heads) * d_local
    vocab = split(cfg.vocab_size, n, rank) * h
    return cfg.num_layers * per_layer + h + vocab * (1 if cfg.tie_word_embeddings else 2)


def mla_weight_elements(cfg: ModelConfig, plan: Plan, rank: int) -> tuple[int, int]:
    """(elements in the model dtype, fp32 elements of the router correction bias)."""
    n, h, heads = plan.world_size, cfg.hidden_size, cfg.num_heads
    q_heads = heads // plan.groups
    out_heads = heads // n
    lora, rope, nope, v = cfg.kv_lora_rank, cfg.qk_rope_head_dim, cfg.qk_nope_head_dim, cfg.v_head_dim
    attn = cfg.q_lora_rank * h + cfg.q_lora_rank + q_heads * (nope + rope) * cfg.q_lora_rank  # q path
    attn += (lora + rope) * h + lora  # latent KV down projection and its norm
    attn += q_heads * nope * lora  # W_UK of the query heads
    attn += out_heads * v * lora + h * out_heads * v  # W_UV and o_proj of the output heads
    total, bias = 0, 0
    for layer in range(cfg.num_layers):
        total += attn + 2 * h
        if cfg.is_moe_layer(layer):
            local_experts = cfg.n_routed_experts // plan.ep
            total += cfg.n_routed_experts * h  # router, replicated
            total += local_experts * 3 * h * cfg.moe_intermediate_size // plan.ffn_tp
            total += 3 * h * cfg.moe_intermediate_size * cfg.n_shared_experts // n
            bias += cfg.n_routed_experts
        else:
            total += 3 * h * cfg.intermediate_size // n
    vocab = split(cfg.vocab_size, n, rank) * h
    return total + h + vocab * (1 if cfg.tie_word_embeddings else 2), bias


CASES = [("llama", "helix:kvp=2,tpa=2"), ("llama", "tp:n=4"), ("qwen2", "helix:kvp=2,tpa=1"),
         ("mha16", "headslice:n=2,m=2"), ("deepseek_v3", "helix:kvp=4,tpa=1,ep=2"),
         ("deepseek_v3_fused", "helix:kvp=2,tpa=1,ep=2")]


@pytest.mark.parametrize("model,spec", CASES, ids=[f"{m}-{s}" for m, s in CASES])
def test_weight_and_kv_bytes_match_the_formula_and_ranks_read_only_their_slices(model, spec):
    cfg = ModelConfig.from_dir(model_dir(model))
    plan = Plan.parse(spec)
    options = EngineOptions(page_size=8, kv_pages=32)
    with LocalCluster(model_dir(model), plan, options=options) as cluster:
        stats = cluster.stats()
    for rank, st in enumerate(stats):
        if cfg.is_mla:
            elements, bias = mla_weight_elements(cfg, plan, rank)
            expected = (elements + bias) * FP32
            kv_per_token = (cfg.kv_lora_rank + cfg.qk_rope_head_dim) * FP32
        else:
            expected = llama_weight_elements(cfg, plan, rank) * FP32
            kv_heads = cfg.num_kv_heads // plan.groups if plan.groups <= cfg.num_kv_heads else 1
            kv_per_token = 2 * kv_heads * (cfg.head_dim // plan.slices) * FP32
        assert st["weight_bytes"] == expected, rank
        # each rank reads exactly the slices it holds from the checkpoint, nothing more
        assert st["checkpoint_bytes_read"] == expected, rank
        assert st["kv_bytes"] == cfg.num_layers * options.kv_pages * options.page_size * kv_per_token


def test_tp_pays_for_kv_duplication_and_helix_does_not():
    cfg = ModelConfig.from_dir(model_dir("llama"))  # 2 KV heads
    assert Plan.tp(4).kv_duplication(cfg) == 2 and Plan.helix(2, 2).kv_duplication(cfg) == 1


@pytest.mark.parametrize("spec", ["helix:kvp=4,tpa=1", "helix:kvp=2,tpa=2"])
def test_kv_stays_balanced_within_one_stage(spec):
    stage = 4
    plan = Plan.parse(spec)
    options = EngineOptions(page_size=3, stage_size=stage, prefill_chunk=7)
    with LocalCluster(model_dir("llama"), plan, options=options) as cluster:
        cluster.generate([PrefillItem(s, p) for s, p in PROMPTS.items()], 9)
        stats = cluster.stats()
    kvp_ranks = {plan.coords(r).kvp_rank: r for r in range(plan.world_size)}
    for seq_id, prompt in PROMPTS.items():
        counts = [stats[r]["kv_tokens_local"][seq_id] for r in kvp_ranks.values()]
        assert sum(counts) == len(prompt) + 9 - 1  # the last sampled token is not fed back yet
        assert max(counts) - min(counts) <= stage, counts
    # page accounting is replicated: every rank sees the same use of every KVP rank
    assert len({tuple(st["kv_pages_used_per_kvp_rank"]) for st in stats}) == 1


def test_short_sequences_start_on_different_kvp_ranks_and_free_returns_pages():
    plan = Plan.helix(4, 1)
    with LocalCluster(model_dir("llama"), plan, options=EngineOptions(stage_size=16)) as cluster:
        cluster.prefill([PrefillItem(s, [5, 6, 7]) for s in range(4)])
        stats = cluster.stats()
        holders = [[r for r in range(4) if stats[r]["kv_tokens_local"].get(s)] for s in range(4)]
        assert sorted(h[0] for h in holders) == [0, 1, 2, 3] and all(len(h) == 1 for h in holders)
        cluster.free(list(range(4)))
        assert cluster.stats()[0]["kv_pages_used_per_kvp_rank"] == [0, 0, 0, 0]
