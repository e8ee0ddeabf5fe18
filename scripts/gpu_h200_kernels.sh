#!/usr/bin/env bash
# The next one-GPU call, most telling first (device time has come in pieces too short for all of it). The kernel
# targets are set on an H200; the last H200 runs were 2026-12-06 (thirteenth session: the kernel targets only).
# 1. the kernel targets: the MLA kernel's default against a matmul timed as long (1 x 128K: 68.4% on the H200 in
#    the thirteenth session; 70% asked), the GQA kernel against torch's SDPA at 1 x 32K and 1 x 128K in one run
#    (ahead at 32K in every same-run comparison, 0.5% behind SDPA's best run);
# 2. `gpu_gluon_mla.py bound` on the H200: the MLA kernel's key loads from HBM and from L2 (on two H100s, 2026-12-06,
#    fourteenth session, they cost 8-12% at 1 x 128K from HBM and 1-3% from L2), beside L2's rate into the SMs;
# 3. the MLA kernel's GPU tests (the staged store, bitwise equal to the direct one; even splits, the default since the
#    fifteenth session) and its check against fp32 attention;
# 4. its timeline with the direct store, the staged store, the staged store with bf16 partials and with even splits,
#    at the short points where the fixed costs weigh most;
# 5. helix verify of the 128-head MLA path, with the built-in prompts and with prompts long enough to split the keys.
# (The error of bf16 partials, `gpu_gluon_mla.py partials`, settled on an H100 in the eleventh session, is left out.)
set -u
LOG_NAME=h200-kernels source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,power.limit --format=csv | tee -a "$log"
kernel_points mla 80 "1x131072 4x131072 4x524288" --mla --no-sweep --page-size 64 --iters 100
kernel_points gqa 60 "1x32768 1x131072" --no-sweep
say "bound"
timeout 90 python scripts/gpu_gluon_mla.py bound 2>&1 | grep -E "bound|Error|error" | tee -a "$log"
say "GPU tests"
timeout 300 python -m pytest -q -p no:cacheprovider tests/test_mla_sm90_gpu.py 2>&1 | tail -3 | tee -a "$log"
say "check"
timeout 90 python scripts/gpu_gluon_mla.py check 2>&1 | grep -E "ok|FAIL|check|Error" | tee -a "$log"
say "timeline"
timeout 150 python scripts/gpu_gluon_mla.py timeline 1,32768 1,131072 4,131072 2>&1 | grep -E "timeline|Error|error" \
  | tee -a "$log"
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
