#!/usr/bin/env bash
# One H200: the GQA kernel with the block table read a tile ahead (`pages_ahead=1`, which lets Triton
# multi-buffer the K/V tiles: sm_90 shared memory 104 KB at 64 keys x 4 stages against 39 KB without)
# against the default, over stages, tiles and split counts, at 1 x 32K, 1 x 128K, 8 x 64K and 1 x 512K.
set -u
LOG_NAME=pages-ahead source scripts/gpu_env.sh
kernel_points gqa-ahead 100 "1x32768 1x131072 8x65536 1x524288" --only ahead --iters 200 --repeats 5
say done
