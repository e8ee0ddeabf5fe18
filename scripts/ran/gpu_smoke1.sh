#!/usr/bin/env bash
# One H200: the CUDA paths after a change, quickly: decode-kernel tests, a 4-layer llama3-8b bench
# row (its attention_path) and the engine's exactness against HF on one GPU.
set -u
LOG_NAME=smoke1 source scripts/gpu_env.sh
say "decode kernel tests on the GPU"
timeout 200 python -m pytest -q -p no:cacheprovider tests/test_kernels_decode.py > "$out/pytest-decode.log" 2>&1
tail -2 "$out/pytest-decode.log" | tee -a "$log"
say "bench llama3-8b 4 layers, one GPU"
timeout 200 python -m helix_core.bench.main --shape llama3-8b --layers 4 --plans helix:kvp=1,tpa=1 --points 1x32k \
  --hopb 1 --steps 100 --json "$out/bench-1gpu-smoke.json" 2>&1 | quiet | tail -8 | tee -a "$log"
say "verify llama bf16 + fp32, one GPU"
timeout 150 python -m helix_core.verify --device cuda --arch llama --dtype float32 --tolerance 1e-4 --steps 16 \
  --plan helix:kvp=1,tpa=1 --out "$out/verify-1gpu-fp32.json" 2>&1 | grep -E '^\{|Error|error' | tee -a "$log"
say done
