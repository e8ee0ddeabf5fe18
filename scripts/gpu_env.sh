# Sourced by the scripts/gpu_*.sh run scripts (in the repository root, on the GPU machine):
# carried grpcio wheels (.whl, for serving checks), NVLink multicast off, ${OUT:-out} for the
# results, and the log helpers: `say` (timestamped line into $log) and `quiet` (drops noise).
[ -d .whl ] && pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 HELIX_COLLECTIVE_TIMEOUT_S=60
out=${OUT:-out}; mkdir -p "$out"
log="$out/${LOG_NAME:-run}.log"
quiet() { grep -v -E "frame #|TCPStore|^\s*$|RoPE scaling factor|W[0-9]+ .*ProcessGroupNCCL|Exception raised from|resource_tracker|warnings.warn"; }
say() { echo "== $(date +%T) $*" | tee -a "$log"; }
# kernel_points NAME SECONDS "BxL ..." ARGS...: bench_decode at each batch x keys point with ARGS, its
# table rows into $log, JSON to $out/kernel-NAME-BxL.json
kernel_points() {
  local name=$1 limit=$2 points=$3 point
  shift 3
  for point in $points; do
    say "bench_decode $name $point $*"
    timeout "$limit" python -m helix_core.kernels.bench_decode --batch "${point%x*}" --context "${point#*x}" \
      --no-baseline "$@" --json "$out/kernel-$name-$point.json" 2>&1 \
      | grep -E "^===|  (default|bn|best|torch)" | sed -E 's/\| check ok.*//' | tee -a "$log"
  done
}
# bench_rows JSON SECONDS ARGS...: one `helix bench` call, its table rows (and errors) into $log, JSON to $out/JSON
bench_rows() {
  local json=$1 limit=$2
  shift 2
  timeout "$limit" python -m helix_core.bench.main "$@" --json "$out/$json" 2>&1 | quiet \
    | grep -E "^\| helix|Error|error" | tee -a "$log"
}
# verify_rows JSON SECONDS ARGS...: one `helix verify --device cuda` call, its JSON lines (and errors) into $log
verify_rows() {
  local json=$1 limit=$2
  shift 2
  timeout "$limit" python -m helix_core.verify --device cuda "$@" --out "$out/$json" 2>&1 \
    | grep -E '^\{|Error|error' | tee -a "$log"
}
