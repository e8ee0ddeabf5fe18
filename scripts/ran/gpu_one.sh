#!/usr/bin/env bash
# One H200 (when no multi-GPU kind is lent): the GQA decode kernel at 32K (launch sweep, fewer
# splits included) and 128K keys, batch 1, against SDPA; the gRPC client's TTL against the engine
# alone on one GPU with the current defaults. Needs `.whl` carried. Results in ${OUT:-out}.
set -u
LOG_NAME=one source scripts/gpu_env.sh
for ctx in 32768 131072; do
  sweep=$([ $ctx = 32768 ] || echo --no-sweep)
  say "bench_decode GQA batch 1 x $ctx"
  timeout 200 python -m helix_core.kernels.bench_decode --context $ctx --batch 1 --no-baseline $sweep \
    --json "$out/kernel-gqa-$ctx.json" 2>&1 | tee -a "$log"
done
say "gRPC TTL against the engine alone, 1 GPU"
timeout 240 python scripts/gpu_serve_check.py --gpus 1 --out "$out/serve-check-1gpu.json" > "$out/serve-check-1gpu.log" 2>&1
grep '^{' "$out/serve-check-1gpu.log" | tail -1 | tee -a "$log"
say done
