"""Random weights made directly on the device, slice by slice, for benchmarks of real-size shapes.

The model code loads weights through `load(name, dim, ranges, boxes, dtype)`; this module answers
the same calls with random tensors of exactly the slice's shape, so `helix bench` runs the same
model code as a checkpoint would, with no file and no host copy of the full model.
"""
from __future__ import annotations

import re

import torch

from .config import ModelConfig


def full_shape(cfg: ModelConfig, name: str) -> tuple[int, ...]:
    """The shape a Hugging Face checkpoint gives tensor `name` of this config."""
    h, heads = cfg.hidden_size, cfg.num_heads
    if name in ("model.embed_tokens.weight", "lm_head.weight"):
        return (cfg.vocab_size, h)
    if name == "model.norm.weight":
        return (h,)
    key = re.sub(r"^model\.layers\.\d+\.", "", name)
    key = re.sub(r"experts\.\d+\.", "experts.N.", key)
    d, kv = cfg.head_dim, cfg.num_kv_heads
    shared = cfg.moe_intermediate_size * cfg.n_shared_experts
    shapes = {
        "input_layernorm.weight": (h,),
        "post_attention_layernorm.weight": (h,),
        "self_attn.q_proj.weight": (heads * d, h),
        "self_attn.q_proj.bias": (heads * d,),
        "self_attn.k_proj.weight": (kv * d, h),
        "self_attn.k_proj.bias": (kv * d,),
        "self_attn.v_proj.weight": (kv * d, h),
        "self_attn.v_proj.bias": (kv * d,),
        "self_attn.o_proj.weight": (h, heads * cfg.value_head_dim),
        "self_attn.o_proj.bias": (h,),
        "mlp.gate_proj.weight": (cfg.intermediate_size, h),
        "mlp.up_proj.weight": (cfg.intermediate_size, h),
        "mlp.down_proj.weight": (h, cfg.intermediate_size),
    }
    if cfg.is_mla:
        lora, rope = cfg.kv_lora_rank, cfg.qk_rope_head_dim
        shapes.update({
            "self_attn.q_a_proj.weight": (cfg.q_lora_rank or 0, h),
            "self_attn.q_a_layernorm.weight": (cfg.q_lora_rank or 0,),
            "self_attn.q_b_proj.weight": (heads * d, cfg.q_lora_rank or 0),
            "self_attn.kv_a_proj_with_mqa.weight": (lora + rope, h),
            "self_attn.kv_a_layernorm.weight": (lora,),
            "self_attn.kv_b_proj.weight": (heads * (cfg.qk_nope_head_dim + cfg.v_head_dim), lora),
            "mlp.gate.weight": (cfg.n_routed_experts, h),
            "mlp.gate.e_score_correction_bias": (cfg.n_routed_experts,),
            "mlp.experts.N.gate_proj.weight": (cfg.moe_intermediate_size, h),
            "mlp.experts.N.up_proj.weight": (cfg.moe_intermediate_size, h),
            "mlp.experts.N.down_proj.weight": (h, cfg.moe_intermediate_size),
            "mlp.shared_experts.gate_proj.weight": (shared, h),
            "mlp.shared_experts.up_proj.weight": (shared, h),
            "mlp.shared_experts.down_proj.weight": (h, shared),
        })
    if key not in shapes:
        raise KeyError(f"no random shape known for tensor '{name}'")
    return shapes[key]


class RandomWeights:
    """Stands in for CheckpointReader + the engine's loader: `has()` and `load()`."""

    def __init__(self, cfg: ModelConfig, device: torch.device, dtype: torch.dtype, seed: int = 0):
        self.cfg, self.device, self.dtype = cfg, device, dtype
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.bytes_read = 0

    def has(self, name: str) -> bool:
        if name == "lm_head.weight":
            return not self.cfg.tie_word_embeddings
        if name.endswith(("experts.gate_up_proj", "experts.down_proj")):
            return False  # answer with the per-expert layout
        try:
            full_shape(self.cfg, name)
            return True
        except KeyError:
            return False

    def load(self, name, dim=0, ranges=None, boxes=None, dtype=None):
        shape = list(full_shape(self.cfg, name))
        boxes = boxes if boxes is not None else ({dim: ranges} if ranges is not None else {})
        for axis, axis_ranges in boxes.items():
            shape[axis] = sum(stop - start for start, stop in axis_ranges)
        dtype = dtype or self.dtype
        if len(shape) == 1:  # norms near 1, biases near 0
            base = 1.0 if "norm" in name else 0.0
            return base + 0.02 * torch.randn(shape, generator=self.generator, device=self.device, dtype=dtype)
        fan_in = full_shape(self.cfg, name)[-1]
        return torch.randn(shape, generator=self.generator, device=self.device, dtype=dtype) * fan_in ** -0.5
