#!/usr/bin/env bash
# One H200, after gpu_pdl.sh: the engine steps with the PDL split merge (llama3-8b 1 x 128K, deepseek-mla
# 4 layers 1 x 32K, both on one GPU, attention verified), then exactness against HF with CUDA graphs
# (llama bf16 batch 3; DeepSeek-V3 with 128 heads, bf16, batch 3).
set -u
LOG_NAME=pdl-step source scripts/gpu_env.sh
say "helix bench llama3-8b 1 x 128K, one GPU"
timeout 150 python -m helix_core.bench.main --shape llama3-8b --plans helix:kvp=1,tpa=1 --points 1x128k --hopb 1 \
  --steps 100 --json "$out/bench-llama-1gpu-128k.json" 2>&1 | quiet | grep -E "^\||shape|roofline|check" | tee -a "$log"
say "helix bench deepseek-mla, 4 layers, one GPU"
timeout 150 python -m helix_core.bench.main --shape deepseek-mla --layers 4 --plans helix:kvp=1,tpa=1 \
  --points 1x32k --hopb 1 --steps 100 --json "$out/bench-mla-1gpu.json" 2>&1 | quiet \
  | grep -E "^\||shape|roofline|check" | tee -a "$log"
say "verify llama bf16 batch 3, one GPU, CUDA graphs"
verify_rows verify-llama-bf16.json 120 --arch llama --dtype bfloat16 --steps 16 --batch 3 --plan helix:kvp=1,tpa=1
ov='{"num_attention_heads":128,"num_key_value_heads":128,"kv_lora_rank":512,"qk_rope_head_dim":64,"qk_nope_head_dim":128,"v_head_dim":128,"q_lora_rank":256}'
say "verify deepseek_v3 128 heads, bf16, batch 3"
verify_rows verify-mla128-bf16.json 150 --arch deepseek_v3 --dtype bfloat16 --steps 16 --batch 3 --plan helix:kvp=1,tpa=1 --overrides "$ov"
say done
