"""Tiny random checkpoints: every tensor random, sane scales, fused / sharded variants, HF oracle."""
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from helix_core.checkpoint import CheckpointReader
from helix_core.config import ModelConfig
from helix_core.tiny_models import TINY_DEFAULTS, load_hf_model, make_tiny_model

pytest.importorskip("transformers")

ARCHS = sorted(TINY_DEFAULTS)


def _read_all(model_dir):
    reader = CheckpointReader(model_dir)
    return {name: reader.read(name) for name in reader.names()}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return {arch: make_tiny_model(arch, tmp_path_factory.mktemp(arch)) for arch in ARCHS}


def test_module_imports_without_transformers():
    code = "import sys; sys.modules['transformers'] = None; import helix_core.tiny_models"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_tensor_is_random(arch, checkpoints):
    tensors = _read_all(checkpoints[arch])
    for name, tensor in tensors.items():
        values = tensor.float()
        assert values.std() > 0.01, f"{name} is (nearly) constant"
        assert not torch.all(values == 1) and not torch.all(values == 0), name
    norms = [name for name in tensors if name.endswith("norm.weight")]
    assert norms and all(0.5 < tensors[name].float().mean() < 1.5 for name in norms)


def test_arch_specific_tensors_are_present(checkpoints):
    qwen2 = _read_all(checkpoints["qwen2"])
    for proj in ("q_proj", "k_proj", "v_proj"):
        assert f"model.layers.0.self_attn.{proj}.bias" in qwen2
    assert "lm_head.weight" not in qwen2  # tied to the embeddings

    deepseek = _read_all(checkpoints["deepseek_v3"])
    assert "model.layers.0.mlp.gate_proj.weight" in deepseek  # first_k_dense_replace=1: dense layer 0
    for layer in (1, 2):
        bias = deepseek[f"model.layers.{layer}.mlp.gate.e_score_correction_bias"]
        assert bias.shape == (8,) and bias.std() > 0.01
        assert deepseek[f"model.layers.{layer}.mlp.experts.7.gate_proj.weight"].shape == (32, 64)


@pytest.mark.parametrize("arch", ARCHS)
def test_config_splits_evenly_over_1_2_4_ranks(arch, checkpoints):
    config = ModelConfig.from_dir(checkpoints[arch])
    sizes = [config.vocab_size, config.hidden_size, config.num_heads, config.intermediate_size]
    if config.is_mla:
        sizes += [config.q_lora_rank, config.kv_lora_rank, config.n_routed_experts]
        sizes += [config.moe_intermediate_size]
    else:
        sizes += [config.num_kv_heads]
        assert config.num_kv_heads in (2, 4)  # 4 ranks share 2 KV heads by splitting the sequence too
    assert all(size % 4 == 0 or size == 2 for size in sizes), sizes
    assert config.checkpoint_dtype == "float32"


@pytest.mark.parametrize("arch", ARCHS)
def test_hf_oracle_loads_the_same_numbers_and_gives_sane_logits(arch, checkpoints):
    model = load_hf_model(checkpoints[arch])
    assert not model.training and model.config._attn_implementation == "eager"
    state = model.state_dict()
    for name, tensor in _read_all(checkpoints[arch]).items():
        if name in state:  # per-expert DeepSeek tensors are fused in memory: compared in the fused test
            assert torch.equal(state[name], tensor), name
    with torch.no_grad():
        logits = model(torch.arange(3, 40)[None]).logits[0]
    assert torch.isfinite(logits).all()
    assert 0.3 < logits.std() < 5
    assert logits.argmax(-1).unique().numel() > 3  # not one token everywhere


def test_same_seed_same_weights_other_seed_other_weights(tmp_path, checkpoints):
    again = _read_all(make_tiny_model("llama", tmp_path / "again", seed=0))
    other = _read_all(make_tiny_model("llama", tmp_path / "other", seed=1))
    first = _read_all(checkpoints["llama"])
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not any(torch.equal(first[name], other[name]) for name in first)


def test_overrides_and_unknown_arch(tmp_path):
    linear_rope = {"rope_type": "linear", "factor": 2.0}
    model_dir = make_tiny_model("mistral", tmp_path / "m", num_hidden_layers=3, rope_parameters=linear_rope)
    config = ModelConfig.from_dir(model_dir)
    assert config.num_layers == 3 and config.rope.rope_type == "linear"
    with pytest.raises(ValueError, match="gpt2"):
        make_tiny_model("gpt2", tmp_path / "g")


@pytest.fixture(scope="module")
def fused_deepseek(tmp_path_factory):
    return make_tiny_model("deepseek_v3", tmp_path_factory.mktemp("fused"), fused_experts=True)


def test_fused_experts_hold_the_per_expert_numbers(checkpoints, fused_deepseek):
    per_expert = _read_all(checkpoints["deepseek_v3"])
    fused = _read_all(fused_deepseek)
    assert not any(".experts.0." in name for name in fused)
    for layer in (1, 2):
        prefix = f"model.layers.{layer}.mlp.experts"
        gate_up, down = fused[f"{prefix}.gate_up_proj"], fused[f"{prefix}.down_proj"]
        assert gate_up.shape == (8, 2 * 32, 64) and down.shape == (8, 64, 32)
        for expert in range(8):
            gate = per_expert[f"{prefix}.{expert}.gate_proj.weight"]
            up = per_expert[f"{prefix}.{expert}.up_proj.weight"]
            assert torch.equal(gate_up[expert], torch.cat([gate, up]))  # gate rows first, then up rows
            assert torch.equal(down[expert], per_expert[f"{prefix}.{expert}.down_proj.weight"])
    shared = set(fused) & set(per_expert)
    assert len(shared) == len(fused) - 4
    assert all(torch.equal(fused[name], per_expert[name]) for name in shared)


def test_hf_loads_the_fused_checkpoint_to_the_same_model(checkpoints, fused_deepseek):
    per_expert_model = load_hf_model(checkpoints["deepseek_v3"])
    fused_model = load_hf_model(fused_deepseek)
    fused = _read_all(fused_deepseek)
    fused_state = fused_model.state_dict()
    per_expert_state = per_expert_model.state_dict()
    for name, tensor in fused_state.items():
        assert torch.equal(tensor, per_expert_state[name]), name
        if name in fused:
            assert torch.equal(tensor, fused[name]), name
    tokens = torch.arange(5, 30)[None]
    with torch.no_grad():
        fused_logits, per_expert_logits = fused_model(tokens).logits, per_expert_model(tokens).logits
    # the weights are equal bitwise (above); the two loads' MoE blocks may still round differently (transformers
    # 5.25 on CPU: up to 9.5e-7 apart from layer 1's experts on, each load deterministic on its own)
    torch.testing.assert_close(fused_logits, per_expert_logits, rtol=1e-5, atol=1e-5)
    assert (fused_logits.argmax(-1) == per_expert_logits.argmax(-1)).all()


@pytest.mark.parametrize("fused_experts", [False, True])
def test_sharded_checkpoint_has_index_and_same_tensors(tmp_path, checkpoints, fused_deepseek, fused_experts):
    model_dir = make_tiny_model("deepseek_v3", tmp_path, fused_experts=fused_experts, shard_max_size="20KB")
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) > 1 and shards == {path.name for path in model_dir.glob("*.safetensors")}
    reference = _read_all(fused_deepseek if fused_experts else checkpoints["deepseek_v3"])
    sharded = _read_all(model_dir)
    assert sharded.keys() == reference.keys()
    assert all(torch.equal(sharded[name], reference[name]) for name in reference)


def test_bf16_checkpoint_keeps_the_router_bias_in_fp32(tmp_path):
    model_dir = make_tiny_model("deepseek_v3", tmp_path, dtype=torch.bfloat16)
    tensors = load_file(model_dir / "model.safetensors")
    for name, tensor in tensors.items():
        expected = torch.float32 if name.endswith("e_score_correction_bias") else torch.bfloat16
        assert tensor.dtype == expected, name
    assert ModelConfig.from_dir(model_dir).checkpoint_dtype == "bfloat16"
