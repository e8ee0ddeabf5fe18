"""Bytes and FLOPs one GPU must move and compute per decode step, and the roofline TTL.

Communication is left out of the roofline: it is the floor the hardware sets for the work of
one rank, so percent-of-roofline shows both kernel quality and exposed communication.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..config import ModelConfig
from ..plan import Plan


@dataclass
class StepWork:
    weight_bytes: int
    kv_bytes: int
    flops: int

    @property
    def bytes(self) -> int:
        return self.weight_bytes + self.kv_bytes

    def roofline_s(self, hbm_bytes_per_s: float, matmul_flops_per_s: float) -> float:
        return max(self.bytes / hbm_bytes_per_s, self.flops / matmul_flops_per_s)


def step_work(cfg: ModelConfig, plan: Plan, rank: int, weight_bytes: int, weight_elements: int,
              local_tokens: list[int], batch: int, element_size: int) -> StepWork:
    """local_tokens: this rank's cached tokens of each sequence (its KV shard)."""
    shard = plan.attention_shard(cfg, rank)
    q_heads = shard.q_heads[1] - shard.q_heads[0]
    kv_heads = shard.kv_heads[1] - shard.kv_heads[0]
    dims = sum(hi - lo for lo, hi in shard.head_dims)
    tokens = sum(local_tokens)
    if cfg.is_mla:
        width = cfg.kv_lora_rank + cfg.qk_rope_head_dim
        kv_bytes = tokens * width * element_size * cfg.num_layers
        attn_flops = 2 * q_heads * (width + cfg.kv_lora_rank) * tokens * cfg.num_layers
    else:
        kv_bytes = tokens * kv_heads * 2 * dims * element_size * cfg.num_layers
        attn_flops = 2 * 2 * q_heads * dims * tokens * cfg.num_layers
    # each weight element is one multiply-add per token of the batch
    return StepWork(weight_bytes, kv_bytes, 2 * weight_elements * batch + attn_flops)
