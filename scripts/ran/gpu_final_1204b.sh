#!/usr/bin/env bash
# Last check of the second session of 2026-12-04 on one H200: the decode-kernel tests compiled (P through
# memory among them) and the one-GPU exactness against HF with CUDA graphs (llama bf16 batch 1 and 3,
# DeepSeek-V3 widened to 128 heads).
set -u
LOG_NAME=final source scripts/gpu_env.sh
say "decode kernel and launch tests compiled"
timeout 200 python -m pytest -q -p no:cacheprovider tests/test_kernels_decode.py tests/test_decode_launch.py 2>&1 \
  | tail -3 | tee -a "$log"
verify_one_gpu
say done
