"""Plan validation and the rank -> coordinates mapping."""
import re

import pytest

from helix_core.config import ModelConfig, UnsupportedConfigError
from helix_core.plan import InvalidPlanError, Plan
from helix_core.tiny_models import TINY_DEFAULTS


def llama_cfg(**over):
    raw = {"model_type": "llama", "vocab_size": 256, "hidden_size": 64, "num_hidden_layers": 2,
           "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128}
    raw.update(over)
    return ModelConfig.from_dict(raw)


def mla_cfg(**over):
    raw = {"model_type": "deepseek_v3", "vocab_size": 256, "hidden_size": 64, "num_hidden_layers": 3,
           "num_attention_heads": 8, "intermediate_size": 96, "kv_lora_rank": 32, "q_lora_rank": 48,
           "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16, "n_routed_experts": 8,
           "n_shared_experts": 1, "num_experts_per_tok": 2, "moe_intermediate_size": 32, "n_group": 4,
           "topk_group": 2, "first_k_dense_replace": 1}
    raw.update(over)
    return ModelConfig.from_dict(raw)


@pytest.mark.parametrize("plan", [Plan.helix(2, 2), Plan.helix(4, 1), Plan.tp(4), Plan.headslice(2, 2),
                                  Plan.headslice(1, 4), Plan.helix(2, 2, ep=2)])
def test_coords_are_a_bijection_and_groups_partition(plan):
    seen = {(c.kvp_rank, c.group_rank, c.slice_rank) for c in map(plan.coords, range(plan.world_size))}
    assert len(seen) == plan.world_size
    for name, lists in plan.process_groups().items():
        flat = sorted(r for ranks in lists for r in ranks)
        assert flat == list(range(plan.world_size)), name


def test_helix_shards_cover_heads_once_without_kv_duplication():
    cfg = llama_cfg()
    plan = Plan.helix(kvp=2, tpa=2)
    plan.validate(cfg)
    out_heads = sorted(h for r in range(4) for h in range(*plan.attention_shard(cfg, r).out_heads))
    assert out_heads == list(range(8))
    # ranks of one KVP shard hold disjoint KV heads; every KV head appears once per KVP rank
    for kvp_rank in range(2):
        ranks = [r for r in range(4) if plan.coords(r).kvp_rank == kvp_rank]
        kv = sorted(h for r in ranks for h in range(*plan.attention_shard(cfg, r).kv_heads))
        assert kv == [0, 1]
    assert plan.kv_duplication(cfg) == 1


def test_tp_duplicates_kv_when_ranks_exceed_kv_heads():
    cfg = llama_cfg()
    plan = Plan.tp(4)
    plan.validate(cfg)
    assert plan.kv_duplication(cfg) == 2
    assert [plan.attention_shard(cfg, r).kv_heads for r in range(4)] == [(0, 1), (0, 1), (1, 2), (1, 2)]


def test_headslice_takes_matching_ranges_of_both_rope_halves():
    cfg = llama_cfg(num_key_value_heads=8)
    shard = Plan.headslice(2, 2).attention_shard(cfg, 1)
    assert shard.head_dims == ((4, 8), (12, 16))
    assert shard.rope_freqs == (4, 8)


@pytest.mark.parametrize("plan,cfg,needle", [
    (Plan("helix", 3, kvp=2, groups=1), llama_cfg(), "N=3 must equal"),
    (Plan.helix(1, 4), llama_cfg(), "TPA=4 exceeds the model's 2 KV heads"),
    (Plan.helix(1, 2), mla_cfg(), "TPA=2 exceeds the model's 1 KV heads"),
    (Plan.tp(3), llama_cfg(num_attention_heads=6, head_dim=16), "must divide one another"),
    (Plan.headslice(2, 2), mla_cfg(), "MLA has one latent KV head"),
    (Plan.headslice(1, 3), llama_cfg(), "multiple of 2m=6"),
    (Plan.headslice(4, 1), llama_cfg(), "n=4 head groups must divide"),
    (Plan.helix(4, 1, ep=3), mla_cfg(), "EP=3 must divide N=4"),
    (Plan.helix(4, 1, ep=4), mla_cfg(n_routed_experts=6, n_group=2), "EP=4 must divide the 6 routed experts"),
    (Plan.helix(2, 1, ep=2), llama_cfg(), "EP > 1 needs a model with routed experts"),
    (Plan.helix(2, 1), llama_cfg(intermediate_size=129), "FFN size 129"),
])
def test_invalid_plans_say_what_to_change(plan, cfg, needle):
    with pytest.raises(InvalidPlanError, match=needle):
        plan.validate(cfg)


def test_parse_roundtrip_and_errors():
    for spec in ["helix:kvp=2,tpa=2", "tp:n=4", "headslice:n=2,m=2", "helix:kvp=4,tpa=1,ep=2"]:
        assert Plan.parse(spec).spec() == spec
    with pytest.raises(InvalidPlanError, match="unknown plan kind"):
        Plan.parse("pipeline:n=2")
    with pytest.raises(InvalidPlanError, match="lacks 'kvp'"):
        Plan.parse("helix:tpa=2")


@pytest.mark.parametrize("spec,needle", [
    ("helix:kvp=x,tpa=1", "kvp must be a whole number, got 'x'"),
    ("helix:kvp=2,tpz=1", "helix takes no tpz"),
    ("tp:n=2,kvp=2", "tp takes no kvp"),
    ("helix:kvp=0,tpa=1", "at least 1, got kvp=0"),
    ("helix:kvp=2,tpa=-1", "at least 1, got tpa=-1"),
    ("tp:n=0", "at least 1, got n=0"),
    ("headslice:n=2,m=0", "at least 1, got m=0"),
    ("tp:n=2,ep=0", "at least 1, got ep=0"),
])
def test_parse_refuses_malformed_specs_naming_the_field(spec, needle):
    with pytest.raises(InvalidPlanError, match=re.escape(needle)):
        Plan.parse(spec)


@pytest.mark.parametrize("field,value,needle", [
    ("quantization_config", {"quant_method": "fp8", "weight_block_size": [128, 128]}, "quantization_config"),
    ("hidden_act", "gelu", "hidden_act"),
    ("rope_scaling", {"rope_type": "dynamic", "factor": 2.0}, "rope_type"),
    ("model_type", "gpt2", "model_type"),
])
def test_unsupported_configs_name_the_field(field, value, needle):
    raw = {"model_type": "llama", "vocab_size": 256, "hidden_size": 64, "num_hidden_layers": 2,
           "num_attention_heads": 8, "intermediate_size": 128, field: value}
    with pytest.raises(UnsupportedConfigError, match=needle):
        ModelConfig.from_dict(raw)


def test_tiny_defaults_split_over_four_ranks():
    assert set(TINY_DEFAULTS) >= {"llama", "qwen2", "deepseek_v3"}
