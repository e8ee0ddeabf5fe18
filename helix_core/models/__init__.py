"""Model families: the math of one rank's shard. Parallel plumbing is injected (LayerContext)."""
from __future__ import annotations

from ..config import ModelConfig
from ..plan import Plan
from .deepseek_v3 import DeepseekV3Model
from .llama import LlamaModel


def build_model(cfg: ModelConfig, plan: Plan, rank: int, reader, load):
    """`load(name, dim=0, ranges=None, boxes=None, dtype=None)` reads a rank's slice of a tensor."""
    if cfg.is_mla:
        return DeepseekV3Model(cfg, plan, rank, reader, load)
    return LlamaModel(cfg, plan, rank, reader, load)
