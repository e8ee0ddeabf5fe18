#!/usr/bin/env bash
# One H200: the headslice plan's sliced decode kernels compiled for the GPU (their tests, then the
# per-rank micro-benchmark of the 16 x 512 example against the whole-head decode kernel a helix rank
# runs on the same bytes). Per rank, batch 8 x 10000 keys, fp16:
#   headslice n x m: 16/n heads, 512/m dims, all 80000 keys;  helix KVP=N: 16 heads x 512, 80000/N keys.
# Results in ${OUT:-out}.
set -u
LOG_NAME=sliced source scripts/gpu_env.sh
say "kernel tests on the GPU"
timeout 240 python -m pytest -q -p no:cacheprovider tests/test_kernels_sliced.py \
  > "$out/pytest-kernels.log" 2>&1
tail -3 "$out/pytest-kernels.log" | tee -a "$log"
sl() { say "bench_sliced $*"; timeout 240 python -m helix_core.kernels.bench_sliced --batch 8 --context 10000 \
  --dtype fp16 "$@" 2>&1 | tee -a "$log"; }
sl --heads 8 --slices 2 --json "$out/sliced-2x2.json"
sl --heads 16 --slices 4 --no-sweep --json "$out/sliced-1x4.json"
sl --heads 4 --slices 2 --no-sweep --json "$out/sliced-4x2.json"
sl --heads 8 --slices 4 --no-sweep --json "$out/sliced-2x4.json"
sl --heads 16 --slices 2 --no-sweep --json "$out/sliced-1x2.json"
for n in 2 4 8; do
  say "bench_decode: helix KVP=$n rank"
  timeout 200 python -m helix_core.kernels.bench_decode --heads 16 --kv-heads 16 --dim 512 --batch 8 \
    --context $((10000 / n)) --dtype fp16 --no-sweep --no-baseline --json "$out/helix-kvp$n.json" 2>&1 | tee -a "$log"
done
say done
