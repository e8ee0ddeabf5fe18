"""Micro-benchmark of the paged split-KV decode kernel (CUDA only).

    python -m helix_core.kernels.bench_decode --context 131072 --batch 1 --heads 32 --kv-heads 8 \
        --dim 128 --dtype bf16
    python -m helix_core.kernels.bench_decode --mla --context 131072 --batch 1      # 128 heads, 576/512
    python -m helix_core.kernels.bench_decode --suite --json $OUT/decode.json        # everything below

Every configuration is checked against a chunked fp32 reference (a few heads of the first and
last sequence, computed from a contiguous copy of the KV, i.e. independent of the paging) before
its time is reported; a failing one is reported as FAILED and never timed.

Timing: CUDA events around `--iters` back-to-back calls after `--warmup` calls, median of
`--repeats`; also the replay of a CUDA graph of one call (pure GPU time, no launch overhead).
Reported: KV bytes read / time (TB/s; keys + values, MLA: the 576-dim latent+rope rows once)
and attention FLOP/s (2*Hq*L*(Dk+Dv) per sequence). Compared with torch SDPA decode
(enable_gqa) on the same data laid out contiguously, and with Helix's torch path (gather the
pages + partial_attention) that the kernel replaces.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from . import sm_count
from .decode_attention import paged_decode_attention, takes_sm90_mla
from .decode_launch import MAX_SPLITS, DecodeConfig, choose_num_splits, default_block_h, resolve_launch
from .head_groups import HeadGroups

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}

GQA_SWEEP = [  # (block_n, block_h, num_warps, num_stages); all compile spill-free for sm_90 (ptxas)
    (64, 16, 4, 2), (32, 16, 4, 2), (128, 16, 4, 2), (64, 16, 4, 3), (32, 16, 4, 3), (64, 16, 4, 4),
    (64, 16, 8, 2), (128, 16, 8, 2),
]
# large query groups (MQA: 32 query heads per KV head) read each KV tile once for 32 heads
GQA_WIDE_GROUP_SWEEP = [
    (64, 32, 4, 2), (64, 32, 8, 2), (128, 32, 8, 2), (32, 32, 4, 3), (64, 32, 4, 3), (128, 32, 8, 3),
    (64, 64, 8, 2),
]
# (block_n, block_h, num_warps, num_stages, times): num_splits = times x the default split count; more
# splits than the default at short contexts, and fewer (longer splits, a smaller merge)
GQA_SPLIT_SWEEP = [(64, 16, 4, 2, 2), (32, 16, 4, 2, 4), (64, 16, 4, 3, 2), (64, 16, 4, 3, 0.5),
                   (64, 16, 4, 3, 0.25), (128, 16, 4, 3, 0.5), (64, 16, 4, 4, 0.5), (128, 16, 8, 3, 0.25)]
# (block_n, num_warps, num_stages, times) with the block table read a tile ahead, which lets Triton
# multi-buffer the K/V tiles (sm_90 shared memory: bn64 s4 104 KB against 39 KB without); the default's
# head block; num_splits = times x the default's (two programs a SM), so 2 is the old four a SM
GQA_AHEAD_SWEEP = [(64, 4, 4, 1), (128, 4, 3, 1), (32, 4, 4, 1), (64, 4, 3, 2), (64, 4, 4, 2), (64, 4, 3, 0.5),
                   (64, 4, 4, 0.5), (128, 4, 4, 0.5), (64, 8, 4, 1), (128, 8, 3, 0.5)]
# heads of 256-512 dims (e.g. the 16 x 512 example's helix rank), whose defaults still read the block table
# in-tile: 32 x 512 fp16 K and V tiles take 64 KB a stage (sm_90: 148 KB at three stages with the look-ahead)
WIDE_AHEAD_SWEEP = [(32, 4, 2, 1), (32, 4, 3, 1), (32, 4, 3, 0.5), (16, 4, 4, 1), (16, 4, 4, 0.5), (32, 8, 3, 0.5)]
MLA_SWEEP = [  # the first is the default; block_h 64 puts 64 heads in one wgmma M tile (may spill)
    (32, 32, 8, 2), (32, 16, 4, 2), (16, 16, 4, 2), (32, 16, 8, 2), (16, 32, 8, 2), (32, 32, 8, 3),
    (64, 32, 8, 2), (16, 64, 8, 2), (32, 64, 8, 2), (16, 64, 8, 3), (32, 64, 8, 1), (16, 128, 8, 2),
]

# (block_n, block_h, num_warps, num_stages, num_splits): 64-head blocks with fewer, longer splits than
# the default's (each split writes a 64 x 512 fp32 partial, 128 KB, that the merge reads back)
MLA_SPLIT_SWEEP = [(32, 64, 8, 2, 8), (32, 64, 8, 2, 16), (32, 64, 8, 2, 33), (32, 64, 8, 2, 66),
                   (32, 16, 4, 2, 16), (32, 16, 4, 2, 33)]
# (block_n, block_h, num_warps, num_stages, waves, dv_parts): the values in one part or in two (each program
# a [block_h, 256] accumulator), with splits for `waves` programs per SM (below 1: fewer programs than
# SMs). The first is the long-context default before the value parts (64 heads, one part); H200 4 x 128K:
# 915 us, against 673 us for (32, 128, 8, 2, 1, 2), 929-1615 us for 64-head blocks in two parts (2026-12-03)
MLA_PARTS_SWEEP = [(32, 64, 8, 2, 1, 1), (32, 128, 8, 2, 1, 2), (16, 128, 8, 3, 1, 2), (16, 128, 16, 2, 1, 2),
                   (32, 128, 16, 2, 1, 2), (16, 128, 16, 3, 1, 2), (16, 128, 8, 2, 1, 2), (32, 128, 8, 2, 2, 2),
                   (32, 128, 8, 2, 0.25, 2), (32, 128, 8, 2, 0.0625, 2)]  # fewer splits: each reads the 147 KB q tile
# (block_n, block_h, num_warps, num_stages, waves, pages_ahead): P through memory (DecodeConfig.probs_via_memory),
# so 64-head blocks on 8 warps compute each score once (sm_90, Triton 3.6: 255 registers, no spills, 148-220 KB)
# H200 (2026-12-04): 64 heads over 4 x 1M, 2795 / 2768 us with three / four stages against 3473 for the
# one-part tile with P in registers; 128 heads over 4 x 512K, 2850 against the two value parts' 2612 us
MLA_PMEM_SWEEP = [(32, 64, 8, 3, 1, True), (32, 64, 8, 4, 1, True), (32, 64, 8, 2, 1, False),
                  (32, 64, 8, 3, 0.5, True)]


def _fail(msg: str) -> None:
    print(f"bench_decode: {msg}", file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
class Problem:
    def __init__(self, *, batch, context, heads, kv_heads, dk, dv, mla, page_size, dtype, seed, device,
                 head_major=False):
        g = torch.Generator(device=device).manual_seed(seed)
        self.batch, self.context, self.heads, self.kv_heads = batch, context, heads, kv_heads
        self.dk, self.dv, self.mla, self.page_size, self.dtype = dk, dv, mla, page_size, dtype
        pages_per_seq = -(-context // page_size)
        pool = batch * pages_per_seq + 7
        # contiguous KV in SDPA's layout [B, Hkv, L, D]: the reference and SDPA read this copy
        self.k_bhld = torch.randn(batch, kv_heads, context, dk, generator=g, device=device, dtype=torch.float32
                                  ).to(dtype)
        self.v_bhld = None if mla else torch.randn(batch, kv_heads, context, dv, generator=g, device=device,
                                                   dtype=torch.float32).to(dtype)
        # shuffled pages: sequence b's i-th page is table[b, i]
        perm = torch.randperm(pool, generator=g, device=device)
        self.block_table = perm[: batch * pages_per_seq].view(batch, pages_per_seq).to(torch.int32).contiguous()
        self.lengths = torch.full((batch,), context, dtype=torch.int32, device=device)
        self.key_pages = _page_pool(pool, page_size, kv_heads, dk, dtype, device, head_major)
        self.value_pages = None if mla else _page_pool(pool, page_size, kv_heads, dv, dtype, device, head_major)
        padded = pages_per_seq * page_size
        for b in range(batch):
            idx = self.block_table[b].long()
            self.key_pages[idx] = _to_pages(self.k_bhld[b], padded, page_size)
            if not mla:
                self.value_pages[idx] = _to_pages(self.v_bhld[b], padded, page_size)
        # queries with a spread that makes the softmax non-uniform (scores std ~ 2)
        self.q = (2.0 * torch.randn(batch, heads, dk, generator=g, device=device)).to(dtype)
        self.scale = (192 ** -0.5) if mla else dk ** -0.5
        group = heads // kv_heads
        self.kv_head_of_q = torch.arange(heads, device=device) // group

    def kv_bytes(self) -> int:
        per_token = self.kv_heads * (self.dk if self.mla else self.dk + self.dv)
        return self.batch * self.context * per_token * self.key_pages.element_size()

    def flops(self) -> int:
        return 2 * self.batch * self.heads * self.context * (self.dk + self.dv)

    def values_view(self):
        return self.k_bhld[..., : self.dv] if self.mla else self.v_bhld


def _page_pool(pool, page_size, kv_heads, dim, dtype, device, head_major: bool) -> torch.Tensor:
    """A zeroed [P, page_size, Hkv, D] pool: token-major in memory (the engine's layout: a token's
    heads side by side), or head-major (a view of [P, Hkv, page_size, D]: each head's keys of a page
    contiguous, as a contiguous [B, H, L, D] cache reads them)."""
    if head_major:
        return torch.zeros(pool, kv_heads, page_size, dim, dtype=dtype, device=device).permute(0, 2, 1, 3)
    return torch.zeros(pool, page_size, kv_heads, dim, dtype=dtype, device=device)


def _to_pages(x_hld: torch.Tensor, padded: int, page_size: int) -> torch.Tensor:
    hkv, length, dim = x_hld.shape
    out = torch.zeros(padded, hkv, dim, dtype=x_hld.dtype, device=x_hld.device)
    out[:length] = x_hld.transpose(0, 1)
    return out.view(padded // page_size, page_size, hkv, dim)


def chunked_reference(prob: Problem, b: int, heads: list[int], chunk: int = 32768):
    """fp32 online softmax over key chunks for some heads of sequence b -> (out [h, Dv], lse [h])."""
    outs, lses = [], []
    values = prob.values_view()
    for h in heads:
        kvh = int(prob.kv_head_of_q[h])
        q = prob.q[b, h].float()
        m = torch.tensor(float("-inf"), device=q.device)
        s = torch.zeros((), device=q.device)
        acc = torch.zeros(prob.dv, device=q.device)
        for start in range(0, prob.context, chunk):
            k = prob.k_bhld[b, kvh, start:start + chunk].float()
            v = values[b, kvh, start:start + chunk].float()
            sc = (k @ q) * prob.scale
            m_new = torch.maximum(m, sc.max())
            p = torch.exp(sc - m_new)
            corr = torch.exp(m - m_new)
            s = s * corr + p.sum()
            acc = acc * corr + p @ v
            m = m_new
        outs.append(acc / s)
        lses.append(m + torch.log(s))
    return torch.stack(outs), torch.stack(lses)


def _sdpa_lse_placeholder(prob: Problem) -> torch.Tensor:
    return torch.zeros(prob.batch, prob.heads, device=prob.q.device)


def check(prob: Problem, out: torch.Tensor, lse: torch.Tensor, out_only: bool = False) -> tuple[bool, str]:
    heads = sorted({0, 1 % prob.heads, prob.heads // 2, prob.heads - 1})
    worst_rel, worst_lse = 0.0, 0.0
    for b in sorted({0, prob.batch - 1}):
        ref_out, ref_lse = chunked_reference(prob, b, heads)
        got_out, got_lse = out[b, heads].float(), lse[b, heads].float()
        if not (torch.isfinite(got_out).all() and torch.isfinite(got_lse).all()):
            return False, "non-finite output"
        rel = float((got_out - ref_out).abs().max() / ref_out.abs().max().clamp_min(1e-6))
        dl = 0.0 if out_only else float((got_lse - ref_lse).abs().max())
        worst_rel, worst_lse = max(worst_rel, rel), max(worst_lse, dl)
    tol_rel = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 1e-2}[prob.dtype]
    ok = worst_rel <= tol_rel and worst_lse <= 5e-3
    detail = f"max|err|/max|ref|={worst_rel:.2e} (tol {tol_rel:.0e})"
    if not out_only:
        detail += f", max|dLSE|={worst_lse:.2e} (tol 5e-3)"
    return ok, detail


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------
def time_eager(fn, warmup: int, iters: int, repeats: int) -> float:
    """Median seconds per call over `repeats` runs of `iters` back-to-back calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        stop.record()
        stop.synchronize()
        samples.append(start.elapsed_time(stop) / 1e3 / iters)
    return statistics.median(samples)


def time_graph(fn, iters: int, repeats: int) -> float | None:
    """Median seconds per replay of a CUDA graph holding one call (no CPU launch overhead)."""
    from helix_core.bench.probes import capture_graph

    try:
        for _ in range(2):
            fn()
        return time_eager(capture_graph(fn).replay, warmup=3, iters=iters, repeats=repeats)
    except Exception as exc:  # graphs are a bonus; never fail the benchmark on them
        print(f"  (CUDA graph timing unavailable: {type(exc).__name__}: {exc})")
        return None


def fmt_rate(prob: Problem, seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return (f"{seconds * 1e6:9.1f} us  {prob.kv_bytes() / seconds / 1e12:6.3f} TB/s  "
            f"{prob.flops() / seconds / 1e12:7.2f} TFLOP/s")


def first_call_checked(label: str, width: int, call, prob: Problem, records: list) -> tuple[str, float] | None:
    """The first call of a configuration, checked against the chunked reference: (check detail,
    seconds incl. compilation), or None after printing and recording in `records` an error or a
    failed check (never timed, so a fast wrong configuration posts no number)."""
    try:
        begin = time.time()
        out, lse = call()
        torch.cuda.synchronize()
        seconds = time.time() - begin
    except Exception as exc:
        print(f"  {label:{width}s} ERROR {type(exc).__name__}: {str(exc)[:300]}")
        records.append({"config": label, "error": f"{type(exc).__name__}: {exc}"[:500]})
        return None
    ok, detail = check(prob, out, lse)
    if not ok:
        print(f"  {label:{width}s} FAILED check: {detail}")
        records.append({"config": label, "ok": False, "check": detail})
        return None
    return detail, seconds


def _matrix_share(prob: Problem, result: dict, args) -> None:
    """MLA is compute-bound: the default's rate against a bf16 matmul timed as the default was (as many seconds
    of back-to-back products, after as long a warm-up), since the GPU's clocks under sustained load are lower
    than over a short probe (its power cap)."""
    from helix_core.bench.probes import matmul_rate

    default = result["configs"][0]
    seconds = default["graph_s"] or default["eager_s"]
    rate = matmul_rate(prob.q.device, sustained_s=seconds * args.iters * args.repeats)
    share = prob.flops() / seconds / rate
    print(f"  matrix probe timed as the default (8192^3 bf16 products for {seconds * args.iters * args.repeats:.2f} s "
          f"after as long a warm-up): {rate / 1e12:.1f} TFLOP/s; the default reaches {share:.1%} of it")
    result.update(matmul_flops_like_default=rate, default_share_of_matmul=share)


# ---------------------------------------------------------------------------------------------
# one case
# ---------------------------------------------------------------------------------------------
def run_case(args, *, batch, context, heads, kv_heads, dk, dv, mla, sweep) -> dict:

    device = torch.device(getattr(args, "device", "cuda"))  # "cpu" only in the scratch dry-run of the script
    dtype = DTYPES[args.dtype]
    head_major = getattr(args, "head_major", False)
    name = (f"{'MLA' if mla else 'GQA'} B={batch} L={context} Hq={heads} Hkv={kv_heads} Dk={dk} Dv={dv} "
            f"{args.dtype} page={args.page_size}{' head-major' if head_major else ''}")
    print(f"\n=== {name}")
    prob = Problem(batch=batch, context=context, heads=heads, kv_heads=kv_heads, dk=dk, dv=dv, mla=mla,
                   page_size=args.page_size, dtype=dtype, seed=args.seed, device=device, head_major=head_major)
    print(f"  KV read per call: {prob.kv_bytes() / 1e6:.1f} MB, attention FLOPs: {prob.flops() / 1e9:.2f} G")
    groups = HeadGroups(prob.kv_head_of_q)
    result = {"case": name, "mla": mla, "batch": batch, "context": context, "heads": heads, "kv_heads": kv_heads,
              "dk": dk, "dv": dv, "dtype": args.dtype, "page_size": args.page_size, "kv_bytes": prob.kv_bytes(),
              "flops": prob.flops(), "configs": []}

    default = DecodeConfig()
    configs = [("default", default)]
    if mla and _gluon_taken(prob, default):  # the Triton kernel's default beside it
        configs.append(("triton-default", DecodeConfig(sm90_mla=False)))
    if sweep:
        only = [part for part in (getattr(args, "only", None) or "").split(",") if part]
        configs += [c for c in _sweep_configs(prob, groups, mla) if not only or any(part in c[0] for part in only)]
    best = None
    for label, cfg in configs:
        def call(cfg=cfg):
            return paged_decode_attention(prob.q, prob.key_pages, prob.value_pages, prob.block_table,
                                             prob.lengths, prob.scale, groups, value_dim=dv if mla else None,
                                             max_length=context, config=cfg)
        checked = first_call_checked(label, 22, call, prob, result["configs"])
        if checked is None:
            continue
        detail, compile_s = checked
        splits = _splits_used(prob, cfg, groups, mla)
        eager = time_eager(call, args.warmup, args.iters, args.repeats)
        graph = time_graph(call, args.iters, args.repeats) if not args.no_graph else None
        print(f"  {label:22s} eager {fmt_rate(prob, eager)} | graph {fmt_rate(prob, graph)} | splits={splits} "
              f"| check ok ({detail}) | first call {compile_s:.1f}s")
        entry = {"config": label, "ok": True, "check": detail, "splits": splits, "eager_s": eager, "graph_s": graph,
                 "eager_tbps": prob.kv_bytes() / eager / 1e12, "eager_tflops": prob.flops() / eager / 1e12,
                 "graph_tbps": None if graph is None else prob.kv_bytes() / graph / 1e12,
                 "graph_tflops": None if graph is None else prob.flops() / graph / 1e12}
        result["configs"].append(entry)
        key = graph if graph is not None else eager
        if best is None or key < best[0]:
            best = (key, label)
    if best:
        print(f"  best: {best[1]} ({fmt_rate(prob, best[0])})")
        result["best"] = best[1]
    if mla and device.type == "cuda" and result["configs"] and result["configs"][0].get("ok"):
        _matrix_share(prob, result, args)

    # torch SDPA decode on the same contiguous data [B, H, L, D]:
    #  "enable_gqa": q [B, Hq, 1, Dk] with KV heads shared by groups of query heads (as asked);
    #  "folded": the usual decode trick, each KV head's query heads as a query length of `group`
    #  (exact here: decode has no mask), which lets SDPA use its fused kernels for GQA/MQA.
    values = prob.values_view()
    group = heads // kv_heads
    q_gqa = prob.q.unsqueeze(2)  # [B, Hq, 1, Dk]
    q_fold = prob.q.view(batch, kv_heads, group, dk)  # [B, Hkv, group, Dk]
    sdpa_variants = {
        "enable_gqa": (lambda: F.scaled_dot_product_attention(q_gqa, prob.k_bhld, values, scale=prob.scale,
                                                              enable_gqa=True),
                       lambda o: o.squeeze(2)),
        "folded": (lambda: F.scaled_dot_product_attention(q_fold, prob.k_bhld, values, scale=prob.scale),
                   lambda o: o.reshape(batch, heads, dv)),
    }
    for label, (fn, to_bhd) in sdpa_variants.items():
        try:
            begin = time.time()
            ok, detail = check(prob, to_bhd(fn()).float(), _sdpa_lse_placeholder(prob), out_only=True)
            sd = time_eager(fn, 2, _baseline_iters(time.time() - begin, args.iters), args.repeats)
            print(f"  {'torch SDPA ' + label:22s} eager {fmt_rate(prob, sd)} | check {'ok' if ok else 'FAILED'} "
                  f"({detail})")
            result[f"sdpa_{label}_s"] = sd
            result[f"sdpa_{label}_tbps"] = prob.kv_bytes() / sd / 1e12
        except Exception as exc:  # e.g. no fused kernel for Dk 576 / Dv 512, or the math path's memory
            print(f"  torch SDPA {label} unavailable here: {type(exc).__name__}: {str(exc)[:200]}")
            result[f"sdpa_{label}_error"] = f"{type(exc).__name__}: {exc}"[:300]
            torch.cuda.empty_cache()

    if not args.no_baseline:
        from ..attention import partial_attention

        def helix_torch():  # what ShardedAttention does today per sequence: gather the pages, partial_attention
            outs = []
            for b in range(batch):
                idx = torch.arange(context, device=device)
                pages = prob.block_table[b].long()[idx // args.page_size]
                k = prob.key_pages[pages, idx % args.page_size]
                v = k[..., :dv] if mla else prob.value_pages[pages, idx % args.page_size]
                o, _ = partial_attention(prob.q[b:b + 1], k, v, prob.scale, torch.tensor([context], device=device),
                                         idx, prob.kv_head_of_q)
                outs.append(o)
            return outs
        try:
            ht = time_eager(helix_torch, 1, 3, 1)
            print(f"  {'helix torch path':22s} eager {fmt_rate(prob, ht)}")
            result["helix_torch_s"] = ht
        except Exception as exc:  # e.g. out of memory for huge MLA blocks
            print(f"  helix torch path failed: {type(exc).__name__}: {str(exc)[:200]}")
    torch.cuda.empty_cache()
    return result


def _baseline_iters(first_call_s: float, iters: int, budget_s: float = 0.5) -> int:
    """Calls a repeat of a baseline: a quarter of the kernel's, and no more than fit in `budget_s` (SDPA over a
    long MLA cache takes 50-100 ms a call; the first call, checked and synchronized, bounds one from above)."""
    return max(3, min(max(10, iters // 4), int(budget_s / max(first_call_s, 1e-6))))


def _sweep_configs(prob, groups, mla) -> list:
    """Launch configs to time besides the default, for this case's head grouping and length."""
    if mla:
        table = [(*c, None) for c in MLA_SWEEP] + list(MLA_SPLIT_SWEEP)
    else:
        table = [(*c, None) for c in GQA_SWEEP]
        if groups.max_group >= 32:
            table += [(*c, None) for c in GQA_WIDE_GROUP_SWEEP]
        base = _splits_used(prob, DecodeConfig(), groups, mla)
        table += [(bn, bh, w, s, max(1, min(MAX_SPLITS, int(base * times)))) for bn, bh, w, s, times in GQA_SPLIT_SWEEP]
    triton = False if mla else None  # MLA: these are the Triton kernel's variants (not the sm_90 Gluon kernel's)
    out = [("default/fused-merge", DecodeConfig(fuse_merge=True, sm90_mla=triton)),
           ("default/no-pdl", DecodeConfig(pdl=False, sm90_mla=triton)),  # the merge after the split kernel ends
           ("default/ahead0", DecodeConfig(pages_ahead=False, sm90_mla=triton))]  # block-table load in-tile
    if mla:  # the MLA default reads the block table in-tile; the look-ahead measured against it
        out.append(("default/ahead1", DecodeConfig(pages_ahead=True, sm90_mla=False)))
    for bn, bh, w, s, splits in table:  # GQA: the earlier sweeps' tables, with the block table read in-tile
        label = f"bn{bn}/bh{bh}/w{w}/s{s}" + (f"/splits{splits}" if splits else "") + ("" if mla else "/ahead0")
        config = DecodeConfig(block_n=bn, block_h=bh, num_warps=w, num_stages=s, num_splits=splits, dv_parts=1,
                                 pages_ahead=None if mla else False)
        out.append((label, config))
    if not mla:
        block_h = default_block_h(groups.max_group)
        for bn, w, s, times in (GQA_AHEAD_SWEEP if prob.dk + prob.dv < 384 else WIDE_AHEAD_SWEEP):
            splits = max(1, min(MAX_SPLITS, int(base * times)))
            out.append((f"bn{bn}/bh{block_h}/w{w}/s{s}/splits{splits}/ahead1",
                        DecodeConfig(block_n=bn, block_h=block_h, num_warps=w, num_stages=s, num_splits=splits,
                                        dv_parts=1, pages_ahead=True)))
    if mla:
        sms = sm_count(prob.q.device)
        for bn, bh, w, s, waves, parts in MLA_PARTS_SWEEP:  # one wave of `waves x SMs` program slots
            splits = choose_num_splits(prob.batch, parts * -(-prob.heads // bh), prob.context, bn,
                                          int(waves * sms), waves=1)
            out.append((f"bn{bn}/bh{bh}/w{w}/s{s}/splits{splits}/p{parts}",
                        DecodeConfig(block_n=bn, block_h=bh, num_warps=w, num_stages=s, num_splits=splits,
                                        dv_parts=parts)))
        for bn, bh, w, s, waves, ahead in MLA_PMEM_SWEEP:
            splits = choose_num_splits(prob.batch, -(-prob.heads // bh), prob.context, bn, int(waves * sms),
                                          waves=1)
            out.append((f"bn{bn}/bh{bh}/w{w}/s{s}/splits{splits}/ahead{int(ahead)}/pmem",
                        DecodeConfig(block_n=bn, block_h=bh, num_warps=w, num_stages=s, num_splits=splits,
                                        dv_parts=1, pages_ahead=ahead, probs_via_memory=True)))
    return out


def _gluon_taken(prob, cfg) -> bool:
    """The call goes to the sm_90 Gluon MLA kernel (mla_sm90)."""
    return prob.mla and takes_sm90_mla(cfg, prob.q, prob.key_pages, prob.dv, prob.value_pages is None)


def _splits_used(prob, cfg, groups, mla) -> int:
    if mla and _gluon_taken(prob, cfg):
        from . import mla_sm90

        return mla_sm90.choose_splits(prob.batch, groups, prob.context, prob.q.device, cfg.num_splits)
    fp32_math = prob.key_pages.dtype == torch.float32
    return resolve_launch(prob.dk, prob.dv, groups, prob.batch, prob.context, fp32_math, cfg, prob.q.device,
                             values_are_keys=mla)[4]


SUITE = [  # (batch, context, heads, kv_heads, dk, dv, mla)
    (1, 131072, 32, 8, 128, 128, False),
    (32, 8192, 32, 8, 128, 128, False),
    (1, 131072, 128, 1, 576, 512, True),
    (16, 8192, 128, 1, 576, 512, True),
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--context", type=int, default=131072, help="keys per sequence (this rank's shard)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--heads", type=int, default=None, help="query heads (default 32; MLA 128)")
    p.add_argument("--kv-heads", type=int, default=None, help="KV heads (default 8; MLA 1)")
    p.add_argument("--dim", type=int, default=128, help="head dim (GQA; Dk = Dv)")
    p.add_argument("--mla", action="store_true", help="absorbed MLA: 128 heads, one 576-dim KV head, Dv 512")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--page-size", type=int, default=16)
    p.add_argument("--head-major", action="store_true",
                   help="pages laid out [P, Hkv, page, D] in memory (default: the engine's [P, page, Hkv, D])")
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-sweep", action="store_true", help="time only the default launch config")
    p.add_argument("--only", default=None,
                   help="sweep only the configs whose label contains this, or one of these comma-separated parts "
                        "(e.g. /p2 or /p1,/pmem)")
    p.add_argument("--no-graph", action="store_true", help="skip the CUDA-graph timing")
    p.add_argument("--no-baseline", action="store_true", help="skip Helix's torch gather + partial_attention path")
    p.add_argument("--suite", action="store_true", help="GQA and MLA at 128K x1 and 8K x batch, with sweeps")
    p.add_argument("--json", default=None, help="write all results to this file")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    if not torch.cuda.is_available():
        _fail("needs a CUDA GPU (torch.cuda.is_available() is False); the kernels are tested on CPU by "
              "tests/test_kernels_decode.py under TRITON_INTERPRET=1 instead")
    from . import interpret_mode, triton_available
    if interpret_mode():
        _fail("TRITON_INTERPRET is set: unset it to benchmark compiled kernels")
    if not triton_available():
        _fail("triton is not importable (pip install triton)")
    import triton
    props = torch.cuda.get_device_properties(0)
    print(f"device: {props.name}, {props.multi_processor_count} SMs, {props.total_memory / 2**30:.0f} GiB; "
          f"torch {torch.__version__}, triton {triton.__version__}")

    if args.suite:
        cases = SUITE
    elif args.mla:
        cases = [(args.batch, args.context, args.heads or 128, args.kv_heads or 1, 576, 512, True)]
    else:
        cases = [(args.batch, args.context, args.heads or 32, args.kv_heads or 8, args.dim, args.dim, False)]
    results = []
    for batch, context, heads, kv_heads, dk, dv, mla in cases:
        if heads % kv_heads:
            _fail(f"--heads {heads} is not a multiple of --kv-heads {kv_heads}")
        results.append(run_case(args, batch=batch, context=context, heads=heads, kv_heads=kv_heads, dk=dk, dv=dv,
                                mla=mla, sweep=not args.no_sweep))
    summary = {"device": props.name, "sms": props.multi_processor_count, "torch": torch.__version__,
               "triton": triton.__version__, "results": results}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=1)
        print(f"\nwrote {args.json}")
    failed = [c for r in results for c in r["configs"] if not c.get("ok")]
    if failed:
        print(f"\n{len(failed)} configuration(s) failed the correctness check or errored (see above)")
    default_ok = all(r["configs"] and r["configs"][0].get("ok") for r in results)
    return 0 if default_ok else 1


if __name__ == "__main__":
    sys.exit(main())
