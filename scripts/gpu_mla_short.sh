#!/usr/bin/env bash
# One H200: below LONG_MLA_KEYS (16K local keys) the MLA default is still 16-head blocks, four programs
# a SM; against it the long-context tile (128 heads, values in two parts, 8 warps, one or two waves) at
# 1 x 4K, 1 x 8K, 16 x 8K and 4 x 16K keys. Results in ${OUT:-out}.
set -u
LOG_NAME=mla-short source scripts/gpu_env.sh
for point in "1 4096" "1 8192" "16 8192" "4 16384" "32 4096"; do
  set -- $point
  say "bench_decode MLA $1 x $2"
  timeout 60 python -m helix_core.kernels.bench_decode --mla --batch $1 --context $2 --no-baseline \
    --only bn32/bh128/w8/s2 --iters 100 --repeats 3 --json "$out/kernel-mla-short-$1x$2.json" 2>&1 \
    | grep -E "^===|  (default |bn|best)" | sed -E 's/\| check ok.*//' | tee -a "$log"
done
say done
