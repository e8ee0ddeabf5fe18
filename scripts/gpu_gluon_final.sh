#!/usr/bin/env bash
# The sm_90 Gluon MLA kernel in place (third session of 2026-12-04), one H200: its GPU tests and the decode
# kernel tests compiled (MLA cases now take it), then exactness against HF of DeepSeek-V3 widened to
# 128 heads (bf16, CUDA graphs, batch 1 and 3).
set -u
LOG_NAME=gluon-final source scripts/gpu_env.sh
say "gluon MLA GPU tests, decode kernel and launch tests compiled"
timeout 300 python -m pytest -q -p no:cacheprovider tests/test_mla_sm90_gpu.py tests/test_kernels_decode.py \
  tests/test_decode_launch.py 2>&1 | tail -15 | tee -a "$log"
ov='{"num_attention_heads":128,"num_key_value_heads":128,"kv_lora_rank":512,"qk_rope_head_dim":64,"qk_nope_head_dim":128,"v_head_dim":128,"q_lora_rank":256}'
for batch in 1 3; do
  say "verify deepseek_v3 128 heads, bf16, batch $batch"
  verify_rows "verify-mla128-bf16-b$batch.json" 150 --arch deepseek_v3 --dtype bfloat16 --steps 16 --batch "$batch" \
    --plan helix:kvp=1,tpa=1 --overrides "$ov"
done
say done
