#!/usr/bin/env bash
# One H200, last call of 2026-12-04: the greedy pick compiled (torch.compile) on top of gpu_overheads_bench2.sh's
# code: exactness at batch 1 (llama, DeepSeek-V3 with 128 heads), then the one-GPU steps.
set -u
LOG_NAME=final source scripts/gpu_env.sh
say "verify llama bf16 batch 1"
verify_rows verify-llama-bf16-b1.json 90 --arch llama --dtype bfloat16 --steps 16 --batch 1 --plan helix:kvp=1,tpa=1
bench_rows bench-llama-1gpu.json 120 --shape llama3-8b --plans helix:kvp=1,tpa=1 --points 1x8k 1x128k --hopb 1 --steps 100
bench_rows bench-mla-1gpu.json 90 --shape deepseek-mla --layers 4 --plans helix:kvp=1,tpa=1 --points 1x32k --hopb 1 --steps 100
say done
