"""The plan `helix serve --plan auto` runs: the engine layout with the lowest modelled TTL for the
GPUs, context and batch the server has, among those the engine accepts and that fit in memory.

Only engine layouts (helix, tp, headslice) are ever chosen; pp, dp_attn and medha are modelled
for comparison in `helix plan` but the engine cannot run them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ModelConfig
from ..plan import Plan
from .cost import Cost, CostOptions, Workload, evaluate, shape_of
from .hardware import HardwareProfile, get_profile, normalize_dtype
from .layouts import ENGINE_KINDS, candidates, refusal
from .presets import load_model

ENGINE_DTYPES = ("fp32", "bf16", "fp16")
TIE = 0.01  # TTLs within 1% are a tie: the layout with more free memory wins


class NoPlanError(ValueError):
    """No engine plan serves this model on these GPUs within memory (and the TTL budget)."""

    def __init__(self, message: str, best: Choice | None = None):
        super().__init__(message)
        self.best = best


@dataclass(frozen=True)
class Choice:
    plan: Plan
    cost: Cost
    hopb_pieces: int  # for EngineOptions.hopb_pieces
    others: tuple[Cost, ...] = field(default=(), repr=False)  # the other fitting plans, best first

    def describe(self) -> str:
        c = self.cost
        return (f"{self.plan.spec()}: TTL {c.ttl_s * 1e3:.3f} ms, {c.tokens_per_s_user:.1f} tokens/s/user, "
                f"{c.tokens_per_s_gpu:.1f} tokens/s/GPU at batch {c.batch}; HOP-B pieces {self.hopb_pieces}; "
                f"{(c.weight_bytes + c.kv_bytes) / 1e9:.1f} of {c.hbm_bytes / 1e9:.1f} GB per GPU")


def choose(model_cfg, gpus: int, hardware="h200", context: int = 4096, batch: int = 1,
           ttl_budget_s: float | None = None, dtype: str = "bf16", hopb: bool = True) -> Choice:
    cfg: ModelConfig = load_model(model_cfg)
    hw: HardwareProfile = get_profile(hardware)
    dtype = normalize_dtype(dtype)
    if dtype not in ENGINE_DTYPES:
        raise NoPlanError(f"the engine runs {ENGINE_DTYPES} weights, not {dtype}; `helix plan` models {dtype}")
    limit = cfg.sliding_window or cfg.max_position_embeddings
    if context > limit:
        raise NoPlanError(f"context {context} exceeds the model's {limit} positions; the engine refuses longer sequences")
    if gpus < 1 or batch < 1:
        raise NoPlanError("gpus and batch must be >= 1")
    work = Workload(int(context), int(batch), dtype)
    shape = shape_of(cfg)
    costs, refused = [], []
    for layout in candidates(cfg, gpus, ENGINE_KINDS):
        why = refusal(cfg, layout, hw.domain_gpus)
        if why:
            refused.append(why)
            continue
        costs.append(evaluate(cfg, layout, hw, work, CostOptions(hopb=hopb), shape))
    if not costs:
        raise NoPlanError(f"the engine accepts no plan for this model on {gpus} GPUs: " + "; ".join(refused[:4]))
    fitting = [c for c in costs if c.fits]
    if not fitting:
        least = min(costs, key=lambda c: c.weight_bytes + c.kv_bytes)
        raise NoPlanError(
            f"no plan fits: the leanest ({least.layout.spec()}) needs {(least.weight_bytes + least.kv_bytes) / 1e9:.1f} GB "
            f"per GPU for batch {batch} x context {context}, {hw.name} allows {least.hbm_bytes / 1e9:.1f} GB; "
            "use more GPUs, a smaller batch or context")
    fastest = min(c.ttl_s for c in fitting)
    order = {kind: i for i, kind in enumerate(("helix", "tp", "headslice"))}
    ranked = sorted(fitting, key=lambda c: (c.ttl_s > fastest * (1 + TIE), c.weight_bytes + c.kv_bytes,
                                            c.ttl_s, order[c.layout.kind], c.layout.ep))
    best = ranked[0]
    choice = Choice(best.layout.engine_plan(), best, best.hopb_pieces, tuple(ranked[1:]))
    if ttl_budget_s is not None and best.ttl_s > ttl_budget_s:
        raise NoPlanError(f"no plan meets TTL {ttl_budget_s * 1e3:.3f} ms; the best is {choice.describe()}", choice)
    return choice


def choose_plan(model_cfg, gpus: int, hardware="h200", context: int = 4096, batch: int = 1,
                ttl_budget_s: float | None = None, **kwargs) -> Plan:
    """The Plan for `helix serve --plan auto` (raises NoPlanError, with .best when only the budget fails)."""
    return choose(model_cfg, gpus, hardware, context, batch, ttl_budget_s, **kwargs).plan
