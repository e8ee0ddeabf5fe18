#!/usr/bin/env bash
# Where the Gluon MLA kernel's time goes program by program (scripts/gpu_gluon_mla.py timeline: clock readings
# the kernel writes at its stages), its numbers against fp32 attention, and its GPU tests (the trace test too).
set -u
LOG_NAME=mla-timeline source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,power.limit --format=csv | tee -a "$log"
say "timeline"
timeout 300 python scripts/gpu_gluon_mla.py timeline 2>&1 | grep -E "timeline|Error|error" | tee -a "$log"
say "check"
timeout 120 python scripts/gpu_gluon_mla.py check 2>&1 | grep -E "ok|FAIL|check|Error" | tee -a "$log"
say "GPU tests"
timeout 180 python -m pytest -q -p no:cacheprovider tests/test_mla_sm90_gpu.py 2>&1 | tail -3 | tee -a "$log"
say done
