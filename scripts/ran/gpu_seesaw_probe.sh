#!/usr/bin/env bash
# (A record: the seesaw schedule and `--schedule` were removed after these runs; commit ad08d2f holds them.)
# What bounds the MLA kernel's two schedules (second seesaw call, 2026-12-06, thirteenth session): the first call
# (scripts/ran/gpu_seesaw.sh) found the seesaw correct but slower, its tile loop no faster than the split
# schedule's. Each schedule with its key loads after the first two tiles switched off, its warpgroup-1 value MMAs
# off, and both (scripts/gpu_gluon_mla.py probe), at 4 x 512K with 128 heads (two head blocks that
# share every key tile through L2) and at 4 x 512K with 64 heads (one block: no sharing).
set -u
LOG_NAME=seesaw-probe source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,power.limit --format=csv | tee -a "$log"
for point in "128 4 524288" "64 4 524288"; do
  for schedule in split seesaw; do
    say "probe $schedule $point"
    timeout 40 python scripts/gpu_gluon_mla.py --schedule $schedule probe $point 2>&1 | grep -E "probe|Error|error" \
      | tee -a "$log"
  done
done
say done
