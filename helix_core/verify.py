"""Exactness against Hugging Face `transformers` on the same checkpoint.

Two checks, used by the tests and runnable on GPUs (`python -m helix_core.verify ...`):
  * free-running: our greedy tokens and logits at every step against HF on our tokens;
  * teacher-forced: in a low precision, feed the fp32 reference's tokens back and compare
    logits within a tolerance; argmax must agree wherever the reference's top-2 gap exceeds it.
    Every step also compares, across ranks, a checksum of the sampled tokens and the routing.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field

import torch

from .config import ModelConfig
from .engine import ALL_REDUCE_CHOICES, DTYPES, EngineOptions, PrefillItem
from .launcher import LocalCluster, device_unavailable
from .plan import InvalidPlanError, Plan


@dataclass
class StepReport:
    max_abs_diff: float = 0.0
    max_logprob_diff: float = 0.0  # of the chosen token's logprob (free-running checks)
    argmax_mismatches: int = 0  # where the reference's top-2 gap exceeds the tolerance
    steps: int = 0
    disagreements: list[str] = field(default_factory=list)


def hf_logits(hf_model, token_ids: list[int]) -> torch.Tensor:
    """HF logits at every position of one sequence, fp32 on CPU."""
    device = next(hf_model.parameters()).device
    with torch.no_grad():
        return hf_model(torch.tensor([token_ids], device=device)).logits[0].float().cpu()


def hf_greedy(hf_model, prompt: list[int], steps: int) -> list[int]:
    tokens = list(prompt)
    for _ in range(steps):
        tokens.append(int(hf_logits(hf_model, tokens)[-1].argmax()))
    return tokens[len(prompt):]


def check_free_running(cluster: LocalCluster, hf_model, prompts: dict[int, list[int]], steps: int,
                       tolerance: float, pipelined: bool = False) -> StepReport:
    """Greedy decode on the cluster; every step's logits and token against HF on the same tokens.
    pipelined: each step launched before the previous one is finished (Engine.decode_launch)."""
    outs = cluster.generate([PrefillItem(s, p) for s, p in prompts.items()], steps, return_logits=True,
                            pipelined=pipelined)
    report = StepReport()
    for seq_id, prompt in prompts.items():
        generated = [o.token_id for o in outs[seq_id]]
        reference = hf_logits(hf_model, prompt + generated)
        for i, out in enumerate(outs[seq_id]):
            ref = reference[len(prompt) - 1 + i]
            report.max_abs_diff = max(report.max_abs_diff, float((out.logits - ref).abs().max()))
            ref_logprob = float(torch.log_softmax(ref.double(), dim=-1)[out.token_id])
            report.max_logprob_diff = max(report.max_logprob_diff, abs(out.logprob - ref_logprob))
            if out.token_id != int(ref.argmax()):
                report.argmax_mismatches += 1
            report.steps += 1
    return report


def check_teacher_forced(cluster: LocalCluster, reference_logits: dict[int, torch.Tensor],
                         reference_tokens: dict[int, list[int]], prompts: dict[int, list[int]],
                         tolerance: float) -> StepReport:
    """Feed the reference's tokens; compare logits, decisive argmaxes and cross-rank checksums."""
    report = StepReport()
    ids = list(prompts)
    first = cluster.prefill([PrefillItem(s, prompts[s]) for s in ids], return_logits=True)
    outs = {o.seq_id: [o] for o in first}
    steps = len(next(iter(reference_tokens.values())))
    for step in range(steps - 1):
        feed = [reference_tokens[s][step] for s in ids]
        for out in cluster.decode(ids, input_tokens=feed, return_logits=True):
            outs[out.seq_id].append(out)
        agreement = cluster.agreement()
        for key, values in agreement.items():
            if len(set(values)) != 1:
                report.disagreements.append(f"step {step}: {key} differs across ranks: {values}")
    for seq_id in ids:
        ref_all = reference_logits[seq_id]
        for i, out in enumerate(outs[seq_id]):
            ref = ref_all[len(prompts[seq_id]) - 1 + i]
            report.max_abs_diff = max(report.max_abs_diff, float((out.logits - ref).abs().max()))
            top2 = ref.topk(2).values
            if float(top2[0] - top2[1]) > 2 * tolerance and int(out.logits.argmax()) != int(ref.argmax()):
                report.argmax_mismatches += 1
            report.steps += 1
    return report


BUILT_IN_PROMPTS = {0: list(range(3, 8)), 1: [(7 * i + 1) % 200 for i in range(23)],
                    2: [(5 * i + 2) % 200 for i in range(41)]}
PROMPT_STEP = 13  # --prompt-tokens: the three prompts are this many tokens apart
PAGE_SIZE, STAGE_SIZE = 8, 16  # the engine's KV pages and KVP stages here: pages and stages crossed often


def verify_prompts(batch: int, prompt_tokens: int | None = None) -> dict[int, list[int]]:
    """The `batch` longest of three prompts: the built-in ones (5, 23 and 41 tokens), or with prompt_tokens three
    of prompt_tokens - 26, - 13 and prompt_tokens tokens (ids below 200, each sequence its own pattern), long
    enough for the decode kernels to split their keys."""
    if prompt_tokens is None:
        prompts = BUILT_IN_PROMPTS
    else:
        prompts = {s: [(a * i + b) % 200 for i in range(prompt_tokens - PROMPT_STEP * (2 - s))]
                   for s, (a, b) in enumerate(((7, 1), (5, 2), (11, 3)))}
    return dict(list(prompts.items())[-batch:])


def kv_pages_for(prompts: dict[int, list[int]], steps: int, page_size: int, stage_size: int) -> int:
    """KV pages a rank needs at most (every rank as if it held all of every sequence, plus a stage each)."""
    return max(256, sum(-(-(len(p) + steps + stage_size) // page_size) for p in prompts.values()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="helix verify", description="Helix exactness against HF transformers")
    parser.add_argument("--arch", default="llama")
    parser.add_argument("--model", help="checkpoint folder (default: a tiny random one of --arch)")
    parser.add_argument("--plan", action="append", required=True, help="e.g. helix:kvp=2,tpa=1 (repeatable)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--tolerance", type=float, default=None,
                        help="logit tolerance; default: 1.5 x how far HF itself in --dtype is from HF fp32 "
                             "on the same tokens (at least 0.02)")
    parser.add_argument("--hopb-pieces", type=int, default=2)
    parser.add_argument("--all-reduce", choices=ALL_REDUCE_CHOICES, default="auto")
    parser.add_argument("--exchange", choices=["auto", "all_to_all", "gather"], default="auto")
    parser.add_argument("--small-linear", choices=["auto", "on", "off"], default="auto")
    parser.add_argument("--merge-in-projection", choices=["auto", "off"], default="auto")
    parser.add_argument("--o-projection", choices=["sharded", "replicated"], default="sharded")
    parser.add_argument("--batch", type=int, choices=[1, 2, 3], default=3,
                        help="sequences decoded together (1: the batch-1 paths, e.g. the one-row linear kernel)")
    parser.add_argument("--prompt-tokens", type=int, default=None,
                        help="the longest prompt's tokens (default: the built-in prompts of 5, 23 and 41): long "
                             "prompts fill several of the decode kernels' key splits (e.g. 1000 tokens, batch 3: 8 "
                             "splits of 128 keys on a 132-SM GPU); prompt + steps must fit max_position_embeddings")
    parser.add_argument("--out", help="write the JSON report here")
    parser.add_argument("--overrides", default="{}", help="JSON of tiny-model config overrides")
    return parser


def main(argv=None) -> int:
    from .tiny_models import load_hf_model, make_tiny_model

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        plans = [Plan.parse(spec) for spec in args.plan]
    except InvalidPlanError as error:
        parser.error(f"argument --plan: {error}")
    if (reason := device_unavailable(args.device)) is not None:
        parser.error(reason)
    model_dir = args.model or str(make_tiny_model(args.arch, f"/tmp/helix-verify-{args.arch}",
                                                  **json.loads(args.overrides)))
    if args.prompt_tokens is not None:
        limit = ModelConfig.from_dir(model_dir).max_position_embeddings
        if args.prompt_tokens <= 2 * PROMPT_STEP:
            parser.error(f"argument --prompt-tokens: {args.prompt_tokens} is fewer than {2 * PROMPT_STEP + 1}")
        if args.prompt_tokens + args.steps > limit:
            parser.error(f"argument --prompt-tokens: {args.prompt_tokens} + {args.steps} steps exceed the model's "
                         f"max_position_embeddings {limit} (raise it with --overrides)")
    hf = load_hf_model(model_dir, dtype=torch.float32)
    prompts = verify_prompts(args.batch, args.prompt_tokens)
    ref_tokens = {s: hf_greedy(hf, p, args.steps) for s, p in prompts.items()}
    ref_logits = {s: hf_logits(hf, p + ref_tokens[s]) for s, p in prompts.items()}
    hf_low = load_hf_model(model_dir, dtype=DTYPES[args.dtype])
    hf_low_deviation = max(float((hf_logits(hf_low, p + ref_tokens[s]) - ref_logits[s]).abs().max())
                           for s, p in prompts.items())
    tolerance = args.tolerance if args.tolerance is not None else max(0.02, 1.5 * hf_low_deviation)
    print(json.dumps({"hf_same_dtype_max_abs_diff_vs_fp32": hf_low_deviation, "tolerance": tolerance}), flush=True)
    results, failed = [], False
    for spec, plan in zip(args.plan, plans):
        options = EngineOptions(dtype=args.dtype, page_size=PAGE_SIZE, stage_size=STAGE_SIZE,
                                hopb_pieces=args.hopb_pieces,
                                kv_pages=kv_pages_for(prompts, args.steps, PAGE_SIZE, STAGE_SIZE),
                                all_reduce=args.all_reduce, exchange=args.exchange,
                                small_linear=args.small_linear, merge_in_projection=args.merge_in_projection,
                                o_projection=args.o_projection)
        with LocalCluster(model_dir, plan, device=args.device, options=options) as cluster:
            report = check_teacher_forced(cluster, ref_logits, ref_tokens, prompts, tolerance)
            stats = cluster.stats()[0]
            hopb = stats["hopb_pieces_run"]
        ok = report.max_abs_diff <= tolerance and not report.argmax_mismatches and not report.disagreements
        failed |= not ok
        row = {"plan": spec, "arch": args.arch, "device": args.device, "dtype": args.dtype, "steps": report.steps,
               "max_abs_logit_diff": report.max_abs_diff, "decisive_argmax_mismatches": report.argmax_mismatches,
               "tolerance": tolerance, "hf_same_dtype_max_abs_diff": hf_low_deviation,
               "rank_disagreements": report.disagreements, "hopb_pieces_run": hopb,
               "all_reduce": stats.get("all_reduce"), "exchange": stats.get("exchange"),
               "small_linear": stats.get("small_linear"), "merges_in_projection": stats.get("merges_in_projection"),
               "o_projection": stats.get("o_projection"),
               "replicated_o_projections": stats.get("replicated_o_projections"), "batch": len(prompts),
               "prompt_tokens": [len(p) for p in prompts.values()], "ok": ok}
        results.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
