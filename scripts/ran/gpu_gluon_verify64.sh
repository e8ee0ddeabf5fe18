#!/usr/bin/env bash
# One H200: DeepSeek-V3 widened to 64 heads (a TP=2 shard's head count: the engine keeps one graph per batch
# bucket now that the sm_90 Gluon kernel's launch does not change with the length), exactness against HF
# with CUDA graphs, bf16, batch 1 and 3; and the Gluon kernel's GPU tests.
set -u
LOG_NAME=gluon-verify64 source scripts/gpu_env.sh
verify_mla 64
say "gluon MLA GPU tests"
timeout 150 python -m pytest -q -p no:cacheprovider tests/test_mla_sm90_gpu.py 2>&1 | tail -2 | tee -a "$log"
say done
