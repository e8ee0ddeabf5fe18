#!/usr/bin/env bash
# One GPU (an H100 or H200): the MLA split kernel's own merge (mla_sm90.launch's fused_merge, a grid barrier per
# sequence and head block instead of the merge kernel), new on 2026-12-06 (tenth session), off by default until
# this runs. Most telling first:
# 1. its GPU tests (against fp32 attention and the merge kernel; twice in a row; cooperative or not; in a CUDA
#    graph; the fallback where the grid is more than one wave), then the kernel's other GPU tests;
# 2. its time against the merge kernel's at 1 x 32K, 1 x 128K, 4 x 128K and 4 x 512K, three interleaved rounds;
# 3. bench_decode --mla at 1 x 128K with it on (against a matmul timed as long), and the same with it off;
# 4. helix verify of the 128-head MLA path with it on, prompts long enough to split the keys;
# 5. the kernel's other GPU tests (with it off: the kernel as before).
set -u
LOG_NAME=fused-merge source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,power.limit --format=csv | tee -a "$log"
# PY_MODULE (gpu_env.sh) to run a module with mla_sm90.FUSED_MERGE on
fused_on=(-c "import runpy, sys; from helix_core.kernels import mla_sm90; mla_sm90.FUSED_MERGE = True
sys.argv = sys.argv[1:]; runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)")
say "fused-merge GPU tests"
timeout 180 python -m pytest -q -p no:cacheprovider tests/test_mla_sm90_gpu.py -k fused 2>&1 | tail -15 | tee -a "$log"
say "fused vs merge kernel"
timeout 150 python scripts/gpu_gluon_mla.py fused 2>&1 | grep -E "^fused|Error|error" | tee -a "$log"
PY_MODULE=("${fused_on[@]}")
kernel_points mla-fused-on 60 "1x131072" --mla --no-sweep --page-size 64 --iters 100
PY_MODULE=(-m)
kernel_points mla-fused-off 60 "1x131072" --mla --no-sweep --page-size 64 --iters 100
say "verify deepseek_v3 128 heads, bf16, batch 3, prompts of up to 1000 tokens, fused merge on"
PY_MODULE=("${fused_on[@]}")
verify_rows verify-mla128-bf16-long-b3-fused.json 140 --arch deepseek_v3 --dtype bfloat16 --steps 8 --batch 3 \
  --prompt-tokens 1000 --plan helix:kvp=1,tpa=1 --overrides '{"num_attention_heads":128,"num_key_value_heads":128,
"kv_lora_rank":512,"qk_rope_head_dim":64,"qk_nope_head_dim":128,"v_head_dim":128,"q_lora_rank":256,
"max_position_embeddings":2048}'
PY_MODULE=(-m)
say "the kernel's other GPU tests"
timeout 120 python -m pytest -q -p no:cacheprovider tests/test_mla_sm90_gpu.py -k "not fused" 2>&1 | tail -3 \
  | tee -a "$log"
say done
