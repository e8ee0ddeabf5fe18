#!/usr/bin/env bash
# One H200, after gpu_pages_ahead.sh: the new GQA default (block table read a tile ahead, three stages,
# two programs a SM) on the GPU: kernel tests; the default against the old in-tile block-table load
# (`default/ahead0`) at 1 x 32K, 1 x 128K, 8 x 64K, 1 x 1M; MQA (32 heads on 1 KV head) 4 x 512K with the
# pages-ahead sweep; the llama3-8b step at 1 x 128K and the mqa-8b step at 4 x 512K on one GPU; helix
# verify llama bf16 with CUDA graphs.
set -u
LOG_NAME=ahead-default source scripts/gpu_env.sh
say "kernel tests on the GPU"
timeout 100 python -m pytest -q -p no:cacheprovider tests/test_kernels_decode.py tests/test_decode_launch.py -x 2>&1 \
  | tail -3 | tee -a "$log"
kernel_points gqa-default 60 "1x32768 1x131072 8x65536 1x1048576" --only default/ --iters 200 --repeats 5
kernel_points mqa-ahead 90 "4x524288" --kv-heads 1 --only ahead --iters 100 --repeats 3
say "helix bench llama3-8b 1 x 128K, one GPU"
timeout 120 python -m helix_core.bench.main --shape llama3-8b --plans helix:kvp=1,tpa=1 --points 1x128k --hopb 1 \
  --steps 100 --json "$out/bench-llama-1gpu-128k.json" 2>&1 | quiet | grep -E "^\||shape|roofline|check" | tee -a "$log"
say "helix bench mqa-8b 4 x 512K, one GPU"
timeout 150 python -m helix_core.bench.main --shape mqa-8b --plans helix:kvp=1,tpa=1 --points 4x512k --hopb 1 \
  --steps 100 --json "$out/bench-mqa-1gpu.json" 2>&1 | quiet | grep -E "^\||shape|roofline|check" | tee -a "$log"
say "verify llama bf16 batch 3, one GPU, CUDA graphs"
timeout 100 python -m helix_core.verify --device cuda --arch llama --dtype bfloat16 --steps 16 --batch 3 \
  --plan helix:kvp=1,tpa=1 --out "$out/verify-llama-bf16.json" 2>&1 | grep -E '^\{|Error|error' | tee -a "$log"
say done
