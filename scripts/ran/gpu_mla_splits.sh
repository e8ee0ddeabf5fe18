#!/usr/bin/env bash
# One H200: the absorbed-MLA decode kernel (128 heads, 576/512) at batch 1 x 32K and 4 x 128K with
# 64-head blocks and fewer, longer splits (each split's fp32 partial is 64 x 512 x 4 B = 128 KB,
# read back by the merge), against the defaults. Results in ${OUT:-out}.
set -u
LOG_NAME=mla source scripts/gpu_env.sh
keep() { grep -E "^===|  (default|bn|best)" | sed -E 's/\| check ok.*//' | tee -a "$log"; }
for point in "1 32768" "4 131072" "1 131072"; do
  set -- $point
  say "bench_decode MLA batch $1 x $2, sweep"
  timeout 170 python -m helix_core.kernels.bench_decode --mla --batch $1 --context $2 --no-baseline --iters 60 --repeats 3 \
    --json "$out/kernel-mla-$1x$2.json" 2>&1 | keep
done
say done
