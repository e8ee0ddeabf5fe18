"""On 2 GPUs: the TTL a gRPC client sees against the engine alone, and a shard killed under NCCL.

    python scripts/gpu_serve_check.py --out $OUT/serve.json
    python scripts/gpu_serve_check.py --out $OUT/serve.json --gpus 1     # KVP=1: the TTL check only

1. Engine alone: LocalCluster (NCCL, CUDA graphs) decodes one sequence; host-visible TTL, one step at
   a time and with each step launched before the previous one is finished (as the server runs them).
2. The same checkpoint and plan behind `helix serve --device cuda`; the SDK's TTL for the same
   request (median of the gaps between streamed tokens).
3. While a request streams, rank 1 is killed: the client must get UNAVAILABLE within seconds.
Every wait is bounded; every process is killed at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROMPT = list(range(1, 65))


DEVICE = "cuda"
DTYPE = "bf16"


def engine_alone_ttl(model_dir: str, spec: str, steps: int) -> tuple[float, float]:
    """Median host time between tokens of one sequence: (one step at a time, each step launched before
    the previous one is finished, as the server's scheduler runs them)."""
    from helix_core.engine import EngineOptions, PrefillItem
    from helix_core.launcher import LocalCluster
    from helix_core.plan import Plan

    dtype = "bfloat16" if DTYPE == "bf16" else "float32"
    with LocalCluster(model_dir, Plan.parse(spec), device=DEVICE, options=EngineOptions(dtype=dtype,
                                                                                        kv_pages=512)) as cluster:
        cluster.prefill([PrefillItem(0, PROMPT)])
        one_at_a_time, last = [], time.perf_counter()
        for _ in range(steps):
            cluster.decode([0])
            now = time.perf_counter()
            one_at_a_time.append(now - last)
            last = now
        pipelined, in_flight = [], cluster.decode_launch([0])
        for _ in range(steps):
            launched = cluster.decode_launch([0])
            cluster.decode_finish(in_flight)
            now = time.perf_counter()
            pipelined.append(now - last)
            last, in_flight = now, launched
        cluster.decode_finish(in_flight)
    return statistics.median(one_at_a_time[5:]), statistics.median(pipelined[5:])


def start_serve(model_dir: str, workdir: Path, gpus: int) -> tuple[subprocess.Popen, dict]:
    ready = workdir / "ready.json"
    cmd = [sys.executable, "-m", "services.cli", "serve", "--collective-timeout-s", "10", "--model", model_dir, "--device", DEVICE,
           "--shards", str(gpus), "--plan", "helix", "--kvp", str(gpus), "--tpa", "1", "--dtype", DTYPE, "--kv-pages", "512", "--port", "0",
           "--metrics-port", "0", "--shard-port", "0", "--shard-metrics-port", "0", "--ready-file", str(ready),
           "--max-restarts", "0"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=open(workdir / "serve.log", "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if ready.exists():
            return proc, json.loads(ready.read_text())
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    raise RuntimeError("helix serve did not become ready: " + (workdir / "serve.log").read_text()[-3000:])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of this script with a tiny model")
    parser.add_argument("--fault", choices=["kill", "stop"], default="kill",
                        help="kill: SIGKILL rank 1; stop: SIGSTOP it (a hung rank: collectives must time out)")
    parser.add_argument("--skip-ttl", action="store_true", help="only the fault check")
    parser.add_argument("--gpus", type=int, choices=[1, 2], default=2,
                        help="1: helix KVP=1 on one GPU, the TTL check only (the fault check needs a second rank)")
    return parser


def main() -> int:
    parser = build_parser()
    args = parser.parse_args()
    if args.gpus == 1 and args.skip_ttl:
        parser.error("--gpus 1 has only the TTL check")
    # `timeout` sends SIGTERM: exit through the finally below, which stops `helix serve`'s process
    # group (an orphaned shard spinning in a hung collective slowed a later benchmark 2x once)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    global DEVICE, DTYPE
    DEVICE, DTYPE = args.device, ("bf16" if args.device == "cuda" else "fp32")
    from helix_core.tiny_models import make_tiny_model
    from services.client import HelixClient, HelixError

    workdir = Path(tempfile.mkdtemp(prefix="helix-serve-check-"))
    # a mid-size random Llama (GQA 16/4, 8 layers): big enough that a step is real GPU work
    size = dict(vocab_size=32000, hidden_size=2048, num_hidden_layers=8, num_attention_heads=16, num_key_value_heads=4,
                head_dim=128, intermediate_size=8192, max_position_embeddings=8192) if DEVICE == "cuda" else {}
    model_dir = str(make_tiny_model("llama", workdir / "model", **size))
    spec = f"helix:kvp={args.gpus},tpa=1"
    report = {"model": "random llama: 8 layers, hidden 2048, 16 q / 4 kv heads, FFN 8192, vocab 32000",
              "plan": spec, "device": f"{args.gpus} x {DEVICE}, {DTYPE}"}
    if not args.skip_ttl:
        one_at_a_time, pipelined = engine_alone_ttl(model_dir, spec, args.steps)
        report["engine_alone_one_at_a_time_ttl_median_s"] = one_at_a_time
        report["engine_alone_ttl_median_s"] = pipelined  # as the server runs its steps
        print(json.dumps(report), flush=True)
    proc, ready = start_serve(model_dir, workdir, args.gpus)
    try:
        client = HelixClient(ready["coordinator"], timeout_s=120)
        client.generate(PROMPT, 16)  # warm-up: graph capture, compile
        if not args.skip_ttl:
            result = client.generate(PROMPT, args.steps)
            report["grpc_client_ttl_median_s"] = statistics.median(result.ttl_s[5:])
            report["grpc_over_engine"] = report["grpc_client_ttl_median_s"] / report["engine_alone_ttl_median_s"]
            print(json.dumps(report), flush=True)
        if args.gpus == 1:
            return 0
        # a shard dies mid-stream under NCCL
        outcome = {}

        def stream():
            begin = time.monotonic()
            try:
                client.generate(PROMPT, 6000 if DEVICE == "cuda" else 150, timeout_s=120)
                outcome["result"] = "finished (unexpected)"
            except HelixError as error:
                outcome["result"] = f"{error.code.name}: {error.message[:200]}"
            outcome["ended_at"] = time.monotonic() - begin

        thread = threading.Thread(target=stream)
        thread.start()
        time.sleep(2.0 if DEVICE == "cuda" else 0.5)
        killed_at = time.monotonic()
        victim = ready["shards"][1]["pid"]
        os.kill(victim, signal.SIGKILL if args.fault == "kill" else signal.SIGSTOP)
        thread.join(timeout=90)
        outcome["seconds_from_kill_to_error"] = time.monotonic() - killed_at if not thread.is_alive() else None
        if args.fault == "stop":
            os.kill(victim, signal.SIGKILL)  # do not leave a stopped process behind
        report[f"shard_{args.fault}"] = outcome
        print(json.dumps(report), flush=True)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        Path(args.out).write_text(json.dumps(report, indent=1))
        print((workdir / "serve.log").read_text()[-2500:], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
