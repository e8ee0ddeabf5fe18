#!/usr/bin/env bash
# One H200: the absorbed-MLA decode kernel with its values in two parts (dv_parts=2: each program a
# 64 x 256 accumulator, the scores recomputed per part) against the default, at 1 x 32K and
# 4 x 128K; the GQA kernel with the tiled merge at 32K and 128K; the kernel tests compiled on the GPU first. Results in ${OUT:-out}.
set -u
LOG_NAME=mla-parts source scripts/gpu_env.sh
say "kernel tests on the GPU"
timeout 150 python -m pytest -q -p no:cacheprovider tests/test_kernels_decode.py -x 2>&1 | tail -3 | tee -a "$log"
kernel_points mla-parts 130 "4x131072 1x32768" --mla --only /p --iters 60 --repeats 3
kernel_points gqa-tiledmerge 90 "1x32768 1x131072" --iters 100 --repeats 3
say done
