#!/usr/bin/env bash
# The Gluon MLA kernel's first key tile asked for before Q is loaded (scripts/gpu_gluon_mla.py first-tile: bitwise
# equal outputs, times), the kernel's GPU tests with it on, and helix verify of the MLA path (128 and 64 heads).
set -u
LOG_NAME=gluon-first-tile source scripts/gpu_env.sh
say "first-tile"
timeout 200 python scripts/gpu_gluon_mla.py first-tile 2>&1 | grep -E "first-tile|Error|error" | tee -a "$log"
say "GPU tests"
timeout 200 python -m pytest -q -p no:cacheprovider tests/test_mla_sm90_gpu.py tests/test_mla_sm90.py 2>&1 | tail -3 \
  | tee -a "$log"
verify_mla 128
say done
