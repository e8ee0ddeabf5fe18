#!/usr/bin/env bash
# Ran 2026-12-06 on an H100 at f1598cc (docs/results/one-gpu-1206-h100/call1-kernels). Then the next one-GPU call, most telling first (device time has come in pieces too short for all of it). The kernel
# targets are set on an H200, and 2026-12-05 (seventh session) measured them only on an H100
# (scripts/ran/gpu_mla_timeline.sh, gpu_next_1gpu_h100.sh); the staged store is new and tells on either GPU.
# 1. the staged store bitwise equal to the direct one (GPU tests), then the MLA kernel's timeline with the outputs
#    stored from the MMA layout or through shared memory (whole sectors), in fp32 and bf16, at the short points
#    where the epilogue's share is largest (scripts/gpu_gluon_mla.py timeline);
# 2. the GQA kernel against torch's SDPA at 1 x 32K and 1 x 128K in one run (tied at 32K on the H200 so far);
# 3. the rest of the MLA GPU tests and the check against fp32 attention; the MLA kernel's default against a matmul
#    timed as long (1 x 128K was 64.6% on the H200 with queries through registers; 70% asked); helix verify of the
#    128-head MLA path.
set -u
LOG_NAME=h200-kernels source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,power.limit --format=csv | tee -a "$log"
say "GPU tests: the staged store"
timeout 120 python -m pytest -q -p no:cacheprovider tests/test_mla_sm90_gpu.py -k staged 2>&1 | tail -3 | tee -a "$log"
say "timeline"
timeout 150 python scripts/gpu_gluon_mla.py timeline 1,32768 1,131072 4,131072 2>&1 | grep -E "timeline|Error|error" \
  | tee -a "$log"
kernel_points gqa 60 "1x32768 1x131072" --no-sweep
say "GPU tests: the rest"
timeout 180 python -m pytest -q -p no:cacheprovider tests/test_mla_sm90_gpu.py -k "not staged" 2>&1 | tail -3 \
  | tee -a "$log"
say "check"
timeout 90 python scripts/gpu_gluon_mla.py check 2>&1 | grep -E "ok|FAIL|check|Error" | tee -a "$log"
kernel_points mla 80 "1x131072 4x131072 4x524288" --mla --no-sweep --page-size 64 --iters 100
verify_mla 128
say done
