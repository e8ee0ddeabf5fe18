"""`helix generate`: stream one request's tokens as they arrive, then its latency statistics."""

from __future__ import annotations

import statistics
import sys

from services.client import HelixClient, HelixError


def run_generate(args) -> int:
    with HelixClient(args.target, timeout_s=args.timeout_s) as client:
        try:
            if args.wait_ready_s > 0:
                client.wait_ready(args.wait_ready_s)
            stream = client.stream(
                args.prompt_ids,
                args.max_new_tokens,
                temperature=args.temperature,
                top_p=args.top_p,
                top_k=args.top_k,
                seed=args.seed,
                stop_token_ids=args.stop_ids,
                prompt_text=args.prompt,
                model=args.model,
            )
            for token in stream:
                print(token.text if token.text else f"{token.token_id} ", end="", flush=True)
            result = stream.result
        except HelixError as error:
            print(f"\nhelix generate: {error}", file=sys.stderr)
            return 1
    print()
    print(summary(result))
    return 0


def summary(result) -> str:
    lines = [
        f"request {result.request_id}: {result.prompt_tokens} prompt tokens, "
        f"{result.generated_tokens} generated, finish reason {result.finish_reason}"
    ]
    if result.ttft_s is not None:
        lines.append(f"time to first token {result.ttft_s * 1e3:.1f} ms, total {result.total_s * 1e3:.1f} ms")
    if result.ttl_s:
        ttl_ms = sorted(gap * 1e3 for gap in result.ttl_s)
        rate = len(ttl_ms) / (sum(ttl_ms) / 1e3) if sum(ttl_ms) > 0 else float("inf")
        lines.append(
            f"token-to-token latency over {len(ttl_ms)} gaps: mean {statistics.fmean(ttl_ms):.2f} ms, "
            f"p50 {_percentile(ttl_ms, 50):.2f}, p90 {_percentile(ttl_ms, 90):.2f}, "
            f"p99 {_percentile(ttl_ms, 99):.2f}, max {ttl_ms[-1]:.2f} ms ({rate:.1f} tokens/s)"
        )
    return "\n".join(lines)


def _percentile(sorted_values: list[float], percent: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, -(-len(sorted_values) * percent // 100))
    return sorted_values[int(rank) - 1]
