#!/usr/bin/env bash
# One H200: the split merge as a programmatic dependent launch (PDL, the default on sm_90) against the
# merge launched after the split kernel ends (`default/no-pdl`): the decode-kernel tests on the GPU, GQA
# batch 1 at 32K and 128K keys (full launch sweeps), 8 x 64K, and MLA 128 heads at 1 x 32K and 4 x 128K.
set -u
LOG_NAME=pdl source scripts/gpu_env.sh
say "kernel tests on the GPU"
timeout 100 python -m pytest -q -p no:cacheprovider tests/test_kernels_decode.py tests/test_decode_launch.py -x 2>&1 \
  | tail -3 | tee -a "$log"
kernel_points gqa-pdl 130 "1x32768 1x131072" --iters 200 --repeats 5
kernel_points gqa-pdl 60 "8x65536" --only no-pdl --iters 100 --repeats 3
kernel_points mla-pdl 60 "1x32768 4x131072" --mla --only no-pdl --iters 60 --repeats 3
say done
