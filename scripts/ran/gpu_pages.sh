#!/usr/bin/env bash
# One H200: does the page-table gather cost the GQA decode kernel its bandwidth at short contexts?
# The same 32K / 128K batch-1 problems with pages of 16 (the engine's), 64 and 256 tokens.
set -u
LOG_NAME=pages source scripts/gpu_env.sh
for page in 64 256; do
  say "bench_decode GQA batch 1 x 32768, pages of $page"
  timeout 150 python -m helix_core.kernels.bench_decode --context 32768 --batch 1 --no-baseline --page-size $page \
    --json "$out/kernel-gqa-32768-page$page.json" 2>&1 | grep -E "default |best|SDPA enable" | tee -a "$log"
  say "bench_decode GQA batch 1 x 131072, pages of $page"
  timeout 100 python -m helix_core.kernels.bench_decode --context 131072 --batch 1 --no-baseline --no-sweep \
    --page-size $page --json "$out/kernel-gqa-131072-page$page.json" 2>&1 | grep -E "default |SDPA enable" | tee -a "$log"
done
say done
