#!/usr/bin/env bash
# The MLA split kernel with P through memory (DecodeConfig.probs_via_memory: 64-head blocks on 8 warps,
# each score computed once) against the default tiles: the interpreter-tested cases compiled on the GPU,
# then bench_decode at the one-GPU points and at one GPU's share of the 2-GPU deepseek-mla target
# (helix KVP=2: 128 heads over 4 x 512K; TP=2: 64 heads over 4 x 1M).
set -u
LOG_NAME=pmem source scripts/gpu_env.sh
say "kernel tests compiled (P through memory, MLA)"
timeout 300 python -m pytest -q -p no:cacheprovider tests/test_kernels_decode.py -k "through_memory or mla" 2>&1 \
  | tail -3 | tee -a "$log"
kernel_points pmem 200 "1x32768 4x131072 1x131072" --mla --only pmem
kernel_points pmem-helix-shard 150 "4x524288" --mla --only pmem
kernel_points pmem-tp-shard 150 "4x1048576" --mla --heads 64 --only pmem
say done
