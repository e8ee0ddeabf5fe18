#!/usr/bin/env bash
# Two one-row projection changes of 2026-12-04 (fifth session), written without a GPU, on one GPU:
# - the KVP merge inside the o projection's kernel (small_linear.merge_linear): its kernel tests compiled
#   (bitwise against the merge kernel then the projection at KVP = 2), then the batch-1 o projection of
#   llama3-8b on one of two GPUs from 2 and 4 partials, merge kernel + projection against the merging one;
# - the L2 prefetch at a projection's end (small_linear.prefetch_after) and at the split merge's end (before
#   the KVP exchange): both variants' tests compiled (same bits as without), then o -> a spin kernel standing
#   for the all-reduce (0 and 8 us) -> gate/up, with o prefetching 0-32 MiB of gate/up.
# Then the one-GPU step and helix verify, as a check of the layer's new attention_output path (KVP = 1).
# Meant to fit one 10-minute call. On 2 GPUs scripts/gpu_next.sh then measures the step with each on and off. Results in ${OUT:-out}.
set -u
LOG_NAME=merge source scripts/gpu_env.sh
say "small_linear tests and the split merge's prefetch variant, compiled"
timeout 300 python -m pytest -q -p no:cacheprovider tests/test_small_linear.py 2>&1 | tail -3 | tee -a "$log"
timeout 300 python -m pytest -q -p no:cacheprovider tests/test_kernels_decode.py -k "prefetch or merge" 2>&1 | tail -3 \
  | tee -a "$log"
say "o projection from KVP partials"
timeout 200 python -m helix_core.kernels.bench_small_linear --merge 2 4 --iters 50 --json "$out/merge-linear.json" 2>&1 \
  | quiet | tee -a "$log"
say "o -> gap -> gate/up with the L2 prefetch"
timeout 200 python -m helix_core.kernels.bench_small_linear --prefetch 0 8 16 24 32 --gap-us 0 8 --iters 50 \
  --json "$out/l2-prefetch.json" 2>&1 | quiet | tee -a "$log"
say "the one-GPU step after the attention_output change (llama3-8b 1 x 128K: 8.051 ms on 2026-12-04) and its exactness"
bench_rows bench-llama-1gpu.json 200 --shape llama3-8b --plans helix:kvp=1,tpa=1 --points 1x128k --hopb 1
verify_one_gpu
say done
