#!/usr/bin/env bash
# The next one-GPU call, most telling first (device time has come in pieces too short for all of it). The kernel
# targets are set on an H200; 2026-12-05 (seventh session) and 2026-12-06 (eighth and ninth) measured them only on
# an H100 (scripts/ran/gpu_mla_timeline.sh, gpu_next_1gpu_h100.sh, gpu_staged_store_h100.sh, and this script at
# 21cfb72). On an H100 this call repeats those; on an H200 all of it is new since the staged store.
# 1. the MLA kernel's GPU tests (the staged store, now the default, bitwise equal to the direct one), then its
#    timeline with the direct store, the staged store, and the staged store with bf16 partials (merged with the
#    16-bit merge config), at the short points where the fixed costs weigh most (scripts/gpu_gluon_mla.py);
# 2. the error of bf16 partials against fp32 attention where the keys are split, beside bf16 rounding's own (the
#    kernel's own numbers for what scripts/partials_rounding.py modeled on the CPU, which kept partials fp32);
# 3. the GQA kernel against torch's SDPA at 1 x 32K and 1 x 128K in one run (tied at 32K on the H200 so far);
# 4. the check against fp32 attention; the MLA kernel's default against a matmul timed as long (1 x 128K was
#    64.6% on the H200 with queries through registers and the direct store; 70% asked); helix verify of the
#    128-head MLA path, with the built-in prompts and with prompts long enough to split the keys.
set -u
LOG_NAME=h200-kernels source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,power.limit --format=csv | tee -a "$log"
say "GPU tests"
timeout 180 python -m pytest -q -p no:cacheprovider tests/test_mla_sm90_gpu.py 2>&1 | tail -3 | tee -a "$log"
say "timeline"
timeout 150 python scripts/gpu_gluon_mla.py timeline 1,32768 1,131072 4,131072 2>&1 | grep -E "timeline|Error|error" \
  | tee -a "$log"
say "partials"
timeout 90 python scripts/gpu_gluon_mla.py partials 2>&1 | grep -E "partials|Error|error" | tee -a "$log"
kernel_points gqa 60 "1x32768 1x131072" --no-sweep
say "check"
timeout 90 python scripts/gpu_gluon_mla.py check 2>&1 | grep -E "ok|FAIL|check|Error" | tee -a "$log"
kernel_points mla 80 "1x131072 4x131072 4x524288" --mla --no-sweep --page-size 64 --iters 100
verify_mla 128
# the same against HF with prompts long enough to fill several of the kernel's splits (974-1000 tokens: 12 splits
# from the KV pool's 380 pages of 8, of 128 keys a split at these lengths, so 8 non-empty a sequence; the prompts
# above fill one), which the staged store writes
say "verify deepseek_v3 128 heads, bf16, batch 3, prompts of up to 1000 tokens"
verify_rows verify-mla128-bf16-long-b3.json 240 --arch deepseek_v3 --dtype bfloat16 --steps 8 --batch 3 \
  --prompt-tokens 1000 --plan helix:kvp=1,tpa=1 --overrides '{"num_attention_heads":128,"num_key_value_heads":128,
"kv_lora_rank":512,"qk_rope_head_dim":64,"qk_nope_head_dim":128,"v_head_dim":128,"q_lora_rank":256,
"max_position_embeddings":2048}'
say done
