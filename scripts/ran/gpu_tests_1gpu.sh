#!/usr/bin/env bash
# The whole test suite on one GPU: the Triton kernels' tests compiled for the GPU (not interpreted, as in CI), the
# sampling and pipelined-decode tests on CUDA, the sm_90 MLA kernel's GPU tests, and the rest as on the CPU (their
# clusters on gloo). Modules run 8 at a time, each under its own timeout; each module's tail goes into $log.
set -u
LOG_NAME=tests-1gpu source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$log"
timeout 60 python -c "import torch, triton, transformers, grpc; print('torch', torch.__version__, 'triton', triton.__version__, \
'transformers', transformers.__version__, 'grpcio', grpc.__version__)" 2>&1 | tee -a "$log"
mkdir -p "$out/tests"
say "pytest, 8 modules at a time"
ls tests/test_*.py | xargs -P 8 -I{} sh -c 'name=$(basename {} .py); timeout 420 python -m pytest -q \
  -p no:cacheprovider -rfEs {} > "$0/tests/$name.log" 2>&1; echo "$name rc $?" >> "$0/tests/rc.txt"' "$out"
sort "$out/tests/rc.txt" | tee -a "$log"
for f in "$out"/tests/test_*.log; do echo "-- $(basename "$f"): $(tail -1 "$f")"; done | tee -a "$log"
grep -h -E "^(FAILED|ERROR)" "$out"/tests/test_*.log | tee -a "$log"
say done
