#!/usr/bin/env bash
# The whole test suite on one GPU machine (the next one-GPU call after gpu_h200_kernels.sh): the Triton kernels'
# tests compiled for the GPU, sampling and pipelined decode on CUDA, the sm_90 MLA kernel's GPU tests, and the rest
# as on the CPU, with the GPU machine's torch 2.11, Triton 3.6, transformers 5.17 and Python 3.12.
# Four modules at a time, each pinned to 4 cores of its own (taskset; ranks size their threads from the affinity):
# 2026-12-06 (twelfth session, scripts/ran/gpu_tests_1gpu.sh) ran 8-11 unpinned at once, and the serving tests
# timed out on the oversubscribed cores. The modules' logs come back in results.tgz (gpu_env.sh).
set -u
LOG_NAME=suite source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$log"
timeout 60 python -c "import sys, torch, triton, transformers, grpc; print('python', sys.version.split()[0], 'torch', \
torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, 'grpcio', grpc.__version__)" \
  2>&1 | tee -a "$log"
logs=$out/tests
mkdir -p "$logs"
say "pytest: 4 modules at a time, 4 cores each"
ls tests/test_*.py | xargs -P 4 --process-slot-var=SLOT -I{} sh -c 'name=$(basename {} .py); \
  taskset -c $((SLOT * 4))-$((SLOT * 4 + 3)) timeout 400 python -m pytest -q -p no:cacheprovider -rfEs --tb=short {} \
  > "$0/$name.log" 2>&1; echo "$name rc $?" >> "$0/rc.txt"' "$logs"
sort "$logs/rc.txt" | tee -a "$log"
for f in "$logs"/test_*.log; do echo "-- $(basename "$f"): $(tail -1 "$f")"; done | tee -a "$log"
grep -h -E "^(FAILED|ERROR|SKIPPED)" "$logs"/test_*.log | tee -a "$log"
say done
