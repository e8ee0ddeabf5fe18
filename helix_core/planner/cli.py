"""`helix plan`: the best layout for a TTL budget and the throughput-interactivity Pareto frontier.

    helix plan --model llama-3.1-405b --hardware gb200-nvl72 --gpus 64 --context 1M --dtype fp4 \\
        --ttl-budget-ms 20 --plot frontier.png
    helix plan --model /models/llama --hardware h200 --gpus 8 --context 128k --batch 16
    helix plan --bench docs/results/bench-*.json --write-profile h200-measured.json
    helix plan --bench docs/results/bench-*.json --compare   # measured vs modelled, every bench row
    helix plan --paper                       # the planner against the Helix paper's numbers
"""
from __future__ import annotations

import argparse
import json
import sys

from .cost import CostOptions
from .frontier import Point, best_for_budget, pareto, sweep
from .hardware import DTYPE_BYTES, PROFILES, get_profile, profile_from_bench
from .layouts import BASELINE_KINDS, ENGINE_KINDS, KINDS
from .presets import PRESETS, load_model

CLI_BATCHES = sorted({2 ** i for i in range(13)} | {3 * 2 ** i for i in range(12)})  # 1, 2, 3, 4, 6, 8, 12 .. 6144
_SCALES = {"ki": 1024, "mi": 1024 ** 2, "k": 1_000, "m": 1_000_000}


def parse_count(text: str) -> int:
    """'1M' -> 1,000,000; '128k' -> 128,000; '128Ki' -> 131,072; '131072' -> 131,072."""
    text = str(text).strip().lower().replace("_", "").replace(",", "")
    for suffix, scale in _SCALES.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * scale)
    return int(text)


def positive_count(text: str) -> int:
    """parse_count for argparse: at least 1, else a usage error naming the flag."""
    try:
        value = parse_count(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count of at least 1 (e.g. 8, 128k, 1M, 128Ki)")
    return value


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="helix plan", description=__doc__,
                                          formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help=f"preset ({', '.join(PRESETS)}), a config.json or a model folder")
    p.add_argument("--hardware", default="h200", help=f"{', '.join(PROFILES)} or a profile JSON (default h200)")
    p.add_argument("--bench", nargs="+", metavar="JSON", help="build the profile from these `helix bench` files")
    p.add_argument("--write-profile", metavar="PATH", help="write the hardware profile used as JSON")
    p.add_argument("--compare", action="store_true",
                   help="with --bench: print the fitted profile and measured vs modelled TTL of every bench row")
    p.add_argument("--gpus", type=positive_count, default=8, help="GPUs available (default 8)")
    p.add_argument("--exact-gpus", action="store_true", help="only layouts over exactly --gpus GPUs")
    p.add_argument("--context", type=positive_count, default=131072, help="KV tokens per sequence: 1M, 128k (decimal) or 128Ki (131072)")
    p.add_argument("--batch", type=positive_count, help="fix the batch (default: sweep 1, 2, 3, 4, 6, 8, 12, ...)")
    p.add_argument("--dtype", default="bf16", choices=sorted(DTYPE_BYTES), help="weights dtype")
    p.add_argument("--kv-dtype", choices=sorted(DTYPE_BYTES), help="KV cache dtype (default: --dtype)")
    p.add_argument("--ttl-budget-ms", type=float, help="TTL budget; default: the fastest point")
    p.add_argument("--layouts", choices=("all", "engine"), default="all",
                   help="frontier of every modelled layout (default) or the engine's only")
    p.add_argument("--no-hopb", action="store_true", help="model Helix without HOP-B")
    p.add_argument("--rows", type=positive_count, default=25, help="frontier rows to print")
    p.add_argument("--plot", metavar="PNG", help="write the Pareto frontiers as a PNG (needs matplotlib)")
    p.add_argument("--json", metavar="PATH", help="write the best layouts and the frontier as JSON")
    p.add_argument("--paper", action="store_true", help="compare the planner with the Helix paper and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run parsed `helix plan` flags (for a subparser made with build_parser(...))."""
    try:
        return _run(args)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"helix plan: {err}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.paper:
        from .paper import figure1, format_checks, headline_checks

        print("Helix paper, Appendix A / Figure 1 (per layer, communication left out):")
        print(format_checks(figure1()))
        print("\nHeadline ratios, GB200 NVL72, 1M context, FP4, 1-64 GPUs (docs/planner.md):")
        print(format_checks(headline_checks()))
        return 0
    hw = profile_from_bench(args.bench) if args.bench else get_profile(args.hardware)
    if args.compare:
        if not args.bench:
            raise ValueError("--compare needs --bench")
        from .fit import format_comparison, format_profile
        from .hardware import load_bench_rows

        print(f"{hw.name}, fitted to {', '.join(args.bench)}:\n{format_profile(hw)}\n")
        print(format_comparison(hw, load_bench_rows(args.bench)))
        if not (args.write_profile or args.model):
            return 0
    if args.write_profile:
        hw.save(args.write_profile)
        print(f"helix plan: wrote the {hw.name} profile to {args.write_profile}")
        if not args.model:
            return 0
    if not args.model:
        raise ValueError("--model is required (or --paper, or --bench with --write-profile)")
    cfg = load_model(args.model)
    gpus = [args.gpus] if args.exact_gpus else sorted({g for g in (1, 2, 4, 8, 16, 32, 64, 128) if g < args.gpus}
                                                       | {args.gpus})
    batches = [args.batch] if args.batch else CLI_BATCHES
    kinds = KINDS if args.layouts == "all" else ENGINE_KINDS
    options = CostOptions(hopb=not args.no_hopb)
    points = sweep(cfg, hw, args.context, gpus, batches, kinds, args.dtype, args.kv_dtype, options)
    engine_points = [p for p in points if p.layout.engine]
    limit = cfg.sliding_window or cfg.max_position_embeddings
    print(f"helix plan: {args.model} ({cfg.num_layers} layers, {cfg.num_heads} heads, {cfg.cached_kv_heads} KV heads) "
          f"on up to {args.gpus} x {hw.name}; context {args.context:,}; weights {args.dtype}, "
          f"KV {args.kv_dtype or args.dtype}")
    if args.context > limit:
        print(f"  note: context {args.context:,} exceeds the model's {limit:,} positions: the engine would refuse "
              "such sequences; the numbers are what-if")
    if args.dtype not in ("bf16", "fp16", "fp32"):
        print(f"  note: the engine runs bf16/fp16/fp32 weights; {args.dtype} is modelled only")
    if not points:
        print("  no layout fits in memory: use more GPUs, a smaller batch or context")
        return 1
    budget = args.ttl_budget_ms / 1e3 if args.ttl_budget_ms else None
    best_engine = _best(engine_points, budget)
    best_any = _best(points, budget)
    what = f"TTL <= {args.ttl_budget_ms:g} ms" if budget else "the lowest TTL"
    if best_engine:
        print(f"best engine layout for {what}: {best_engine.layout.spec()}  [{_summary(best_engine)}]")
    else:
        print(f"no engine layout meets {what}")
    if best_any and (best_engine is None or best_any.layout != best_engine.layout
                     or best_any.batch != best_engine.batch):
        print(f"best modelled layout (the engine cannot run {', '.join(BASELINE_KINDS[1:])}): "
              f"{best_any.layout.label()}  [{_summary(best_any)}]")
    front = pareto(points)
    print(f"\nPareto frontier ({len(front)} points; each the best layout and batch for its TTL):")
    print(_table(front, args.rows))
    if args.plot:
        from .plot import plot_frontiers

        series = {"Helix (KVP x TPA)": [p for p in points if p.layout.kind == "helix"],
                  "baselines (TP, PP, DP-attn, Medha)": [p for p in points if p.layout.kind in BASELINE_KINDS],
                  "engine layouts": engine_points}
        title = f"{args.model}, {hw.name}, <= {args.gpus} GPUs, context {args.context:,}, {args.dtype}"
        print(f"wrote {plot_frontiers(series, args.plot, title, budget, best_engine)}")
    if args.json:
        out = {"model": args.model, "hardware": hw.to_dict(), "context": args.context, "dtype": args.dtype,
               "kv_dtype": args.kv_dtype or args.dtype, "ttl_budget_s": budget,
               "best_engine": _row(best_engine) if best_engine else None,
               "best_modelled": _row(best_any) if best_any else None, "frontier": [_row(p) for p in front]}
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
        print(f"wrote {args.json}")
    return 0


def _best(points: list[Point], budget: float | None) -> Point | None:
    if not points:
        return None
    if budget is None:
        return min(points, key=lambda p: (p.ttl_s, -p.gpu))
    return best_for_budget(points, budget)


def _summary(p: Point) -> str:
    return (f"batch {p.batch} on {p.layout.n} GPUs, TTL {p.ttl_s * 1e3:.3f} ms, {p.user:.1f} tokens/s/user, "
            f"{p.gpu:.2f} tokens/s/GPU, HOP-B pieces {p.cost.hopb_pieces}")


def _row(p: Point) -> dict:
    return {"layout": p.layout.label(), "kind": p.layout.kind, "engine_plan": p.layout.spec() if p.layout.engine else None,
            "gpus": p.layout.n, "batch": p.batch, "ttl_s": p.ttl_s, "tokens_per_s_user": p.user,
            "tokens_per_s_gpu": p.gpu, "hopb_pieces": p.cost.hopb_pieces,
            "hbm_per_gpu_bytes": p.cost.weight_bytes + p.cost.kv_bytes}


def _table(front: list[Point], rows: int) -> str:
    if len(front) > rows:  # keep both ends and an even spread
        step = (len(front) - 1) / (rows - 1)
        front = [front[round(i * step)] for i in range(rows)]
    lines = [f"{'TTL ms':>9} {'tok/s/user':>10} {'tok/s/GPU':>10} {'batch':>5} {'N':>3}  {'layout':<40} engine plan"]
    for p in front:
        plan = p.layout.spec() if p.layout.engine else "(model only)"
        lines.append(f"{p.ttl_s * 1e3:>9.3f} {p.user:>10.1f} {p.gpu:>10.2f} {p.batch:>5} {p.layout.n:>3}  "
                     f"{p.layout.label():<40} {plan}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
