#!/usr/bin/env bash
# One H200: below LONG_MLA_KEYS (16K local keys) the MLA default is still 16-head blocks, four programs
# a SM; against it the long-context tile (128 heads, values in two parts, 8 warps, one or two waves) at
# 1 x 4K, 1 x 8K, 16 x 8K and 4 x 16K keys. Results in ${OUT:-out}.
set -u
LOG_NAME=mla-short source scripts/gpu_env.sh
kernel_points mla-short 60 "1x4096 1x8192 16x8192 4x16384 32x4096" --mla --only bn32/bh128/w8/s2 --iters 100 \
  --repeats 3
say done
