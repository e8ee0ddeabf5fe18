#!/usr/bin/env bash
# (A record: the seesaw schedule and `--schedule` were removed after these runs; commit ad08d2f holds them.)
# The MLA kernel's seesaw schedule (kernels/_gluon_mla_seesaw.py, 2026-12-06, thirteenth session) on one GPU, first
# run: its numbers against fp32 attention, then its time against the split schedule (the default), then both
# schedules through the kernel's GPU tests, then the seesaw's clock timeline. Each step under its own timeout: a
# schedule that deadlocks hangs its launch, and the next step starts a fresh process.
set -u
LOG_NAME=seesaw source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,power.limit --format=csv | tee -a "$log"
say "check, seesaw"
timeout 120 python scripts/gpu_gluon_mla.py --schedule seesaw check 2>&1 | grep -E "ok|FAIL|check|Error|error" \
  | tee -a "$log"
say "schedules"
timeout 180 python scripts/gpu_gluon_mla.py schedules 2>&1 | grep -E "schedule|Error|error" | tee -a "$log"
say "GPU tests, both schedules"
timeout 180 python -m pytest -q -p no:cacheprovider -x tests/test_mla_sm90_gpu.py 2>&1 | tail -15 | tee -a "$log"
say "timeline, seesaw"
timeout 90 python scripts/gpu_gluon_mla.py --schedule seesaw timeline 1,131072 4,131072 2>&1 \
  | grep -E "timeline|Error|error" | tee -a "$log"
say done
