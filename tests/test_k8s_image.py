"""The serving image (Dockerfile, .dockerignore). It cannot be built here (no registry but PyPI,
Debian and npm is reachable), so it is linted (hadolint), parsed with Docker's own parser, and
checked against what it must stay in step with: the torch pin of CI, the CUDA of that torch build,
the package's extras and entry point, the chart's ports and version.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "k8s" / "tools"))
from testdeps import need_binary, need_module

DOCKERFILE = REPO / "Dockerfile"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
CHART = REPO / "k8s" / "helix"


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, tuple[str, ...]]]:
    dockerfile = need_module("dockerfile")
    return [(command.cmd.upper(), command.value) for command in dockerfile.parse_file(str(DOCKERFILE))]


def args_of(instructions) -> dict[str, str]:
    return dict(value[0].split("=", 1) for cmd, value in instructions if cmd == "ARG" and "=" in value[0])


def runs(instructions) -> str:
    return "\n".join(value[0] for cmd, value in instructions if cmd == "RUN")


def test_hadolint_is_clean():
    hadolint = need_binary("hadolint")
    done = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_cuda_base_matches_the_torch_build(instructions):
    args = args_of(instructions)
    (base,) = [value[0] for cmd, value in instructions if cmd == "FROM"]
    assert re.fullmatch(r"nvidia/cuda:\$\{CUDA_VERSION\}-runtime-ubuntu[0-9.]+", base), base
    major, minor = args["CUDA_VERSION"].split(".")[:2]
    assert args["TORCH_CUDA"] == f"cu{major}{minor}", "the base image's CUDA must be the torch build's"
    assert '--index-url "https://download.pytorch.org/whl/${TORCH_CUDA}"' in runs(instructions)
    if args["TORCH_CUDA"] == "cu130":
        assert re.search(r"driver >= 580", DOCKERFILE.read_text()), "say that CUDA 13.0 needs driver >= 580"


def test_torch_version_is_the_one_ci_tests():
    pin = re.search(r"torch==([0-9][0-9.a-z+]*)", (REPO / ".ci" / "run").read_text())
    if pin is None:
        pytest.skip(".ci/run pins no torch version")
    assert re.search(rf"^ARG TORCH_VERSION={re.escape(pin.group(1))}$", DOCKERFILE.read_text(), re.MULTILINE)


def test_triton_can_compile_at_run_time(instructions):
    """Triton builds a C launcher per kernel when it first runs: gcc and Python.h must be there."""
    apt = [line for line in runs(instructions).split("&&") if "apt-get install" in line]
    packages = set(" ".join(apt).split())
    assert {"gcc", "python3-dev"} <= packages


def test_the_package_is_installed_with_its_serving_extras(instructions):
    install = re.search(r'pip install --no-cache-dir "/src\[([a-z,]+)\]"', runs(instructions))
    assert install, "the package is pip-installed from the copied source"
    assert set(install.group(1).split(",")) <= set(PYPROJECT["project"]["optional-dependencies"])
    (entrypoint,) = [value for cmd, value in instructions if cmd == "ENTRYPOINT"]
    assert entrypoint == ("helix",) and "helix" in PYPROJECT["project"]["scripts"]
    assert any(cmd == "USER" and value[0] not in ("root", "0") for cmd, value in instructions)


def test_exposed_ports_are_the_charts_defaults(instructions):
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    exposed = {int(port) for cmd, value in instructions if cmd == "EXPOSE" for port in value}
    chart = {
        values["coordinator"]["port"],
        values["coordinator"]["metricsPort"],
        *values["shards"]["ports"].values(),
    }
    assert exposed == chart


def test_chart_app_version_is_the_package_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == PYPROJECT["project"]["version"]


def test_dockerignore_keeps_the_build_inputs_and_drops_the_rest():
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:  # Docker's rules, as far as these plain patterns go
        return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.removeprefix("**/")) for p in patterns)

    needed = ["pyproject.toml", "README.md", *PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]]
    for path in needed:
        assert not ignored(path.rstrip("*")), f".dockerignore drops {path}, which the build needs"
    for path in (".git", "tests", "k8s", "__pycache__", ".pytest_cache"):
        assert ignored(path), f".dockerignore should leave {path} out of the build context"
