#!/usr/bin/env bash
# One H200: is the block-table load in each tile what keeps the GQA kernel behind SDPA? The variant that
# reads the next tile's pages one iteration ahead (`default/pages-ahead`) against the default at 1 x 32K
# and 1 x 128K; then the default with one page per sequence (token-major and head-major: the latter is
# SDPA's contiguous layout) at 128K.
set -u
LOG_NAME=pages-ahead source scripts/gpu_env.sh
kernel_points gqa-ahead 60 "1x32768 1x131072 8x65536" --only pages-ahead --iters 200 --repeats 5
kernel_points gqa-onepage 60 "1x131072" --page-size 131072 --no-sweep --iters 200 --repeats 5
kernel_points gqa-onepage-hm 60 "1x131072" --page-size 131072 --head-major --no-sweep --iters 200 --repeats 5
say done
