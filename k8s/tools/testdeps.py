"""What the k8s/ and Prometheus tests need beyond the package, and what to do when it is missing.

tests/ci_deps.sh installs all of it, and CI runs that script, so in CI (CI=true) a missing tool
fails the test; on a developer's machine it skips it, naming the script.
"""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType

INSTALL_HINT = "run `bash tests/ci_deps.sh` (what CI installs) to get it"


def _missing(what: str) -> None:
    import pytest

    message = f"{what} is not installed: {INSTALL_HINT}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def need_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        _missing(f"the Python module {name}")
        raise  # unreachable: _missing always raises


def need_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        _missing(f"the program {name}")
    return path
