#!/usr/bin/env bash
# P through memory as the default of MLA's 64-head blocks (TP-sharded MLA, >= 16K keys): compiled tests, then
# 64 heads a latent at short and long contexts against the one-part tile with P in registers (/p1), and the
# four-stage variant on the helix shard (128 heads over 4 x 512K).
set -u
LOG_NAME=pmem2 source scripts/gpu_env.sh
say "kernel tests compiled (P through memory, MLA)"
timeout 300 python -m pytest -q -p no:cacheprovider tests/test_kernels_decode.py -k "through_memory or mla" 2>&1 \
  | tail -4 | tee -a "$log"
kernel_points tp64 200 "1x8192 1x32768 4x131072 4x1048576" --mla --heads 64 --only /p1,/pmem
kernel_points helix128 150 "4x524288" --mla --only pmem
say done
