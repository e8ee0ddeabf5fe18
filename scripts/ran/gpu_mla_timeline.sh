#!/usr/bin/env bash
# Where the Gluon MLA kernel's time goes program by program (scripts/gpu_gluon_mla.py timeline: clock readings
# the kernel writes at its stages) with its queries through registers, by TMA, and with bf16 partials; its numbers
# against fp32 attention, and its GPU tests (the trace and query-TMA tests too); then the kernel's default
# (queries by TMA where the heads allow) in bench_decode against a matmul timed as long, and helix verify of the
# 128-head MLA path against HF.
set -u
LOG_NAME=mla-timeline source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,power.limit --format=csv | tee -a "$log"
say "GPU tests"
timeout 180 python -m pytest -q -p no:cacheprovider tests/test_mla_sm90_gpu.py 2>&1 | tail -3 | tee -a "$log"
say "check"
timeout 120 python scripts/gpu_gluon_mla.py check 2>&1 | grep -E "ok|FAIL|check|Error" | tee -a "$log"
say "timeline"
timeout 300 python scripts/gpu_gluon_mla.py timeline 2>&1 | grep -E "timeline|Error|error" | tee -a "$log"
kernel_points mla 150 "1x131072 4x131072 4x524288" --mla --no-sweep --page-size 64 --iters 100
verify_mla 128
say done
