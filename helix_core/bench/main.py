"""`helix bench`: TTL of Helix, the TP baseline, one GPU and HF transformers, side by side.

    helix bench --shape llama3-8b --plans helix:kvp=2,tpa=1 tp:n=2 \
        --points 1x131072 8x131072 1x1048576 --hopb 1 2 --json out/bench.json

Weights are random and made on the GPU; the KV cache is filled with random data to the asked
context, so long contexts need no prefill (the output says so).
"""
from __future__ import annotations

import argparse
import json
import sys

from ..engine import ALL_REDUCE_CHOICES
from ..launcher import free_port
from .ranks import run_ranks
from .rank_worker import MAX_CONTEXT, BenchJob, run_rank

COLUMNS = [("plan", "{}"), ("gpus", "{}"), ("context", "{}"), ("batch", "{}"), ("page_size", "{}"), ("hopb_pieces", "{}"),
           ("all_reduce", "{}"), ("exchange", "{}"), ("small_linear", "{}"), ("fusions", "{}"),
           ("merge_in_projection", "{}"), ("o_projection", "{}"), ("l2_prefetch_mib", "{}"),
           ("ttl_median_s", "{:.3e}"), ("ttl_p99_s", "{:.3e}"), ("ttl_one_at_a_time_s", "{:.3e}"),
           ("ttl_device_s", "{:.3e}"), ("tokens_per_s", "{:.1f}"),
           ("bytes_per_gpu", "{:.3e}"), ("flops_per_gpu", "{:.3e}"), ("roofline_s", "{:.3e}"), ("pct_roofline", "{:.0%}"),
           ("pct_roofline_sustained", "{:.0%}"),
           ("attention_s", "{:.2e}"), ("ffn_s", "{:.2e}"), ("other_s", "{:.2e}"), ("all_to_all_s", "{:.2e}"),
           ("all_reduce_s", "{:.2e}"), ("compute_only_s", "{:.2e}"), ("exposed_comm_s", "{:.2e}"),
           ("attention_verified", "{}")]


def parse_points(items: list[str]) -> tuple[tuple[int, int], ...]:
    """BATCHxCONTEXT items (context in tokens, with k / m for 2^10 / 2^20, or max); ValueError if malformed."""
    points = []
    for item in items:
        batch, _, context = item.lower().partition("x")
        try:
            batch = int(batch)
            tokens = MAX_CONTEXT if context == "max" else _tokens(context)
        except ValueError:
            batch = tokens = 0
        if batch < 1 or (tokens < 1 and context != "max"):  # MAX_CONTEXT is a negative marker, "max" only
            raise ValueError(f"{item!r} is not BATCHxCONTEXT with both at least 1 (e.g. 1x128k, 8x131072, 1xmax)")
        points.append((batch, tokens))
    return tuple(points)


def _tokens(text: str) -> int:
    scale = {"k": 1 << 10, "m": 1 << 20}.get(text[-1:].lower(), 1)
    return int(text[:-1] if scale > 1 else text) * scale


def exposed_communication(ttl_device_s: float, compute_only_s: float, world_size: int) -> float:
    """The step's time that the muted collectives account for. One rank runs no collectives, so there its two
    captures differ only by run-to-run noise (an H100 once showed 126 us of it), which is not communication."""
    return 0.0 if world_size == 1 else max(0.0, ttl_device_s - compute_only_s)


def run_job(job: BenchJob, world_size: int, timeout_s: float) -> list[dict]:
    job = BenchJob(**{**job.__dict__, "init_method": f"tcp://127.0.0.1:{free_port()}"})
    rows, failure = run_ranks(run_rank, (job,), world_size, timeout_s)  # rank 0 reports
    for row in rows:
        if row.get("ttl_device_s") and row.get("compute_only_s"):
            row["exposed_comm_s"] = exposed_communication(row["ttl_device_s"], row["compute_only_s"], world_size)
    if failure is not None:
        print(f"FAILED: bench {job.shape} {job.plan}: {failure}", flush=True)
    return rows


def print_table(rows: list[dict], out=sys.stdout) -> None:
    if not rows:
        return
    first = rows[0]
    print(f"shape {first['shape']} ({first['layers']} layers, {first['dtype']}) on {first.get('gpu_name', '?')}; "
          f"KV: {first['kv']}", file=out)
    header = [name for name, _ in COLUMNS]
    print("| " + " | ".join(header) + " |", file=out)
    print("|" + "---|" * len(header), file=out)
    for row in rows:
        cells = []
        for name, fmt in COLUMNS:
            value = row.get(name)
            cells.append("-" if value is None else fmt.format(value))
        print("| " + " | ".join(cells) + " |", file=out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="helix bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="llama3-8b")
    parser.add_argument("--layers", type=int, help="override the layer count (deepseek-mla: 4 by default)")
    parser.add_argument("--plans", nargs="+", default=["helix:kvp=2,tpa=1", "tp:n=2"])
    parser.add_argument("--points", nargs="+", default=["1x128k"], help="BATCHxCONTEXT, e.g. 8x128k 1x1m; 1xmax: the longest context that fits "
                             "(KV pool sized from free GPU memory, unless --kv-pages)")
    parser.add_argument("--kv-pages", type=int, help="KV pages per rank (default: what the points need)")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--hopb", type=int, nargs="+", default=[1, 2], help="HOP-B pieces to run (1 = off)")
    parser.add_argument("--graphs", choices=["on", "off"], default="on")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: a smoke run, no roofline")
    parser.add_argument("--page-size", type=int, help="tokens per KV page (default: the engine's, as a server of the "
                                                         "shape would run it: 16 GQA, 64 MLA)")
    parser.add_argument("--all-reduce", choices=ALL_REDUCE_CHOICES, default="auto",
                        help="symm: torch symmetric-memory one-shot all-reduce (NVLink P2P); nccl-window: NCCL's "
                             "symmetric kernels through a window-registered buffer; auto: symm where it runs")
    parser.add_argument("--exchange", choices=["auto", "all_to_all", "gather"], default="auto",
                        help="KVP exchange: gather = one sum over zero-padded slots (symm-mem one-shot "
                             "where it runs); auto: gather for small exchanges where symm memory runs")
    parser.add_argument("--small-linear", choices=["auto", "on", "off"], default="auto",
                        help="decode-batch projections by the Triton weight-streaming kernel (auto: CUDA)")
    parser.add_argument("--fusions", choices=["auto", "off"], default="auto",
                        help="batch-1 norms and SiLU gate inside the projection kernel, RoPE + KV append as one "
                             "kernel (off: the step without them)")
    parser.add_argument("--merge-in-projection", choices=["auto", "off"], default="auto",
                        help="batch 1, KVP > 1: the o projection's kernel merges the KVP partials (off: a merge "
                             "kernel before it)")
    parser.add_argument("--o-projection", choices=["sharded", "replicated"], default="sharded",
                        help="replicated: every rank holds all of o_proj and, where the KVP exchange gathers "
                             "(every head's partials on every rank), projects every head itself: no all-reduce "
                             "after attention (Llama family, helix with TPA = 1)")
    parser.add_argument("--l2-prefetch-mib", type=float, default=0.0,
                        help="sm_90+: what a step reads after a collective, asked for in L2 by the kernel before "
                             "it, up to this many MiB: at batch 1 the o / down projections ask for the projection "
                             "after their all-reduce; with KVP the split merge asks for the o projection before "
                             "the exchange (0: off)")
    parser.add_argument("--profile", metavar="DIR",
                        help="also write a per-kernel table and a timeline (PDL overlap taken out) of each "
                             "captured step here")
    parser.add_argument("--peer", choices=["hf"], help="also time HF transformers (static cache, one GPU)")
    parser.add_argument("--timeout", type=float, default=540.0, help="seconds per plan")
    parser.add_argument("--json", help="append the rows to this JSON file")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    points, plans = _checked(parser, args)
    rows = []
    for spec, plan in zip(args.plans, plans):
        job = BenchJob(shape=args.shape, layers=args.layers, plan=spec, dtype=args.dtype, points=points,
                       hopb=tuple(args.hopb), steps=args.steps, warmup=args.warmup, page_size=args.page_size,
                       graphs=args.graphs == "on", device=args.device, all_reduce=args.all_reduce,
                       exchange=args.exchange, profile_dir=args.profile,
                       small_linear=args.small_linear, fusions=args.fusions, kv_pages=args.kv_pages,
                       merge_in_projection=args.merge_in_projection, l2_prefetch_mib=args.l2_prefetch_mib,
                       o_projection=args.o_projection)
        new = run_job(job, plan.world_size, args.timeout)
        rows += new
        print_table(new)
        append_rows(args.json, new)
    if args.peer == "hf":
        from .peer_hf import time_hf

        for batch, context in points:
            try:
                row = time_hf(args.shape, args.layers, batch, context, args.dtype, args.steps)
            except Exception as error:  # noqa: BLE001 - report and go on with the other points
                print(f"FAILED: hf peer {batch}x{context}: {error}", flush=True)
                continue
            print(json.dumps(row), flush=True)
            rows.append(row)
            append_rows(args.json, [row])
    return 0 if rows else 1


def _checked(parser: argparse.ArgumentParser, args) -> tuple:
    """(points, plans) parsed, or a usage error naming the bad flag before any rank process starts."""
    from ..launcher import device_unavailable
    from ..plan import InvalidPlanError, Plan
    from .shapes import SHAPES

    if args.shape not in SHAPES:
        parser.error(f"argument --shape: unknown shape {args.shape!r}; choose one of {sorted(SHAPES)}")
    try:
        points = parse_points(args.points)
    except ValueError as error:
        parser.error(f"argument --points: {error}")
    try:
        plans = [Plan.parse(spec) for spec in args.plans]
    except InvalidPlanError as error:
        parser.error(f"argument --plans: {error}")
    if (reason := device_unavailable(args.device)) is not None:
        parser.error(f"{reason} (--device cpu: a smoke run)")
    return points, plans


def append_rows(path: str | None, rows: list[dict]) -> None:
    """Add `rows` to the JSON list in `path` (created if missing), so a killed run keeps what it measured."""
    if not path:
        return
    try:
        with open(path) as handle:
            existing = json.load(handle)
    except (FileNotFoundError, json.JSONDecodeError):
        existing = []
    with open(path, "w") as handle:
        json.dump(existing + rows, handle, indent=1)


if __name__ == "__main__":
    sys.exit(main())
