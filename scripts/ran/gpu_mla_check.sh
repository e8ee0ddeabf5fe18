#!/usr/bin/env bash
# One H200: the absorbed-MLA kernel's default after the one-wave split rule, at 4 x 128K and 1 x 32K.
set -u
LOG_NAME=mla-check source scripts/gpu_env.sh
for point in "4 131072" "1 32768"; do
  set -- $point
  say "bench_decode MLA $1 x $2, default"
  timeout 60 python -m helix_core.kernels.bench_decode --mla --batch $1 --context $2 --no-baseline --no-sweep \
    --no-graph --iters 40 --repeats 3 --json "$out/kernel-mla-onewave-$1x$2.json" 2>&1 \
    | grep -E "^===|  default " | sed -E 's/\| check ok.*//' | tee -a "$log"
done
say done
