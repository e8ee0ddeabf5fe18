"""Model presets as Hugging Face style config dicts, parsed by the engine's own ModelConfig.

The planner models exactly what the engine would load, so a preset goes through
`ModelConfig.from_dict` like any checkpoint's config.json (DeepSeek-R1's real config carries an
FP8 `quantization_config` the engine refuses; the preset leaves it out: the planner chooses the
dtype itself).
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from ..config import ModelConfig

_LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192}

PRESETS: dict[str, dict] = {
    "llama-3-8b": {
        "model_type": "llama", "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
        "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": 8192, "torch_dtype": "bfloat16",
    },
    "llama-3.1-405b": {
        "model_type": "llama", "vocab_size": 128256, "hidden_size": 16384, "intermediate_size": 53248,
        "num_hidden_layers": 126, "num_attention_heads": 128, "num_key_value_heads": 8, "head_dim": 128,
        "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "rope_scaling": dict(_LLAMA3_ROPE),
        "max_position_embeddings": 131072, "torch_dtype": "bfloat16",
    },
    "deepseek-r1": {
        "model_type": "deepseek_v3", "vocab_size": 129280, "hidden_size": 7168, "intermediate_size": 18432,
        "moe_intermediate_size": 2048, "num_hidden_layers": 61, "num_attention_heads": 128,
        "num_key_value_heads": 128, "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_rope_head_dim": 64,
        "qk_nope_head_dim": 128, "v_head_dim": 128, "n_routed_experts": 256, "num_experts_per_tok": 8,
        "n_shared_experts": 1, "first_k_dense_replace": 3, "moe_layer_freq": 1, "n_group": 8, "topk_group": 4,
        "norm_topk_prob": True, "routed_scaling_factor": 2.5, "topk_method": "noaux_tc", "scoring_func": "sigmoid",
        "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 163840,
        "rope_scaling": {"type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096,
                         "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
        "torch_dtype": "bfloat16",
    },
    # the multi-head reference example: 16 heads of 512, hidden 8192 (32 layers and vocab 32000 assumed)
    "mha-16x512": {
        "model_type": "llama", "vocab_size": 32000, "hidden_size": 8192, "intermediate_size": 32768,
        "num_hidden_layers": 32, "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 512,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 1048576, "torch_dtype": "float16",
    },
    # Helix paper, Figure 1 / Appendix A: dense, 128 query heads, 8 KV heads, head size 128, F = 65536
    "paper-fig1": {
        "model_type": "llama", "vocab_size": 128256, "hidden_size": 16384, "intermediate_size": 65536,
        "num_hidden_layers": 1, "num_attention_heads": 128, "num_key_value_heads": 8, "head_dim": 128,
        "rope_theta": 500000.0, "max_position_embeddings": 1048576, "torch_dtype": "bfloat16",
    },
}
_ALIASES = {
    "llama38b": "llama-3-8b", "llama3-8b": "llama-3-8b", "metallama38b": "llama-3-8b",
    "llama31405b": "llama-3.1-405b", "llama405b": "llama-3.1-405b", "metallama31405b": "llama-3.1-405b",
    "deepseekr1": "deepseek-r1", "deepseekv3": "deepseek-r1", "dsr1": "deepseek-r1", "dsv3": "deepseek-r1",
    "mha16x512": "mha-16x512", "mha16": "mha-16x512", "mhareference": "mha-16x512",
    "paperfig1": "paper-fig1",
}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def preset_name(name: str) -> str | None:
    """The canonical preset name for `name` (case, dashes, dots and 'meta-' ignored), or None."""
    key = _key(name)
    for canonical in PRESETS:
        if _key(canonical) == key:
            return canonical
    return _ALIASES.get(key)


def preset_config(name: str) -> dict:
    canonical = preset_name(name)
    if canonical is None:
        raise ValueError(f"unknown model preset {name!r}: choose one of {sorted(PRESETS)} or give a config.json")
    return json.loads(json.dumps(PRESETS[canonical]))


def load_model(spec: str | Path | dict | ModelConfig, layers: int | None = None) -> ModelConfig:
    """A ModelConfig from a preset name, a config.json path, a model folder or a config dict."""
    if isinstance(spec, ModelConfig):
        cfg = spec
    elif isinstance(spec, dict):
        cfg = ModelConfig.from_dict(spec)
    else:
        path = Path(str(spec))
        if path.is_dir():
            cfg = ModelConfig.from_dir(path)
        elif path.is_file():
            cfg = ModelConfig.from_dict(json.loads(path.read_text()))
        else:
            cfg = ModelConfig.from_dict(preset_config(str(spec)))
    return dataclasses.replace(cfg, num_layers=int(layers)) if layers else cfg


def model_of_bench_row(row: dict) -> ModelConfig:
    """The model a bench row measured: its 'config' dict, or its 'shape' (a `helix bench` shape, a
    preset name, a config path or a dict), with 'layers' / 'num_layers' giving the layer count bench ran."""
    from ..bench.shapes import SHAPES as BENCH_SHAPES  # config dicts only; no torch

    spec = row.get("config") or row.get("model_config") or row.get("shape")
    if spec is None:
        raise ValueError("bench row has no 'shape' or 'config'")
    if isinstance(spec, str) and spec in BENCH_SHAPES:
        spec = BENCH_SHAPES[spec]
    return load_model(spec, row.get("layers") or row.get("num_layers"))
