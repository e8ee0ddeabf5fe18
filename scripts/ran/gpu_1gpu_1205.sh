#!/usr/bin/env bash
# One H200 (2026-12-05, second session): the GQA kernel at the points the targets tool found stale (1 x 256K) and
# with pages of 16 (the engine's) and 64 (helix bench's default before today) at 1 x 128K; the one-GPU llama3-8b
# 1 x 128K step with pages of 64 next to the default's 7.980 ms; the gRPC TTL on one GPU. Results in ${OUT:-out}.
set -u
LOG_NAME=1gpu source scripts/gpu_env.sh
for page in 16 64; do
  say "bench_decode 1 x 128K, pages of $page"
  timeout 90 python -m helix_core.kernels.bench_decode --context 131072 --batch 1 --page-size $page --no-sweep \
    --no-baseline --json "$out/kernel-gqa-131072-page$page.json" 2>&1 | quiet | tail -4 | tee -a "$log"
done
for ctx in 32768 262144 524288 1048576; do
  say "bench_decode 1 x $ctx, pages of 16"
  timeout 90 python -m helix_core.kernels.bench_decode --context $ctx --batch 1 --no-sweep --no-baseline \
    --json "$out/kernel-gqa-$ctx.json" 2>&1 | quiet | tail -4 | tee -a "$log"
done
say "llama3-8b 1 x 128K, one GPU, pages of 64"
bench_rows bench-llama-1gpu-page64.json 200 --shape llama3-8b --plans helix:kvp=1,tpa=1 --points 1x128k --hopb 1 \
  --page-size 64
say "gRPC TTL against the engine alone, one GPU"
timeout 200 python scripts/gpu_serve_check.py --gpus 1 --out "$out/serve-check-1gpu.json" > "$out/serve-check.log" 2>&1
grep '^{' "$out/serve-check.log" | tail -1 | tee -a "$log"
say done
