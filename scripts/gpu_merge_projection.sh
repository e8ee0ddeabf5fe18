#!/usr/bin/env bash
# The KVP merge inside the o projection's kernel (small_linear.merge_linear, 2026-12-04 fifth session,
# written without a GPU). One GPU: its kernel tests compiled (bitwise against the merge kernel then the
# projection at KVP = 2), then the batch-1 o projection of llama3-8b on one of two GPUs from 2 and 4
# partials, merge kernel + projection against the merging projection, CUDA graphs.
# On 2 GPUs scripts/gpu_next.sh then measures the step with it on and off. Results in ${OUT:-out}.
set -u
LOG_NAME=merge source scripts/gpu_env.sh
say "small_linear tests, compiled"
timeout 300 python -m pytest -q -p no:cacheprovider tests/test_small_linear.py 2>&1 | tail -3 | tee -a "$log"
say "o projection from KVP partials"
timeout 200 python -m helix_core.kernels.bench_small_linear --merge 2 4 --iters 50 --json "$out/merge-linear.json" 2>&1 \
  | quiet | tee -a "$log"
say done
