"""Micro-benchmark of the small-batch linear kernel against F.linear (cuBLAS), CUDA only.

    python -m helix_core.kernels.bench_small_linear --json $OUT/small-linear.json
    python -m helix_core.kernels.bench_small_linear --merge 2 4 --json $OUT/merge-linear.json
    python -m helix_core.kernels.bench_small_linear --prefetch 0 8 16 24 32 --json $OUT/l2-prefetch.json

Shapes: the projections of one llama3-8b layer on one of two tensor-parallel GPUs (qkv, o,
gate_up, down) and half the LM head, at 1 and 8 rows. Every config is checked against F.linear
before it is timed. Weights rotate over copies larger than the L2 cache, so each call streams
its matrix from HBM as in a decode step; reported: weight bytes / time (TB/s), CUDA-graph time.
--merge P: the o projection of KVP partials from P ranks, the merge kernel then the projection against
the projection that merges its input itself (`merge_linear`), checked equal first (bitwise for P = 2).
--prefetch MIB...: o, then a spin kernel standing for the all-reduce after it (--gap-us), then gate/up
(llama3-8b at TP = 2, one row), with o asking for gate/up's first MIB in L2 (`prefetch_after`; 0: not).
"""
from __future__ import annotations

import argparse
import json
import sys

import torch
import torch.nn.functional as F

from ..bench.probes import capture_graph, time_cuda
from .small_linear import LinearConfig, merge_linear, prefetch_after, small_linear

SHAPES = {  # name: (K, N) per GPU of llama3-8b at TP = 2, then on one GPU
    "qkv": (4096, 3072), "o": (2048, 4096), "gate_up": (4096, 14336), "down": (7168, 4096), "lm_head": (4096, 64128),
    "qkv-1gpu": (4096, 6144), "o-1gpu": (4096, 4096), "gate_up-1gpu": (4096, 28672), "down-1gpu": (14336, 4096),
}
SWEEP = [LinearConfig(block_n=bn, block_k=bk, splits=splits, num_warps=warps, num_stages=stages)
         for bn, bk, warps, stages in ((16, 256, 4, 4), (16, 512, 4, 3), (32, 256, 4, 4), (32, 256, 8, 4),
                                       (8, 512, 4, 4), (64, 128, 4, 4))
         for splits in (0, 1)]
# one row: the default without PDL, and each weight tile loaded a tile early (two in flight a program)
ONE_ROW_SWEEP = [LinearConfig(pdl=False), LinearConfig(ahead=True), LinearConfig(block_k=256, ahead=True),
                 LinearConfig(block_n=16, block_k=256, ahead=True), LinearConfig(num_warps=8, ahead=True),
                 LinearConfig(block_n=16, block_k=512, ahead=True), LinearConfig(block_k=1024)]
ROTATE_BYTES = 256 << 20  # > the H200's 50 MB L2


def _label(config: LinearConfig) -> str:
    return (f"bn{config.block_n}/bk{config.block_k}/w{config.num_warps}/s{config.num_stages}/"
            f"splits{'auto' if config.splits == 0 else config.splits}"
            + ("/ahead" if config.ahead else "") + ("/no-pdl" if config.pdl is False else ""))


def _time_per_copy(fn, weights: list, iters: int) -> float:
    """Seconds of fn(w) a call, over one CUDA graph that calls it on every weight copy in turn."""
    def all_copies():
        for w in weights:
            fn(w)
    graph = capture_graph(all_copies)
    return time_cuda(graph.replay, iters) / len(weights)


def bench_shape(name: str, rows: int, dtype: torch.dtype, iters: int) -> dict:
    k, n = SHAPES[name]
    device = torch.device("cuda")
    copies = max(2, -(-ROTATE_BYTES // (k * n * 2)))
    weights = [torch.randn(n, k, device=device, dtype=dtype) / k ** 0.5 for _ in range(copies)]
    x = torch.randn(rows, k, device=device, dtype=dtype)
    nbytes = k * n * torch.tensor([], dtype=dtype).element_size()

    def timed(fn) -> float:
        return _time_per_copy(fn, weights, iters)

    base = timed(lambda w: F.linear(x, w))
    row = {"shape": name, "K": k, "N": n, "rows": rows, "weight_bytes": nbytes,
           "cublas_s": base, "cublas_tbps": nbytes / base / 1e12, "configs": []}
    reference = F.linear(x.float(), weights[0].float())
    for config in [LinearConfig()] + SWEEP + (ONE_ROW_SWEEP if rows == 1 else []):
        if rows > 1 and config.block_n < 16:
            continue  # tl.dot needs 16 columns
        entry = {"config": _label(config)}
        try:
            got = small_linear(x, weights[0], config).float()
            err = ((got - reference).abs().max() / reference.abs().max()).item()
            entry["ok"] = err < 2e-2
            entry["rel_err"] = err
            if entry["ok"]:
                seconds = timed(lambda w, c=config: small_linear(x, w, c))
                entry.update(seconds=seconds, tbps=nbytes / seconds / 1e12)
        except Exception as error:  # noqa: BLE001 - a config that fails to compile is reported, not fatal
            entry.update(ok=False, error=f"{type(error).__name__}: {error}"[:300])
        row["configs"].append(entry)
    timed_ok = [c for c in row["configs"] if c.get("seconds")]
    best = min(timed_ok, key=lambda c: c["seconds"]) if timed_ok else None
    row["best"] = best["config"] if best else None
    row["best_over_cublas"] = base / best["seconds"] if best else None
    return row


def bench_merge(parts: int, dtype: torch.dtype, iters: int, heads: int = 16, value_dim: int = 128) -> dict:
    """The batch-1 o projection of llama3-8b on one of two GPUs (16 heads of 128 -> 4096) from the KVP
    exchange's receive buffer [parts, 1, heads, Dv + 1]: merge kernel + projection against merge_linear."""
    from .split_merge import merge_partials

    n, k = SHAPES["o"][1], heads * value_dim
    device = torch.device("cuda")
    copies = max(2, -(-ROTATE_BYTES // (k * n * 2)))
    weights = [torch.randn(n, k, device=device, dtype=dtype) / k ** 0.5 for _ in range(copies)]
    recv = torch.randn(parts, 1, heads, value_dim + 1, device=device)
    recv[..., value_dim] *= 4  # LSEs of a few units apart, as long shards give

    def two_kernels(w):
        merged = merge_partials(recv[..., :value_dim], recv[..., value_dim], out_dtype=dtype)
        return small_linear(merged.reshape(1, -1), w)

    def timed(fn) -> float:
        return _time_per_copy(fn, weights, iters)

    same = torch.equal(merge_linear(recv, weights[0]), two_kernels(weights[0]))
    close = torch.allclose(merge_linear(recv, weights[0]).float(), two_kernels(weights[0]).float(),
                           rtol=2e-2, atol=2e-2)
    row = {"parts": parts, "K": k, "N": n, "bitwise_equal": same, "close": close}
    if same or (parts > 2 and close):  # more parts may sum in another order: an ulp before the rounding
        row["merge_then_linear_s"] = timed(two_kernels)
        row["merge_linear_s"] = timed(lambda w: merge_linear(recv, w))
    return row


def bench_prefetch(mib: float, gap_us: float, dtype: torch.dtype, iters: int) -> dict:
    """o -> a gap of `gap_us` without memory traffic (torch.cuda._sleep) -> gate/up, one row, each pair of
    weights a fresh copy (HBM, not L2), o ending by asking for `mib` MiB of gate/up in L2."""
    device = torch.device("cuda")
    (k_o, n_o), (k_g, n_g) = SHAPES["o"], SHAPES["gate_up"]
    pair_bytes = (k_o * n_o + k_g * n_g) * 2
    copies = max(2, -(-ROTATE_BYTES // pair_bytes))
    o_weights = [torch.randn(n_o, k_o, device=device, dtype=dtype) / k_o ** 0.5 for _ in range(copies)]
    g_weights = [torch.randn(n_g, k_g, device=device, dtype=dtype) / k_g ** 0.5 for _ in range(copies)]
    x_o = torch.randn(1, k_o, device=device, dtype=dtype)
    x_g = torch.randn(1, k_g, device=device, dtype=dtype)
    for o, gate_up in zip(o_weights, g_weights):
        prefetch_after(o, gate_up if mib else None, int(mib * (1 << 20)))
    calibration = 1_000_000  # spin cycles, timed once: the SM clock as the spin kernel sees it
    cycles = int(gap_us * 1e-6 * calibration / time_cuda(lambda: torch.cuda._sleep(calibration), 3)) if gap_us else 0

    def step(index):
        small_linear(x_o, o_weights[index])
        if cycles:
            torch.cuda._sleep(cycles)
        small_linear(x_g, g_weights[index])

    seconds = _time_per_copy(step, list(range(copies)), iters)
    reference = F.linear(x_g.float(), g_weights[0].float())
    err = ((small_linear(x_g, g_weights[0]).float() - reference).abs().max() / reference.abs().max()).item()
    for o in o_weights:
        prefetch_after(o, None)
    return {"prefetch_mib": mib, "gap_us": gap_us, "o_then_gate_up_s": seconds, "rel_err": err}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--merge", type=int, nargs="*", default=[], metavar="PARTS",
                        help="only the o projection from this many KVP partials, with and without the merge kernel")
    parser.add_argument("--prefetch", type=float, nargs="*", default=[], metavar="MIB",
                        help="only o -> gap -> gate/up with o prefetching this many MiB of gate/up (0: none)")
    parser.add_argument("--gap-us", type=float, nargs="+", default=[0.0, 8.0],
                        help="--prefetch: the gaps between the two projections (a spin kernel)")
    parser.add_argument("--json")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_small_linear needs CUDA", file=sys.stderr)
        return 2
    results = []
    for parts in args.merge:
        row = bench_merge(parts, torch.bfloat16, args.iters)
        results.append(row)
        print(f"o from {parts} partials: bitwise {row['bitwise_equal']} | merge + projection "
              f"{row.get('merge_then_linear_s', float('nan')) * 1e6:7.1f} us | merged in the projection "
              f"{row.get('merge_linear_s', float('nan')) * 1e6:7.1f} us", flush=True)
    for gap in args.gap_us if args.prefetch else []:
        for mib in args.prefetch:
            row = bench_prefetch(mib, gap, torch.bfloat16, args.iters)
            results.append(row)
            print(f"o -> {gap:4.1f} us gap -> gate/up, o prefetching {mib:4.1f} MiB of gate/up: "
                  f"{row['o_then_gate_up_s'] * 1e6:7.1f} us (gate/up rel err {row['rel_err']:.1e})", flush=True)
    for rows in [] if args.merge or args.prefetch else args.rows:
        for name in args.shapes:
            row = bench_shape(name, rows, torch.bfloat16, args.iters)
            results.append(row)
            best = next((c for c in row["configs"] if c["config"] == row["best"]), {})
            default = row["configs"][0]
            print(f"{name:12s} rows {rows}: cuBLAS {row['cublas_s'] * 1e6:7.1f} us {row['cublas_tbps']:.2f} TB/s | "
                  f"default {default.get('seconds', float('nan')) * 1e6:7.1f} us "
                  f"{default.get('tbps', float('nan')):.2f} TB/s | best {row['best']} "
                  f"{best.get('seconds', float('nan')) * 1e6:7.1f} us {best.get('tbps', float('nan')):.2f} TB/s",
                  flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "results": results},
                      handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
