#!/usr/bin/env bash
# One H200, first call of 2026-12-04: the KVP=1 fast path that stores the attention output in the model's
# dtype (never run on a GPU before): the kernel tests compiled, exactness against HF at batch 1 and 3 with
# CUDA graphs, the one-GPU llama3-8b step; then the MLA kernel's block table read a tile ahead against
# the default (in-tile), which no session measured.
set -u
LOG_NAME=check source scripts/gpu_env.sh
say "kernel tests (compiled)"
timeout 300 python -m pytest -q -p no:cacheprovider tests/test_kernels_decode.py tests/test_decode_launch.py \
  tests/test_small_linear.py tests/test_rope_append.py tests/test_pipelined_decode.py 2>&1 | tail -3 | tee -a "$log"
verify_one_gpu
say "helix bench llama3-8b one GPU"
bench_rows bench-llama-1gpu.json 200 --shape llama3-8b --plans helix:kvp=1,tpa=1 --points 1x128k 1x32k 1x8k \
  --hopb 1 --steps 100
kernel_points mla-ahead 120 "1x32768 4x131072" --mla --only default
say done
