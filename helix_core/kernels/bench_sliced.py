"""Micro-benchmark of the headslice plan's sliced decode kernels on one GPU (CUDA only).

    python -m helix_core.kernels.bench_sliced --heads 8 --dim 512 --slices 2 --batch 8 --context 10000 \
        --dtype fp16

One rank of an n x m headslice plan holds `--heads` whole heads' worth of query heads (16 / n for the
16 x 512 reference example) and one of `--slices` (m) slices of each head's dims. Checked first:
all m slices run, each `reduce_scores` adding the other slices' partial scores (what the all-reduce
over the slice group does), and the joined slice outputs must match the chunked fp32 reference of
whole heads (bench_decode.chunked_reference). Then one slice's call is timed with `reduce_scores`
left out: the kernels' own GPU time (the all-reduce is measured by `helix bench` on real ranks),
against the torch path the kernels replace (gather the pages, fp32 scores, softmax, P.V).
Reported bandwidth counts the slice's keys + values read once.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from .bench_decode import DTYPES, Problem, first_call_checked, time_eager, time_graph

SWEEP = [(64, 16, 4, 2), (32, 16, 4, 2), (128, 16, 4, 2), (64, 16, 8, 2), (64, 16, 4, 3), (32, 16, 8, 3)]
# (block_n, block_h, num_warps, num_stages, times the splits of four programs a SM) with the block table read a
# tile ahead
AHEAD_SWEEP = [(64, 16, 4, 2, 1), (64, 16, 4, 3, 1), (32, 16, 4, 3, 1), (64, 16, 4, 3, 0.5), (32, 16, 4, 4, 0.5),
               (64, 16, 4, 4, 0.5)]


class SlicedProblem:
    """Slice views (contiguous copies) of a whole-head Problem: q, key and value pages of slice r."""

    def __init__(self, prob: Problem, slices: int):
        if prob.dk % slices or prob.dv % slices:
            raise ValueError(f"head dims {prob.dk}/{prob.dv} do not split into {slices} slices")
        self.prob, self.slices = prob, slices
        self.dk, self.dv = prob.dk // slices, prob.dv // slices
        self.q = [prob.q[..., r * self.dk:(r + 1) * self.dk].contiguous() for r in range(slices)]
        self.keys = [prob.key_pages[..., r * self.dk:(r + 1) * self.dk].contiguous() for r in range(slices)]
        self.values = [prob.value_pages[..., r * self.dv:(r + 1) * self.dv].contiguous() for r in range(slices)]

    def slice_bytes(self) -> int:
        return self.prob.kv_bytes() // self.slices


def run_all_slices(sp: SlicedProblem, call) -> tuple[torch.Tensor, torch.Tensor]:
    """Every slice's call, with the slice group's score sum emulated in two passes: the partial
    scores of each slice first, then each call again adding all of them. -> (out [B,H,Dv], lse)."""
    partial = []
    for r in range(sp.slices):
        call(r, lambda s: (partial.append(s.clone()), s)[1])
    total = torch.stack(partial).sum(0)
    outs, lses = [], []
    for r in range(sp.slices):
        out, lse = call(r, lambda s: s.copy_(total))
        outs.append(out)
        lses.append(lse)
    for lse in lses[1:]:
        if not torch.equal(lse, lses[0]):
            raise AssertionError("the slices disagree on the LSE of the same summed scores")
    return torch.cat(outs, dim=-1), lses[0]


def run(args) -> dict:
    from ..fast_decode import paged_attention_torch
    from . import sm_count
    from .decode_launch import DecodeConfig, choose_num_splits
    from .head_groups import HeadGroups
    from .sliced_decode import paged_sliced_attention

    device = torch.device("cuda")
    dtype = DTYPES[args.dtype]
    prob = Problem(batch=args.batch, context=args.context, heads=args.heads, kv_heads=args.heads, dk=args.dim,
                   dv=args.dim, mla=False, page_size=args.page_size, dtype=dtype, seed=args.seed, device=device)
    sp = SlicedProblem(prob, args.slices)
    groups = HeadGroups(prob.kv_head_of_q)
    name = (f"headslice rank: B={args.batch} L={args.context} heads={args.heads} dim={args.dim}/{args.slices} "
            f"{args.dtype}")
    print(f"\n=== {name}\n  KV read per call (one slice): {sp.slice_bytes() / 1e6:.1f} MB")
    result = {"case": name, "batch": args.batch, "context": args.context, "heads": args.heads, "dim": args.dim,
              "slices": args.slices, "dtype": args.dtype, "slice_kv_bytes": sp.slice_bytes(), "configs": []}

    def rate(seconds):
        return "n/a" if seconds is None else f"{seconds * 1e6:9.1f} us  {sp.slice_bytes() / seconds / 1e12:6.3f} TB/s"

    configs = [("default", DecodeConfig())]
    if not args.no_sweep:
        configs += [(f"bn{bn}/bh{bh}/w{w}/s{s}", DecodeConfig(block_n=bn, block_h=bh, num_warps=w, num_stages=s))
                    for bn, bh, w, s in SWEEP]
        base = choose_num_splits(args.batch, len(groups.tables(16, device)[0]), args.context, 64,
                                    sm_count(device))  # four programs a SM at 64-key tiles (the old default)
        for bn, bh, w, s, times in AHEAD_SWEEP:
            splits = max(1, int(base * times))
            configs.append((f"bn{bn}/bh{bh}/w{w}/s{s}/splits{splits}/ahead1",
                            DecodeConfig(block_n=bn, block_h=bh, num_warps=w, num_stages=s, num_splits=splits,
                                            pages_ahead=True)))
    for label, cfg in configs:
        def sliced(r, reduce_scores, cfg=cfg):
            return paged_sliced_attention(sp.q[r], sp.keys[r], sp.values[r], prob.block_table, prob.lengths,
                                          prob.scale, groups, reduce_scores, max_length=args.context, config=cfg)
        checked = first_call_checked(label, 18, lambda sliced=sliced: run_all_slices(sp, sliced), prob,
                                     result["configs"])
        if checked is None:
            continue
        detail = checked[0]
        one = lambda: sliced(0, None)  # noqa: E731
        eager = time_eager(one, args.warmup, args.iters, args.repeats)
        graph = time_graph(one, args.iters, args.repeats)
        print(f"  {label:18s} eager {rate(eager)} | graph {rate(graph)} | check ok ({detail})")
        result["configs"].append({"config": label, "ok": True, "check": detail, "eager_s": eager, "graph_s": graph,
                                  "graph_tbps": None if graph is None else sp.slice_bytes() / graph / 1e12})

    def torch_path():
        return paged_attention_torch(sp.q[0], sp.keys[0], sp.values[0], prob.block_table, prob.lengths, prob.scale,
                                     prob.kv_head_of_q, None, reduce_scores=lambda s: s, max_keys=args.context)
    try:
        seconds = time_eager(torch_path, 2, 10, args.repeats)
        print(f"  {'torch path':18s} eager {rate(seconds)}")
        result["torch_path_s"] = seconds
    except Exception as exc:  # e.g. out of memory: it gathers the pool in fp32
        print(f"  torch path failed: {type(exc).__name__}: {str(exc)[:200]}")
        result["torch_path_error"] = f"{type(exc).__name__}: {exc}"[:300]
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--heads", type=int, default=8, help="query heads of the rank's head group (= KV heads)")
    p.add_argument("--dim", type=int, default=512, help="whole head dim (Dk = Dv)")
    p.add_argument("--slices", type=int, default=2, help="m: slices of each head's dims")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--context", type=int, default=10000)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp16")
    p.add_argument("--page-size", type=int, default=16)
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-sweep", action="store_true", help="time only the default launch config")
    p.add_argument("--json", default=None, help="write the results to this file")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_sliced: needs a CUDA GPU; tests/test_kernels_sliced.py runs the kernels on CPU", file=sys.stderr)
        return 2
    result = run(args)
    result["device"] = torch.cuda.get_device_name(0)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    ok = result["configs"] and result["configs"][0].get("ok")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
