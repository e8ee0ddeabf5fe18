"""Benchmark shapes as HF-style configs (random weights are made for them on the device)."""
from __future__ import annotations

from ..config import ModelConfig

_LLAMA3_8B = {
    "model_type": "llama", "vocab_size": 128256, "hidden_size": 4096, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 14336,
    "rms_norm_eps": 1e-5, "max_position_embeddings": 8 << 20,
    "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
}

SHAPES = {
    # 8 KV heads: TP on 2..8 GPUs duplicates no KV; Helix can at best tie TP here
    "llama3-8b": _LLAMA3_8B,
    # one KV head: TP=2 holds the whole KV on both GPUs, Helix KVP=2 halves it
    "mqa-8b": {**_LLAMA3_8B, "num_key_value_heads": 1},
    # 4 KV heads: TP duplicates KV from 8 GPUs on
    "llama3-8b-kv4": {**_LLAMA3_8B, "num_key_value_heads": 4},
    # DeepSeek-V3 attention with a dense FFN; the layer count is a flag
    "deepseek-mla": {
        "model_type": "deepseek_v3", "vocab_size": 129280, "hidden_size": 7168, "num_hidden_layers": 4,
        "num_attention_heads": 128, "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_rope_head_dim": 64,
        "qk_nope_head_dim": 128, "v_head_dim": 128, "intermediate_size": 18432, "n_routed_experts": 0,
        "max_position_embeddings": 8 << 20, "rope_interleave": True,
        "rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0, "beta_fast": 32,
                            "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0,
                            "original_max_position_embeddings": 4096},
    },
    # the reference example of the head-group x dimension-slice partition: 16 heads of 512, FP16
    "mha16x512": {
        "model_type": "llama", "vocab_size": 32000, "hidden_size": 8192, "num_hidden_layers": 32,
        "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 512, "intermediate_size": 32768,
        "max_position_embeddings": 1 << 20, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
    },
    # a tiny shape for the CPU test of the benchmark itself
    "tiny-llama": {
        "model_type": "llama", "vocab_size": 256, "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128,
        "max_position_embeddings": 1 << 16,
    },
}


def shape_config(name: str, layers: int | None = None) -> ModelConfig:
    if name not in SHAPES:
        raise ValueError(f"unknown shape {name!r}; choose one of {sorted(SHAPES)}")
    raw = dict(SHAPES[name])
    if layers:
        raw["num_hidden_layers"] = layers
    return ModelConfig.from_dict(raw)
