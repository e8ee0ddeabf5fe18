#!/usr/bin/env bash
# Exactness of the committed code against Hugging Face on one H200: DeepSeek-V3 widened to 128 and to 64 heads over
# a 512 + 64 latent (the Gluon MLA kernel), bf16, CUDA graphs, batch 1 and 3.
set -u
LOG_NAME=verify-1204e source scripts/gpu_env.sh
verify_mla 128
verify_mla 64
say done
