"""The planner against the Helix paper (arXiv 2507.07120): its Appendix A / Figure 1 formulas, and
its headline ratios on GB200 NVL72 at 1M context in FP4 over 1-64 GPUs.

How each ratio is read off two sweeps (A = Helix, B = the best baseline layout):
  tokens/s/user   best tokens/s/user of A over best of B (both at their fastest point);
  tokens/s/GPU    up to: max over TTL budgets of (A's best tokens/s/GPU within it) / (B's);
  HOP-B           up to: max over Helix's frontier points of TTL without HOP-B / TTL with it,
                  same layout and batch, minus one.
"""
from __future__ import annotations

from dataclasses import dataclass

from .cost import CostOptions, Workload, evaluate
from .frontier import POW2_GPUS, compare, pareto, sweep
from .hardware import HardwareProfile, get_profile
from .layouts import BASELINE_KINDS, Layout
from .presets import load_model

CONTEXT = 1_000_000
DTYPE = "fp4"
EXCHANGE_BYTES = 2.0  # the paper's system exchanges bf16 partials (our engine: fp32)
# every batch to 64, then steps of 12.5%: the ratios do not hinge on power-of-two batches
FINE_BATCHES = tuple(sorted(set(range(1, 65)) | {int(64 * 1.125 ** i) for i in range(1, 50)} - {0}))


@dataclass(frozen=True)
class Check:
    name: str
    paper: float
    planner: float
    unit: str = ""

    @property
    def error(self) -> float:
        return self.planner / self.paper - 1.0


def figure1() -> list[Check]:
    """Appendix A / Figure 1: B=8, 128 query heads, 8 KV heads, head 128, F=65536, FP4, 8000 GB/s,
    S=1e6, communication left out: per-layer DRAM read times in microseconds."""
    cfg = load_model("paper-fig1")  # one layer
    hw = get_profile("gb200-nvl72").replace(hbm_bw=8000e9, hbm_bytes=1e18, layer_overhead_s=0.0)
    mode = CostOptions(comm=False, compute=False, lm_head=False)
    work = Workload(CONTEXT, 8, DTYPE)

    def cost(layout: Layout):
        return evaluate(cfg, layout, hw, work, mode)

    checks = [Check("KV read, TP=1", 1024.0, cost(Layout("tp", 1, attn_tp=1)).kv_read_s * 1e6, "us")]
    for tp in (8, 16, 32, 64):
        checks.append(Check(f"KV read, TP={tp}", 128.0, cost(Layout("tp", tp, attn_tp=tp)).kv_read_s * 1e6, "us"))
    checks.append(Check("KV read, TPA=8 x KVP=8", 16.0,
                        cost(Layout("helix", 64, attn_tp=8, kvp=8)).kv_read_s * 1e6, "us"))
    checks.append(Check("weight read, TP=1", 237.0, cost(Layout("tp", 1, attn_tp=1)).weight_read_s * 1e6, "us"))
    checks.append(Check("weight read, TP=8", 29.6, cost(Layout("tp", 8, attn_tp=8)).weight_read_s * 1e6, "us"))
    return checks


@dataclass(frozen=True)
class Headline:
    model: str
    user_ratio: float
    gpu_ratio: float
    gpu_ratio_at_ttl_s: float
    hopb_gain: float
    best_helix: str
    best_baseline: str


def headline(model: str, hw: HardwareProfile | None = None, batches=FINE_BATCHES, gpus=POW2_GPUS,
             **workload) -> Headline:
    cfg = load_model(model)
    hw = hw or get_profile("gb200-nvl72")
    workload.setdefault("exchange_bytes", EXCHANGE_BYTES)
    kw = dict(gpus=gpus, batches=batches, weight_dtype=DTYPE, **workload)
    base = sweep(cfg, hw, CONTEXT, kinds=BASELINE_KINDS, **kw)
    helix = sweep(cfg, hw, CONTEXT, kinds=("helix",), **kw)
    cmp = compare(helix, base)
    front = pareto(helix)
    gain = 0.0
    for p in front:
        off = evaluate(cfg, p.layout, hw, Workload(CONTEXT, p.batch, DTYPE, **workload), CostOptions(hopb=False))
        gain = max(gain, off.ttl_s / p.ttl_s - 1.0)
    fb = pareto(base)[0]
    return Headline(model, cmp.max_user_ratio, cmp.max_gpu_ratio_same_ttl, cmp.at_ttl_s, gain,
                    f"{front[0].layout.label()}, B={front[0].batch}", f"{fb.layout.label()}, B={fb.batch}")


def headline_checks(hw: HardwareProfile | None = None) -> list[Check]:
    ds = headline("deepseek-r1", hw)
    ll = headline("llama-3.1-405b", hw)
    return [
        Check("DeepSeek-R1: tokens/s/user, Helix / best baseline", 1.5, ds.user_ratio, "x"),
        Check("DeepSeek-R1: tokens/s/GPU at the same TTL (up to)", 32.0, ds.gpu_ratio, "x"),
        Check("Llama-3.1-405B: max tokens/s/user, Helix / best baseline", 1.13, ll.user_ratio, "x"),
        Check("Llama-3.1-405B: tokens/s/GPU at the same TTL (up to)", 4.0, ll.gpu_ratio, "x"),
        Check("Llama-3.1-405B: HOP-B tokens/s/user gain (up to)", 12.0, 100 * ll.hopb_gain, "%"),
        Check("DeepSeek-R1: HOP-B tokens/s/user gain (about)", 1.0, 100 * ds.hopb_gain, "%"),
    ]


def _num(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.3g}"


def format_checks(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{'check':<{width}}  {'paper':>9}  {'planner':>9}  {'off by':>7}"]
    for c in checks:
        lines.append(f"{c.name:<{width}}  {_num(c.paper) + c.unit:>9}  {_num(c.planner) + c.unit:>9}  {c.error:>+7.0%}")
    return "\n".join(lines)
