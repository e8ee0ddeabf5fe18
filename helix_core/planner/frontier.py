"""Sweeps of layouts x GPU counts x batches, the throughput-interactivity Pareto frontier, and the
best point for a TTL budget.

A point is one (layout, batch): TTL, tokens/s/user = 1/TTL, tokens/s/GPU = batch / (TTL x N).
Only points that fit in memory and that the layout's rules (the engine's own for engine layouts)
accept are kept.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..config import ModelConfig
from .cost import Cost, CostOptions, Workload, evaluate, shape_of
from .hardware import HardwareProfile
from .layouts import KINDS, Layout, layouts

POW2_BATCHES = tuple(2 ** i for i in range(13))  # 1 .. 4096
POW2_GPUS = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class Point:
    cost: Cost

    @property
    def layout(self) -> Layout:
        return self.cost.layout

    @property
    def batch(self) -> int:
        return self.cost.batch

    @property
    def ttl_s(self) -> float:
        return self.cost.ttl_s

    @property
    def user(self) -> float:
        return self.cost.tokens_per_s_user

    @property
    def gpu(self) -> float:
        return self.cost.tokens_per_s_gpu


def sweep(cfg: ModelConfig, hw: HardwareProfile, context: int, gpus=POW2_GPUS, batches=POW2_BATCHES,
          kinds=KINDS, weight_dtype: str = "bf16", kv_dtype: str | None = None,
          options: CostOptions | None = None, **workload) -> list[Point]:
    """Every fitting (layout, batch) of `kinds` on each GPU count. Batches stop growing for a layout
    at the first one that does not fit (memory only grows with the batch)."""
    options = options or CostOptions()
    points = []
    shape = shape_of(cfg)
    for n in gpus:
        for layout in layouts(cfg, n, kinds, hw.domain_gpus):
            for batch in batches:
                cost = evaluate(cfg, layout, hw, Workload(context, batch, weight_dtype, kv_dtype, **workload), options, shape)
                if not cost.fits:
                    break
                points.append(Point(cost))
    return points


def pareto(points: list[Point]) -> list[Point]:
    """Points no other point beats in both tokens/s/user and tokens/s/GPU, fastest first."""
    front: list[Point] = []
    for p in sorted(points, key=lambda p: (-p.user, -p.gpu)):
        if not front or p.gpu > front[-1].gpu * (1 + 1e-12):
            front.append(p)
    return front


def best_for_budget(points: list[Point], ttl_budget_s: float) -> Point | None:
    """Most tokens/s/GPU within the TTL budget; ties go to the lower TTL."""
    within = [p for p in points if p.ttl_s <= ttl_budget_s * (1 + 1e-12)]
    return max(within, key=lambda p: (p.gpu, -p.ttl_s), default=None)


def throughput_at(points: list[Point], ttl_s: float) -> float:
    best = best_for_budget(points, ttl_s)
    return best.gpu if best else 0.0


def interactivity_at(points: list[Point], tokens_per_s_gpu: float) -> float:
    """Most tokens/s/user among points giving at least this many tokens/s/GPU."""
    return max((p.user for p in points if p.gpu >= tokens_per_s_gpu * (1 - 1e-12)), default=0.0)


@dataclass(frozen=True)
class Comparison:
    max_user_ratio: float  # best tokens/s/user of A over B's
    max_gpu_ratio_same_ttl: float  # up to: tokens/s/GPU of A over B's at the same TTL budget
    at_ttl_s: float  # where that ratio is reached
    max_user_ratio_same_gpu: float  # up to: tokens/s/user of A over B's at the same tokens/s/GPU


def compare(a: list[Point], b: list[Point]) -> Comparison:
    """How far frontier A lies beyond frontier B (budgets both can meet)."""
    fa, fb = pareto(a), pareto(b)
    user_ratio = fa[0].user / fb[0].user
    gpu_ratio, at = 0.0, 0.0
    for p in fb + fa:  # the frontiers are step functions that change only at their own points
        tb = throughput_at(fb, p.ttl_s)
        if tb > 0:
            ratio = throughput_at(fa, p.ttl_s) / tb
            if ratio > gpu_ratio:
                gpu_ratio, at = ratio, p.ttl_s
    same_gpu = 0.0
    for p in fb:
        same_gpu = max(same_gpu, interactivity_at(fa, p.gpu) / p.user)
    return Comparison(user_ratio, gpu_ratio, at, same_gpu)
