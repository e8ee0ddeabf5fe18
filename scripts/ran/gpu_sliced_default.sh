#!/usr/bin/env bash
# One H200, after gpu_sliced_ahead.sh: the sliced kernels' new 16-bit default (block table a tile ahead,
# three stages, two programs a SM) on the GPU: their tests, then the 2 x 2 and 1 x 4 ranks of the
# 16 x 512 example (batch 8 x 10000 keys, fp16), default only.
set -u
LOG_NAME=sliced-default source scripts/gpu_env.sh
timeout 100 python -m pytest -q -p no:cacheprovider tests/test_kernels_sliced.py 2>&1 | tail -2 | tee -a "$log"
for hs in "8 2" "16 4"; do
  set -- $hs
  say "bench_sliced --heads $1 --slices $2 (default)"
  timeout 90 python -m helix_core.kernels.bench_sliced --batch 8 --context 10000 --dtype fp16 --heads $1 --slices $2 \
    --no-sweep --json "$out/sliced-default-$1x$2.json" 2>&1 | grep -E "===|default|torch" | sed -E 's/\| check ok.*//' \
    | tee -a "$log"
done
say done
