"""Bench rows as cost-model cases, and the fit of the engine's overheads to their measured TTLs."""
from __future__ import annotations

import itertools

from ..plan import Plan
from .cost import CostOptions, Workload, evaluate
from .hardware import HardwareProfile
from .layouts import layout_of_plan
from .presets import model_of_bench_row

PARAMS = ("step_overhead_s", "layer_overhead_s", "seq_layer_overhead_s", "collective_latency_s", "kv_read_scale",
          "mem_efficiency")
FREE = {4, 5}  # the two scales may move either way from 1; the overheads are >= 0
START = (0.0, 0.0, 0.0, 0.0, 1.0, 1.0)
BOUNDS = {4: (0.25, 8.0), 5: (0.3, 1.5)}
ENGINE_EXCHANGE_BYTES = 4.0  # the engine's all-to-all carries fp32 partials and LSE


def bench_case(row: dict):
    """(cfg, layout, workload, options) of one bench row."""
    cfg = model_of_bench_row(row)
    plan = Plan.parse(str(row["plan"]))
    gpus = int(row.get("gpus") or plan.world_size)
    if gpus != plan.world_size:
        raise ValueError(f"bench row: plan {row['plan']} has {plan.world_size} ranks but gpus={gpus}")
    work = Workload(int(row["context"]), int(row["batch"]), str(row.get("dtype") or "bf16"),
                    row.get("kv_dtype"), ENGINE_EXCHANGE_BYTES)
    options = CostOptions(hopb=int(row.get("hopb_pieces") or 1))
    return cfg, layout_of_plan(plan), work, options


def predict(profile: HardwareProfile, row: dict) -> float:
    """The planner's TTL (s) for the configuration a bench row measured."""
    cfg, layout, work, options = bench_case(row)
    return evaluate(cfg, layout, profile, work, options).ttl_s


def fit_overheads(profile: HardwareProfile, rows: list[dict], iterations: int = 8) -> HardwareProfile:
    """Non-negative step / layer / sequence-layer / collective overheads, the KV-read time scale and
    the memory efficiency, minimizing the squared relative TTL error over the rows (Gauss-Newton:
    the model is linear in the overheads and the KV scale but for the rooflines' and HOP-B's max)."""
    cases = [bench_case(r) for r in rows]
    measured = [float(r["ttl_median_s"]) for r in rows]
    x = list(START)
    for _ in range(iterations):
        current = profile.replace(**dict(zip(PARAMS, x)))
        base = [evaluate(cfg, lay, current, w, o).ttl_s for cfg, lay, w, o in cases]
        step = 1e-6
        features = []
        for j, name in enumerate(PARAMS):
            moved = current.replace(**{name: x[j] + step})
            features.append([(evaluate(cfg, lay, moved, w, o).ttl_s - b) / step
                             for (cfg, lay, w, o), b in zip(cases, base)])
        # residual (c + F x - m) / m with c = base - F x_current
        a = [[features[j][i] / m for j in range(len(PARAMS))] for i, m in enumerate(measured)]
        b = [(m - (base[i] - sum(features[j][i] * x[j] for j in range(len(PARAMS))))) / m
             for i, m in enumerate(measured)]
        x = _nnls(a, b, FREE, START)
        for j, (lo, hi) in BOUNDS.items():
            x[j] = min(max(x[j], lo), hi)
    return profile.replace(**dict(zip(PARAMS, x)))


def _nnls(a: list[list[float]], b: list[float], free=frozenset(), default=None) -> list[float]:
    """Least squares with x >= 0 but for the `free` unknowns, by trying every support (few unknowns);
    an unknown outside the support stays at its default (0 for the constrained ones)."""
    k = len(a[0])
    default = list(default or [0.0] * k)
    best, best_x = None, None
    for size in range(k + 1):
        for support in itertools.combinations(range(k), size):
            x = [default[j] if j in free else 0.0 for j in range(k)]
            if support:
                rhs = [bi - sum(row[j] * x[j] for j in range(k) if j not in support) for row, bi in zip(a, b)]
                sol = _lstsq([[row[j] for j in support] for row in a], rhs)
                if sol is None or any(v < 0 for j, v in zip(support, sol) if j not in free):
                    continue
                for j, v in zip(support, sol):
                    x[j] = v
            res = sum((sum(row[j] * x[j] for j in range(k)) - bi) ** 2 for row, bi in zip(a, b))
            if best is None or res < best - 1e-18:
                best, best_x = res, x
    return best_x


def _lstsq(a: list[list[float]], b: list[float]) -> list[float] | None:
    k = len(a[0])
    m = [[sum(r[i] * r[j] for r in a) for j in range(k)] + [sum(r[i] * bi for r, bi in zip(a, b))] for i in range(k)]
    for col in range(k):
        pivot = max(range(col, k), key=lambda r: abs(m[r][col]))
        scale = max(abs(m[r][c]) for r in range(k) for c in range(k)) or 1.0
        if abs(m[pivot][col]) < 1e-12 * scale:
            return None
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(k):
            if r != col:
                f = m[r][col] / m[col][col]
                m[r] = [vr - f * vc for vr, vc in zip(m[r], m[col])]
    return [m[i][k] / m[i][i] for i in range(k)]
