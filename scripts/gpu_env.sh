# Sourced by the scripts/gpu_*.sh run scripts (in the repository root, on the GPU machine):
# carried grpcio wheels (.whl, for serving checks), NVLink multicast off, $out for the result files,
# and the log helpers: `say` (timestamped line into $log) and `quiet` (drops noise).
# A call brings back at most 8 files from $OUT, two folders down at most, and a bench --profile alone writes
# dozens: so the result files go under $out, outside $OUT, and every `say` packs them into $OUT/results.tgz
# (a script killed mid-way still returns what its finished steps wrote). $OUT holds that and the log.
[ -d .whl ] && pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 HELIX_COLLECTIVE_TIMEOUT_S=60
back=${OUT:-out}; mkdir -p "$back"
out=${HELIX_RESULTS:-/tmp/helix-results}; mkdir -p "$out"
log="$back/${LOG_NAME:-run}.log"
pack() { tar czf "$back/results.tgz.part" -C "$out" . 2>/dev/null && mv "$back/results.tgz.part" "$back/results.tgz"; }
quiet() { grep -v -E "frame #|TCPStore|^\s*$|RoPE scaling factor|W[0-9]+ .*ProcessGroupNCCL|Exception raised from|resource_tracker|warnings.warn"; }
say() { pack; echo "== $(date +%T) $*" | tee -a "$log"; }
# how the helpers below start a module: python "${PY_MODULE[@]}" MODULE ARGS (a script may set it to (-c CODE),
# CODE running sys.argv[1] as __main__ after changing a default, and back to (-m))
PY_MODULE=(-m)
# kernel_points NAME SECONDS "BxL ..." ARGS...: bench_decode at each batch x keys point with ARGS, its
# table rows into $log, JSON to $out/kernel-NAME-BxL.json
kernel_points() {
  local name=$1 limit=$2 points=$3 point
  shift 3
  for point in $points; do
    say "bench_decode $name $point $*"
    timeout "$limit" python "${PY_MODULE[@]}" helix_core.kernels.bench_decode --batch "${point%x*}" --context "${point#*x}" \
      --no-baseline "$@" --json "$out/kernel-$name-$point.json" 2>&1 \
      | grep -E "^===|  (default|triton|gluon|bn|best|torch|matrix)" | sed -E 's/\| check ok.*//' | tee -a "$log"
  done
}
# bench_rows JSON SECONDS ARGS...: one `helix bench` call, its table rows (and errors) into $log, JSON to $out/JSON
bench_rows() {
  local json=$1 limit=$2
  shift 2
  timeout "$limit" python "${PY_MODULE[@]}" helix_core.bench.main "$@" --json "$out/$json" 2>&1 | quiet \
    | grep -E "^\| (helix|tp|headslice)|Error|error" | tee -a "$log"
}
# verify_rows JSON SECONDS ARGS...: one `helix verify --device cuda` call, its JSON lines (and errors) into $log
verify_rows() {
  local json=$1 limit=$2
  shift 2
  timeout "$limit" python "${PY_MODULE[@]}" helix_core.verify --device cuda "$@" --out "$out/$json" 2>&1 \
    | grep -E '^\{|Error|error' | tee -a "$log"
}
# verify_one_gpu: exactness of the one-GPU fast path against HF with CUDA graphs: llama bf16 at batch 1 and 3,
# a tiny DeepSeek-V3 widened to 128 heads over a 512 + 64 latent at batch 1 (JSON to $out/verify-*.json)
verify_one_gpu() {
  local batch ov='{"num_attention_heads":128,"num_key_value_heads":128,"kv_lora_rank":512,"qk_rope_head_dim":64,"qk_nope_head_dim":128,"v_head_dim":128,"q_lora_rank":256}'
  for batch in 1 3; do
    say "verify llama bf16 batch $batch"
    verify_rows "verify-llama-bf16-b$batch.json" 120 --arch llama --dtype bfloat16 --steps 16 --batch "$batch" \
      --plan helix:kvp=1,tpa=1
  done
  say "verify deepseek_v3 128 heads, bf16, batch 1"
  verify_rows verify-mla128-bf16-b1.json 150 --arch deepseek_v3 --dtype bfloat16 --steps 16 --batch 1 \
    --plan helix:kvp=1,tpa=1 --overrides "$ov"
}
# profile_one_gpu "LLAMA POINTS": the one-GPU llama3-8b points (e.g. "1x8k 1x128k") and deepseek-mla (4 layers,
# 1 x 32K) with their per-kernel profiles and timelines in $out/prof, the timelines' heads into $log
profile_one_gpu() {
  mkdir -p "$out/prof"
  bench_rows bench-llama-1gpu.json 240 --shape llama3-8b --plans helix:kvp=1,tpa=1 --points $1 \
    --hopb 1 --steps 100 --profile "$out/prof"
  bench_rows bench-mla-1gpu.json 150 --shape deepseek-mla --layers 4 --plans helix:kvp=1,tpa=1 --points 1x32k \
    --hopb 1 --steps 100 --profile "$out/prof"
  local f
  for f in "$out"/prof/timeline-*; do head -12 "$f" | cut -c1-140 | tee -a "$log"; done
}
# verify_mla HEADS: exactness against HF of DeepSeek-V3 widened to HEADS heads over a 512 + 64 latent, bf16, CUDA
# graphs, batch 1 and 3 (JSON to $out/verify-mlaHEADS-bf16-bB.json)
verify_mla() {
  local batch ov="{\"num_attention_heads\":$1,\"num_key_value_heads\":$1,\"kv_lora_rank\":512,\"qk_rope_head_dim\":64,\"qk_nope_head_dim\":128,\"v_head_dim\":128,\"q_lora_rank\":256}"
  for batch in 1 3; do
    say "verify deepseek_v3 $1 heads, bf16, batch $batch"
    verify_rows "verify-mla$1-bf16-b$batch.json" 150 --arch deepseek_v3 --dtype bfloat16 --steps 16 --batch "$batch" \
      --plan helix:kvp=1,tpa=1 --overrides "$ov"
  done
}
