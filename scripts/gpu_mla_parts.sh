#!/usr/bin/env bash
# One H200: the absorbed-MLA decode kernel with its values in two parts (dv_parts=2: each program a
# 64 x 256 accumulator, the scores recomputed per part) against the default, at 1 x 32K and
# 4 x 128K; the GQA kernel with the tiled merge at 32K and 128K; the kernel tests compiled on the GPU first. Results in ${OUT:-out}.
set -u
LOG_NAME=mla-parts source scripts/gpu_env.sh
say "kernel tests on the GPU"
timeout 150 python -m pytest -q -p no:cacheprovider tests/test_kernels_decode.py -x 2>&1 | tail -3 | tee -a "$log"
keep() { grep -E "^===|  (default |bn|best)" | sed -E 's/\| check ok.*//' | tee -a "$log"; }
for point in "4 131072" "1 32768"; do
  set -- $point
  say "bench_decode MLA $1 x $2, dv_parts=2 sweep"
  timeout 130 python -m helix_core.kernels.bench_decode --mla --batch $1 --context $2 --no-baseline --only /p \
    --iters 60 --repeats 3 --json "$out/kernel-mla-parts-$1x$2.json" 2>&1 | keep
done
for ctx in 32768 131072; do
  say "bench_decode GQA batch 1 x $ctx (tiled merge kernel), sweep"
  timeout 90 python -m helix_core.kernels.bench_decode --batch 1 --context $ctx --no-baseline --iters 100 --repeats 3 \
    --json "$out/kernel-gqa-tiledmerge-$ctx.json" 2>&1 | grep -E "^===|  (default |bn|best|torch)" | sed -E 's/\| check ok.*//' | tee -a "$log"
done
say done
