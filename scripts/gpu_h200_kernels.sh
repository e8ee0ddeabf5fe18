#!/usr/bin/env bash
# For the next session that gets one H200: the one-GPU kernel targets, which the issue sets on an H200 and which
# 2026-12-05 (seventh session) measured only on an H100 (scripts/ran/gpu_mla_timeline.sh, gpu_next_1gpu_h100.sh).
# The GQA kernel against torch's SDPA at 1 x 32K and 1 x 128K in one run (tied at 32K on the H200 so far, each at
# its best over different runs); the MLA kernel with queries by TMA, now the default, against a matmul timed as
# long (1 x 128K was 64.6% on the H200 with queries through registers; 70% asked); its GPU tests and helix verify.
set -u
LOG_NAME=h200-kernels source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,power.limit --format=csv | tee -a "$log"
kernel_points gqa 60 "1x32768 1x131072" --no-sweep
kernel_points mla 80 "1x131072 4x131072 4x524288" --mla --no-sweep --page-size 64 --iters 100
say "GPU tests"
timeout 180 python -m pytest -q -p no:cacheprovider tests/test_mla_sm90_gpu.py 2>&1 | tail -3 | tee -a "$log"
verify_mla 128
say done
