#!/usr/bin/env bash
# One H200, budget's end of 2026-12-04: the fused norm's statistics in 2048-value steps (2 load round trips
# after the wait instead of 8): the one-row kernel's tests compiled, exactness at batch 1, the llama steps.
set -u
LOG_NAME=normblock source scripts/gpu_env.sh
say "small_linear tests (compiled)"
timeout 60 python -m pytest -q -p no:cacheprovider tests/test_small_linear.py 2>&1 | tail -1 | tee -a "$log"
say "verify llama bf16 batch 1"
verify_rows verify-llama-bf16-b1.json 60 --arch llama --dtype bfloat16 --steps 16 --batch 1 --plan helix:kvp=1,tpa=1
bench_rows bench-llama-1gpu.json 90 --shape llama3-8b --plans helix:kvp=1,tpa=1 --points 1x8k 1x128k --hopb 1 --steps 100
say done
