#!/usr/bin/env bash
# One H200: exactness against HF transformers of a random DeepSeek-V3 with 128 heads over a 512 + 64
# latent (the shape that takes the two-part MLA tiles), bf16, batch 3 and 1, helix KVP=1 with CUDA graphs.
set -u
LOG_NAME=verify-mla128 source scripts/gpu_env.sh
ov='{"num_attention_heads":128,"num_key_value_heads":128,"kv_lora_rank":512,"qk_rope_head_dim":64,"qk_nope_head_dim":128,"v_head_dim":128,"q_lora_rank":256}'
for batch in 3 1; do
  say "helix verify deepseek_v3 128 heads, bf16, batch $batch"
  timeout 150 python -m helix_core.verify --arch deepseek_v3 --device cuda --dtype bfloat16 --steps 16 --batch $batch \
    --plan helix:kvp=1,tpa=1 --overrides "$ov" --out "$out/verify-mla128-bf16-b$batch.json" 2>&1 \
    | grep -E '^\{|Error|error' | tee -a "$log"
done
say done
