"""Helix planner: which sharding to run for a model, a cluster and a latency budget (docs/planner.md).

    from helix_core.planner import choose_plan
    plan = choose_plan(cfg, gpus=8, hardware="h200", context=131072, batch=8, ttl_budget_s=0.05)

`helix plan` is `helix_core.planner.cli.main`. Pure Python: no torch, matplotlib only for --plot.
"""
from .choose import Choice, NoPlanError, choose, choose_plan
from .cost import Cost, CostOptions, Workload, evaluate
from .frontier import Point, best_for_budget, pareto, sweep
from .hardware import PROFILES, HardwareProfile, get_profile, profile_from_bench
from .layouts import Layout, layouts
from .presets import PRESETS, load_model

__all__ = [
    "PRESETS",
    "PROFILES",
    "Choice",
    "Cost",
    "CostOptions",
    "HardwareProfile",
    "Layout",
    "NoPlanError",
    "Point",
    "Workload",
    "best_for_budget",
    "choose",
    "choose_plan",
    "evaluate",
    "get_profile",
    "layouts",
    "load_model",
    "pareto",
    "profile_from_bench",
    "sweep",
]
