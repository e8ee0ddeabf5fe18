#!/usr/bin/env bash
# One H200, the session's final code: the decode kernel's tests compiled (the wide-head default), exactness
# against HF with CUDA graphs at batch 1 (llama: the fused projections; DeepSeek-V3 with 128 heads: its FFN
# back on its own kernels), and the one-GPU llama3-8b step.
set -u
LOG_NAME=final source scripts/gpu_env.sh
say "decode kernel tests (compiled)"
timeout 200 python -m pytest -q -p no:cacheprovider tests/test_kernels_decode.py tests/test_decode_launch.py 2>&1 \
  | tail -1 | tee -a "$log"
say "verify llama bf16 batch 1"
verify_rows verify-llama-bf16-b1.json 120 --arch llama --dtype bfloat16 --steps 16 --batch 1 --plan helix:kvp=1,tpa=1
ov='{"num_attention_heads":128,"num_key_value_heads":128,"kv_lora_rank":512,"qk_rope_head_dim":64,"qk_nope_head_dim":128,"v_head_dim":128,"q_lora_rank":256}'
say "verify deepseek_v3 128 heads, bf16, batch 1"
verify_rows verify-mla128-bf16-b1.json 150 --arch deepseek_v3 --dtype bfloat16 --steps 16 --batch 1 --plan helix:kvp=1,tpa=1 --overrides "$ov"
say "helix bench llama3-8b one GPU"
bench_rows bench-llama-1gpu-final.json 150 --shape llama3-8b --plans helix:kvp=1,tpa=1 --points 1x128k 1x32k \
  --hopb 1 --steps 100
say done
