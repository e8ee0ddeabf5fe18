"""Model families: the math of one rank's shard. Parallel plumbing is injected (LayerContext)."""
from __future__ import annotations

from ..config import ModelConfig
from ..plan import Plan
from .deepseek_v3 import DeepseekV3Model
from .llama import LlamaModel
from .ops import EAGER, Ops


def build_model(cfg: ModelConfig, plan: Plan, rank: int, reader, load, ops: Ops = EAGER,
                replicate_o: bool = False):
    """`load(name, dim=0, ranges=None, boxes=None, dtype=None)` reads a rank's slice of a tensor;
    `ops` are the elementwise pieces (eager, or fused kernels on CUDA); replicate_o: the whole output
    projection on every rank (`replicated_o_supported`)."""
    if cfg.is_mla:
        if replicate_o:
            raise ValueError("a replicated output projection is built for Llama-family models only")
        return DeepseekV3Model(cfg, plan, rank, reader, load, ops)
    return LlamaModel(cfg, plan, rank, reader, load, ops, replicate_o)


def replicated_o_supported(cfg: ModelConfig, plan: Plan) -> bool:
    """Where a rank can project every head's attention itself after the KVP exchange: Llama-family
    helix plans with KVP > 1 and one head group, whose ranks each attend every query head (DeepSeek's
    o_proj, 7168 x 16384, is too large to hold N times)."""
    return (not cfg.is_mla and plan.kind == "helix" and plan.kvp > 1 and plan.groups == 1
            and plan.slices == 1)
