"""Bench rows as cost-model cases; the fit of the attention kernels' achieved rates to the rows'
attention_s, and of the engine's overheads to their measured TTLs."""
from __future__ import annotations

import itertools
from pathlib import Path

from ..plan import Plan
from .cost import CostOptions, Workload, attention_rate_kind, attention_work, evaluate
from .hardware import HardwareProfile
from .layouts import layout_of_plan
from .presets import model_of_bench_row

PARAMS = ("step_overhead_s", "layer_overhead_s", "seq_layer_overhead_s", "collective_latency_s", "kv_read_scale",
          "mem_efficiency")
SCALES = {"kv_read_scale": (0.25, 8.0), "mem_efficiency": (0.3, 1.5)}  # move either way from 1, within bounds;
# the overheads are >= 0 and start at 0
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
    # rows from before the sliced kernels carry no attention_path: their headslice m > 1 ran the torch path
    options = CostOptions(hopb=int(row.get("hopb_pieces") or 1),
                          sliced_kernels=row.get("attention_path") == "triton-sliced")
    return cfg, layout_of_plan(plan), work, options


def predict(profile: HardwareProfile, row: dict) -> float:
    """The planner's TTL (s) for the configuration a bench row measured."""
    cfg, layout, work, options = bench_case(row)
    return evaluate(cfg, layout, profile, work, options).ttl_s


def attention_case(row: dict):
    """The decode attention a bench row's attention_s timed (cost.AttentionWork)."""
    cfg, layout, work, options = bench_case(row)
    return attention_work(cfg, layout, work, sliced_kernels=options.sliced_kernels)


SEPARATES = 2.0  # a class's rows separate rate from per-call time when their work per call spans this factor


def fit_attention(profile: HardwareProfile, rows: list[dict]) -> HardwareProfile:
    """The achieved rate of each decode-attention kernel class (cost.kernel_class: the paged kernel per
    group size and head dim, as KV bytes/s; MLA as FLOP/s), from the rows' attention_s (all layers'
    attention kernels alone, one call per layer): attention_s = work / rate + calls x call_s, with
    work = the KV bytes read (paged) or the attention FLOPs (MLA) of the cost model, fitted by least
    squares on the relative error over the class's rows.

    Where the class's rows separate the two (their work per call spans a factor SEPARATES or more,
    and the fit gives rate > 0, call_s >= 0), both are fitted. Otherwise only the rate is, with the
    per-call time of the separated classes of the same kernel family (the paged kernel's classes share
    one launch path: stage 1, the split merge; for several, their mean weighted by rows), or 0 where
    there is none. Classes without attention_s and headslice's torch fallback keep the roofline."""
    groups: dict[str, list[tuple[float, int, float]]] = {}
    for row in rows:
        if not row.get("attention_s"):
            continue
        work = attention_case(row)
        kind = attention_rate_kind(work.kernel)
        if kind is None:
            continue
        amount = work.kv_bytes if kind == "kv_Bps" else work.flops
        groups.setdefault(work.kernel, []).append((amount, work.calls, float(row["attention_s"])))
    rates = dict(profile.attention)
    unseparated = []
    for kernel, items in groups.items():
        sol = None
        per_call = [w / c for w, c, _ in items]
        if max(per_call) >= SEPARATES * min(per_call):
            a = [[w / m, c / m] for w, c, m in items]
            scale = [max(r[j] for r in a) for j in range(2)]  # columns of order 1 (bytes ~1e10, calls ~10)
            sol = _lstsq([[r[j] / scale[j] for j in range(2)] for r in a], [1.0] * len(a))
            sol = sol and [v / s for v, s in zip(sol, scale)]
        if sol is None or sol[0] <= 0 or sol[1] < 0:
            unseparated.append(kernel)
            continue
        rates[kernel] = {attention_rate_kind(kernel): 1.0 / sol[0], "call_s": sol[1]}
    separated = [k for k in groups if k not in unseparated]
    for kernel in unseparated:
        items = groups[kernel]
        donors = [k for k in separated if _family(k) == _family(kernel)]
        rows_of = sum(len(groups[k]) for k in donors)
        call = sum(rates[k]["call_s"] * len(groups[k]) for k in donors) / rows_of if donors else 0.0
        # minimize sum((w x + c call) / m - 1)^2 over x = 1 / rate
        x = sum(w / m * (1 - c * call / m) for w, c, m in items) / sum((w / m) ** 2 for w, c, m in items)
        if x <= 0:  # the per-call time alone exceeds the measurement: the rate alone
            call = 0.0
            x = sum(w / m for w, c, m in items) / sum((w / m) ** 2 for w, c, m in items)
        rates[kernel] = {attention_rate_kind(kernel): 1.0 / x, "call_s": call}
    return profile.replace(attention=rates)


def _family(kernel: str) -> str:
    return "mla" if kernel.startswith("mla") else "sliced" if kernel.startswith("sliced-") else "paged"


def fitted_params(profile: HardwareProfile, rows: list[dict]) -> tuple[str, ...]:
    """What fit_overheads fits: the overheads and the memory efficiency, and the KV-read scale only
    where some row's attention has no measured rate (no attention_s for its class, or headslice's
    torch fallback)."""
    kernels = {attention_case(r).kernel for r in rows}
    measured = all(profile.attention_rates(k) for k in kernels if k != "fallback") and "fallback" not in kernels
    return tuple(p for p in PARAMS if not (measured and p == "kv_read_scale"))


def fit_overheads(profile: HardwareProfile, rows: list[dict], iterations: int = 8) -> HardwareProfile:
    """Non-negative step / layer / sequence-layer / collective overheads, the KV-read time scale (see
    fitted_params) and the memory efficiency, minimizing the squared relative TTL error over the rows
    (Gauss-Newton: the model is linear in the overheads and the KV scale but for the rooflines' and
    HOP-B's max)."""
    params = fitted_params(profile, rows)
    free = {j for j, name in enumerate(params) if name in SCALES}
    start = [1.0 if name in SCALES else 0.0 for name in params]
    cases = [bench_case(r) for r in rows]
    measured = [float(r["ttl_median_s"]) for r in rows]
    x = list(start)
    for _ in range(iterations):
        current = profile.replace(**dict(zip(params, x)))
        base = [evaluate(cfg, lay, current, w, o).ttl_s for cfg, lay, w, o in cases]
        step = 1e-6
        features = []
        for j, name in enumerate(params):
            moved = current.replace(**{name: x[j] + step})
            features.append([(evaluate(cfg, lay, moved, w, o).ttl_s - b) / step
                             for (cfg, lay, w, o), b in zip(cases, base)])
        # residual (c + F x - m) / m with c = base - F x_current
        a = [[features[j][i] / m for j in range(len(params))] for i, m in enumerate(measured)]
        b = [(m - (base[i] - sum(features[j][i] * x[j] for j in range(len(params))))) / m
             for i, m in enumerate(measured)]
        x = _nnls(a, b, free, start)
        for j, name in enumerate(params):
            if name in SCALES:
                lo, hi = SCALES[name]
                x[j] = min(max(x[j], lo), hi)
    return profile.replace(**dict(zip(params, x)))


def attention_kernel_s(profile: HardwareProfile, row: dict) -> float | None:
    """What the profile predicts for a row's attention_s (all layers' attention kernels, one call a
    layer, no HOP-B pieces, no projections), or None where the row's kernel class has no measured
    rates (the roofline of the cost model applies there)."""
    cfg, layout, work, options = bench_case(row)
    aw = attention_work(cfg, layout, work, sliced_kernels=options.sliced_kernels)
    rates = profile.attention_rates(aw.kernel)
    if aw.kernel == "fallback" or not rates:
        return None
    kv_bw = rates.get("kv_Bps") or profile.hbm_bw * profile.mem_efficiency / profile.kv_read_scale
    flops = rates.get("flops") or profile.flops_for(work.kv) * profile.flop_efficiency
    return max(aw.kv_bytes / kv_bw, aw.flops / flops) + aw.calls * rates.get("call_s", 0.0)


def comparison(profile: HardwareProfile, rows: list[dict]) -> list[dict]:
    """Measured against modelled TTL (and attention kernel time) for each row."""
    out = []
    for row in rows:
        measured = float(row["ttl_median_s"])
        planner = predict(profile, row)
        out.append({"file": Path(str(row.get("_file", ""))).name, "shape": row.get("shape"), "layers": row.get("layers"),
                    "plan": row["plan"], "gpus": int(row.get("gpus") or 1), "context": int(row["context"]),
                    "batch": int(row["batch"]), "hopb": int(row.get("hopb_pieces") or 1), "measured_s": measured,
                    "planner_s": planner, "error": planner / measured - 1,
                    "attention_measured_s": row.get("attention_s"),
                    "attention_planner_s": attention_kernel_s(profile, row)})
    return out


def format_comparison(profile: HardwareProfile, rows: list[dict]) -> str:
    """The markdown table of docs/planner.md, "Measured vs modelled" (`helix plan --bench ... --compare`)."""
    def ms(v):
        return "-" if v is None else f"{float(v) * 1e3:.2f}"
    lines = [("| file | shape (layers) | plan | GPUs | context x batch | HOP-B | measured ms | planner ms | error "
              "| attention_s measured / fitted ms |"),
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in comparison(profile, rows):
        lines.append(f"| {r['file']} | {r['shape']} ({r['layers']}) | `{r['plan']}` | {r['gpus']} "
                     f"| {r['context']:,} x {r['batch']} | {r['hopb']} | {ms(r['measured_s'])} | {ms(r['planner_s'])} "
                     f"| {r['error']:+.1%} | {ms(r['attention_measured_s'])} / {ms(r['attention_planner_s'])} |")
    return "\n".join(lines)


def format_profile(profile: HardwareProfile) -> str:
    """The measured and fitted constants of a profile, one line each."""
    lines = [f"HBM (copy, measured) {profile.hbm_bw / 1e12:.2f} TB/s; weight reads reach {profile.mem_efficiency:.3f} of it",
             f"matmul (measured) {profile.flops_for('bf16') / 1e12:.0f} TFLOP/s bf16",
             f"KV-read scale {profile.kv_read_scale:.3f} (applies where no attention rate is measured)"]
    for kernel, rates in sorted(profile.attention.items()):
        what = ", ".join(f"{rates[k] / 1e12:.2f} TB/s of KV" if k == "kv_Bps" else f"{rates[k] / 1e12:.1f} TFLOP/s"
                         for k in ("kv_Bps", "flops") if rates.get(k))
        lines.append(f"attention {kernel}: {what}, {rates.get('call_s', 0.0) * 1e6:.1f} us per kernel call")
    lines.append(f"overheads: step {profile.step_overhead_s * 1e6:.0f} us, layer {profile.layer_overhead_s * 1e6:.1f} us, "
                 f"sequence x layer {profile.seq_layer_overhead_s * 1e6:.2f} us, "
                 f"collective {profile.collective_latency_s * 1e6:.1f} us")
    return "\n".join(lines)


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
