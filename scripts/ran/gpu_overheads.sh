#!/usr/bin/env bash
# One H200, second half of 2026-12-04: the step's small-kernel overheads cut (greedy pick as two-level
# reductions, the step's inputs as one compiled kernel, no x1.0 RoPE scaling, the split merge letting the o
# projection launch early): kernel tests compiled, exactness at batch 1 and 3, then the one-GPU steps with
# their timelines (compare scripts/ran/gpu_timeline.sh, run before these changes).
set -u
LOG_NAME=overheads source scripts/gpu_env.sh
mkdir -p "$out/prof"
say "kernel tests (compiled)"
timeout 240 python -m pytest -q -p no:cacheprovider tests/test_kernels_decode.py tests/test_decode_launch.py \
  tests/test_pipelined_decode.py tests/test_step_inputs.py tests/test_sampling.py 2>&1 | tail -2 | tee -a "$log"
verify_one_gpu
bench_rows bench-llama-1gpu.json 200 --shape llama3-8b --plans helix:kvp=1,tpa=1 --points 1x8k 1x32k 1x128k \
  --hopb 1 --steps 100 --profile "$out/prof"
bench_rows bench-mla-1gpu.json 150 --shape deepseek-mla --layers 4 --plans helix:kvp=1,tpa=1 --points 1x32k \
  --hopb 1 --steps 100 --profile "$out/prof"
for f in "$out"/prof/timeline-*; do head -9 "$f" | cut -c1-140 | tee -a "$log"; tail -1 "$f" | tee -a "$log"; done
say done
