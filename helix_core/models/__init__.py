"""Model families: the math of one rank's shard. Parallel plumbing is injected (LayerContext)."""
from __future__ import annotations

from ..config import ModelConfig
from ..plan import Plan
from .deepseek_v3 import DeepseekV3Model
from .llama import LlamaModel
from .ops import EAGER, Ops


def build_model(cfg: ModelConfig, plan: Plan, rank: int, reader, load, ops: Ops = EAGER):
    """`load(name, dim=0, ranges=None, boxes=None, dtype=None)` reads a rank's slice of a tensor;
    `ops` are the elementwise pieces (eager, or fused kernels on CUDA)."""
    if cfg.is_mla:
        return DeepseekV3Model(cfg, plan, rank, reader, load, ops)
    return LlamaModel(cfg, plan, rank, reader, load, ops)
