#!/usr/bin/env bash
# One H200: DeepSeek-V3 widened to 64 heads (a TP=2 shard's head count: the engine keeps one graph per batch
# bucket now that the sm_90 Gluon kernel's launch does not change with the length), exactness against HF
# with CUDA graphs, bf16, batch 1 and 3; and the Gluon kernel's GPU tests.
set -u
LOG_NAME=gluon-verify64 source scripts/gpu_env.sh
ov='{"num_attention_heads":64,"num_key_value_heads":64,"kv_lora_rank":512,"qk_rope_head_dim":64,"qk_nope_head_dim":128,"v_head_dim":128,"q_lora_rank":256}'
for batch in 1 3; do
  say "verify deepseek_v3 64 heads, bf16, batch $batch"
  verify_rows "verify-mla64-bf16-b$batch.json" 150 --arch deepseek_v3 --dtype bfloat16 --steps 16 --batch "$batch" \
    --plan helix:kvp=1,tpa=1 --overrides "$ov"
done
say "gluon MLA GPU tests"
timeout 150 python -m pytest -q -p no:cacheprovider tests/test_mla_sm90_gpu.py 2>&1 | tail -2 | tee -a "$log"
say done
