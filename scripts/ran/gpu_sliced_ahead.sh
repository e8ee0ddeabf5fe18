#!/usr/bin/env bash
# One H200: the headslice plan's sliced kernels with the block table read a tile ahead (the AHEAD_SWEEP
# rows of bench_sliced) against the default, for the 16 x 512 example's 2 x 2 and 1 x 4 ranks (batch 8 x
# 10000 keys, fp16); the decode kernel's pages-ahead tests on the GPU after the helper refactor.
set -u
LOG_NAME=sliced-ahead source scripts/gpu_env.sh
say "kernel tests on the GPU (sliced; decode pages-ahead)"
timeout 120 python -m pytest -q -p no:cacheprovider tests/test_kernels_sliced.py > "$out/pytest-sliced.log" 2>&1
tail -2 "$out/pytest-sliced.log" | tee -a "$log"
timeout 60 python -m pytest -q -p no:cacheprovider tests/test_kernels_decode.py -k "ahead or production" 2>&1 \
  | tail -2 | tee -a "$log"
sl() { say "bench_sliced $*"; timeout 120 python -m helix_core.kernels.bench_sliced --batch 8 --context 10000 \
  --dtype fp16 "$@" 2>&1 | grep -E "===|default|bn|torch" | sed -E 's/\| check ok.*//' | tee -a "$log"; }
sl --heads 8 --slices 2 --json "$out/sliced-2x2.json"
sl --heads 16 --slices 4 --json "$out/sliced-1x4.json"
say done
