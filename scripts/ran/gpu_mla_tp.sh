#!/usr/bin/env bash
# One H200: (1) the MLA default with 128 heads (values in two parts at every length) at short lengths and
# the kernel and sm_90 report tests with the GPU machine's Triton; (2) the attention kernel of one GPU of
# deepseek-mla at batch 4 x 1M (4M tokens) under each 2-GPU plan: helix KVP=2 (128 heads over 512K keys
# a row) and TP=2 (64 heads over 1M keys), each with its sweep. Results in ${OUT:-out}.
set -u
LOG_NAME=mla-tp source scripts/gpu_env.sh
say "kernel tests on the GPU"
timeout 150 python -m pytest -q -p no:cacheprovider tests/test_kernels_decode.py tests/test_decode_launch.py \
  tests/test_kernel_sm90.py -x 2>&1 | tail -3 | tee -a "$log"
kernel_points mla-default 40 "1x4096 1x8192 16x8192 32x4096" --mla --no-sweep --iters 100 --repeats 3
kernel_points mla-helix 120 "4x524288" --mla --only /p --iters 20 --repeats 3  # helix KVP=2 rank: 128 heads
kernel_points mla-tp 200 "4x1048576" --mla --heads 64 --iters 20 --repeats 3  # TP=2 rank: 64 heads
say done
