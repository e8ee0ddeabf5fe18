#!/usr/bin/env bash
# The sm_90 Gluon MLA kernel in place (third session of 2026-12-04), one H200: its GPU tests and the decode
# kernel tests compiled (MLA cases now take it), then exactness against HF of DeepSeek-V3 widened to
# 128 heads (bf16, CUDA graphs, batch 1 and 3).
set -u
LOG_NAME=gluon-final source scripts/gpu_env.sh
say "gluon MLA GPU tests, decode kernel and launch tests compiled"
timeout 300 python -m pytest -q -p no:cacheprovider tests/test_mla_sm90_gpu.py tests/test_kernels_decode.py \
  tests/test_decode_launch.py 2>&1 | tail -15 | tee -a "$log"
verify_mla 128
say done
