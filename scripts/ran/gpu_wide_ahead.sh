#!/usr/bin/env bash
# One H200, not yet run: do wide heads (the 16 x 512 example's helix rank, MHA 16 heads x 512 dims, fp16)
# gain from the block table read a tile ahead, as GQA (128 dims) and the sliced kernels did? Their
# default still reads it in-tile (`_default_config`, width >= 384). WIDE_AHEAD_SWEEP against the default
# at the helix KVP=2 / 4 ranks of batch 8 x 10000 keys.
set -u
LOG_NAME=wide-ahead source scripts/gpu_env.sh
kernel_points mha512-ahead 120 "8x5000 8x2500" --heads 16 --kv-heads 16 --dim 512 --dtype fp16 --only ahead \
  --iters 100 --repeats 3
say done
