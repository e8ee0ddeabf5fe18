#!/usr/bin/env bash
# The benchmarks of docs/benchmarks.md on 2 H200s (one call). Results: the JSON, profiles and plots in
# $OUT/results.tgz, the tables in $OUT/bench.log (gpu_env.sh).
# Exactness of the same code on GPU: scripts/ran/gpu_verify.sh and the verify lines of scripts/ran/gpu_probe.sh.
# The kernel points first (2026-12-05, second session: a minute, and the GQA target's 1 x 256K point waits on
# them), the HF peers last (their targets are met: 13.6x and 11.4x on 2026-12-05).
set -u
LOG_NAME=bench source scripts/gpu_env.sh
b() { say "helix bench $*"; timeout 200 python -m helix_core.bench.main --json "$out/bench-2gpu.json" "$@" 2>&1 \
  | quiet | tee -a "$log"; }
# the decode attention kernel alone, one GPU, against torch SDPA (kernel_points: JSON in $out/kernel-NAME-BxL.json);
# at 1 x 128K the engine's GQA pages (16 tokens) and helix bench's before 2026-12-05 (64)
kernel_points gqa-page16 60 "1x131072" --no-sweep --page-size 16
kernel_points gqa-page64 60 "1x131072" --no-sweep --page-size 64
kernel_points gqa 60 "1x32768 1x262144 1x1048576" --no-sweep
kernel_points mla 60 "1x32768" --no-sweep --mla
# llama3-8b: Helix vs TP on 2 GPUs (8 KV heads: Helix can at best tie); all-reduces: auto (symm-mem one-shot)
b --shape llama3-8b --plans helix:kvp=2,tpa=1 tp:n=2 --points 1x128k --hopb 1 --profile "$out/prof"  # + timelines
b --shape llama3-8b --plans helix:kvp=2,tpa=1 tp:n=2 --points 8x128k 1x1m --hopb 1
# mqa-8b and deepseek-mla at batch x context = 4M: TP duplicates the KV, Helix does not
# (and 6M tokens: TP's duplicated KV, 103 GB a GPU, still fits an H200; the two plans' rooflines allow 0.538
# there against 0.555 at 4M, as the weights' share shrinks)
b --shape mqa-8b --plans helix:kvp=2,tpa=1 tp:n=2 --points 4x1m 6x1m --hopb 1
b --shape deepseek-mla --layers 4 --plans helix:kvp=2,tpa=1 tp:n=2 --points 4x1m --hopb 1
# one GPU against HF transformers (static cache)
b --shape llama3-8b --plans helix:kvp=1,tpa=1 --points 1x128k --peer hf --steps 100
b --shape deepseek-mla --layers 4 --plans helix:kvp=1,tpa=1 --points 1x32k --peer hf --steps 100
say done
