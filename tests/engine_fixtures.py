"""Shared helpers of the engine tests: tiny checkpoints made once, prompts, the HF oracle."""
from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import torch

from helix_core.tiny_models import load_hf_model, make_tiny_model

_ROOT = Path(os.environ.get("HELIX_TEST_MODELS", tempfile.mkdtemp(prefix="helix-test-models-")))

MODELS = {
    "llama": ("llama", {}),  # GQA 8 q / 2 kv heads, llama3 RoPE
    "qwen2": ("qwen2", {}),  # GQA 8 / 4, q/k/v bias, tied embeddings
    "mistral": ("mistral", {}),
    "llama2": ("llama", {"num_key_value_heads": 8, "tie_word_embeddings": True,
                         "rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}}),
    "mha16": ("llama", {"num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 8}),
    "deepseek_v3": ("deepseek_v3", {}),  # MLA + MoE, yarn RoPE, one dense layer then MoE
    "deepseek_v3_fused": ("deepseek_v3", {"fused_experts": True, "shard_max_size": "40KB"}),
}

# shorter than a stage, crossing stage (16) and page (8) boundaries, one long enough to span
# several stages on every KVP rank
PROMPTS = {
    0: [3, 17, 42, 9, 100],
    1: [(7 * i + 1) % 251 for i in range(23)],
    2: [(5 * i + 2) % 251 for i in range(41)],
}


@functools.lru_cache(maxsize=None)
def model_dir(name: str) -> str:
    arch, overrides = MODELS[name]
    return str(make_tiny_model(arch, _ROOT / name, **overrides))


@functools.lru_cache(maxsize=None)
def hf_model(name: str, dtype: torch.dtype = torch.float32):
    return load_hf_model(model_dir(name), dtype=dtype)
