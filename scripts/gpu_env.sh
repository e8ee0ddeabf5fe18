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
