# syntax=docker/dockerfile:1
# The Helix serving image: `helix coordinator` and `helix shard`, as k8s/helix runs them.
#
#   docker build -t helix-serve:0.1.0 .
#
# The base image's CUDA must match the CUDA build of torch (TORCH_CUDA): cu130 <-> CUDA 13.0.
# CUDA 13.0 needs NVIDIA driver >= 580 on the GPU nodes; the base image declares it
# (NVIDIA_REQUIRE_CUDA), so on an older driver the container refuses to start instead of
# failing at the first kernel. For such nodes build the CUDA 12.8 pair instead (driver >= 570):
#   docker build --build-arg CUDA_VERSION=12.8.1 --build-arg TORCH_CUDA=cu128 -t helix-serve:0.1.0-cu128 .
ARG CUDA_VERSION=13.0.2
FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu24.04

# Keep TORCH_VERSION equal to the torch pin of .ci/run (tests/test_k8s_image.py checks both).
ARG TORCH_VERSION=2.13.0
ARG TORCH_CUDA=cu130

# gcc and the Python headers stay in the image: Triton compiles a small C launcher for each
# kernel at run time. The venv is there because Ubuntu's Python refuses system-wide pip (PEP 668).
# Ubuntu's archive moves its package versions along; the CUDA tag pins what matters.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-dev python3-venv gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
ENV VIRTUAL_ENV=/opt/helix \
    PATH=/opt/helix/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TRITON_CACHE_DIR=/tmp/triton

# torch from the index of its CUDA build, in a layer of its own: gigabytes that rarely change.
RUN python3 -m venv "$VIRTUAL_ENV" \
    && pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "https://download.pytorch.org/whl/${TORCH_CUDA}"

# The package (the torch above already satisfies its torch requirement).
COPY . /src
RUN pip install --no-cache-dir "/src[server,triton]" \
    && rm -rf /src

# Unprivileged (Ubuntu's image already has uid 1000, "ubuntu").
RUN useradd --create-home --uid 10001 helix
USER 10001
WORKDIR /home/helix

# coordinator gRPC and metrics; shard rank j: gRPC 50061+j, metrics 9400+j; rank 0's rendezvous.
EXPOSE 50051 9300 50061 9400 29500
ENTRYPOINT ["helix"]
CMD ["--help"]
