#!/usr/bin/env bash
# Where the Gluon MLA kernel's short launches spend their time (scripts/gpu_gluon_mla.py split-cost), then the
# kernel's GPU tests with the decode kernel and launch tests, on the committed code.
set -u
LOG_NAME=gluon-split-cost source scripts/gpu_env.sh
say "split-cost"
timeout 240 python scripts/gpu_gluon_mla.py split-cost 2>&1 | grep -E "split-cost|Error|error" | tee -a "$log"
say "GPU tests"
timeout 240 python -m pytest -q -p no:cacheprovider tests/test_mla_sm90_gpu.py tests/test_kernels_decode.py \
  tests/test_decode_launch.py tests/test_mla_sm90.py 2>&1 | tail -3 | tee -a "$log"
say done
