"""Running Triton kernels in tests: compiled on a GPU, else by Triton's CPU interpreter.

TRITON_INTERPRET=1 must be set when triton is first imported (Triton decorates its own tl.*
helpers, e.g. tl.cdiv/tl.max, at import), so `import_triton()` imports it under the variable at
collection time and restores the variable right away; a module fixture sets it again only
while a module's tests run (other tests and their subprocesses never see it). If another module
imported triton earlier without it, `needs_fresh_process()` is true: the module's kernel tests
skip and its `test_rerun_in_fresh_interpreter` runs the file again in a new process.

A kernel test module starts with
    (DEVICE, NEEDS_FRESH_PROCESS, _interpreter_while_these_tests_run, _needs_interpreter,
     test_rerun_in_fresh_interpreter) = kernel_test_module(__file__, "what these tests cover")
and imports helix_core's kernel modules after it.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

ON_GPU = torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") in ("", "0")
DEVICE = torch.device("cuda" if ON_GPU else "cpu")
_PREVIOUS_INTERPRET = os.environ.get("TRITON_INTERPRET")


def restore_interpret_variable() -> None:
    if _PREVIOUS_INTERPRET is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = _PREVIOUS_INTERPRET


def import_triton() -> None:
    if ON_GPU:
        return
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        import triton.language  # noqa: F401  (first import decides how tl.* helpers run)
    except Exception:  # not installed: triton_available() says so
        pass
    finally:
        restore_interpret_variable()


def triton_stdlib_interpreted() -> bool:
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction
    return isinstance(tl.cdiv, InterpretedFunction)


def needs_fresh_process() -> bool:
    return not ON_GPU and not triton_stdlib_interpreted()


def skip_unless_interpreter_runs_loaded_loop_bounds(needs_fresh: bool) -> None:
    """Skip the calling module off the GPU where Triton's interpreter cannot run loops bounded by a
    loaded scalar, as the decode kernels' are: Triton <= 3.6 calls int() on 1-element arrays, which
    numpy >= 2.3 refuses. Probed once here (a module that needs a fresh process probes there)."""
    if ON_GPU or needs_fresh or _interpreter_handles_loaded_loop_bounds():
        return
    pytest.skip(_cannot_interpret() + " or a GPU", allow_module_level=True)


def _cannot_interpret() -> str:
    import numpy
    import triton
    return (f"the CPU interpreter of triton {triton.__version__} cannot run loops bounded by loaded scalars "
            f"with numpy {numpy.__version__}; use triton >= 3.7 (CI installs the latest)")


def interpret_in_spawned_ranks(monkeypatch=None) -> None:
    """For a test whose rank processes (or `helix bench` subprocess) run the kernels under the interpreter, GPU or
    not: skips where Triton is missing or its interpreter cannot run them (as on a GPU machine with Triton 3.6), and
    sets TRITON_INTERPRET=1 for the processes it starts (through `monkeypatch`, if given)."""
    pytest.importorskip("triton")
    if not _interpreter_handles_loaded_loop_bounds():
        pytest.skip(_cannot_interpret())
    if monkeypatch is not None:
        monkeypatch.setenv("TRITON_INTERPRET", "1")


_LOOP_BOUNDS_OK: bool | None = None


def _interpreter_handles_loaded_loop_bounds() -> bool:
    global _LOOP_BOUNDS_OK
    if _LOOP_BOUNDS_OK is None:
        os.environ["TRITON_INTERPRET"] = "1"  # read when @triton.jit decorates the probe
        try:
            import triton
            import triton.language as tl

            @triton.jit
            def probe(x_ptr, y_ptr):
                acc = 0
                for i in range(tl.load(x_ptr)):
                    acc += i
                tl.store(y_ptr, acc)

            y = torch.zeros(1, dtype=torch.int32)
            probe[(1,)](torch.tensor([4], dtype=torch.int32), y)
            _LOOP_BOUNDS_OK = int(y) == 6
        except Exception:
            _LOOP_BOUNDS_OK = False
        finally:
            restore_interpret_variable()
    return _LOOP_BOUNDS_OK


def kernel_test_fixtures(test_file: str, needs_fresh: bool):
    """What a kernel test module assigns to its globals (pytest collects them by name):
    `_interpreter_while_these_tests_run, _needs_interpreter, test_rerun_in_fresh_interpreter =
    kernel_test_fixtures(__file__, NEEDS_FRESH_PROCESS)`."""

    @pytest.fixture(autouse=True, scope="module")
    def _interpreter_while_these_tests_run():
        """TRITON_INTERPRET=1 for this module's tests only (kernel modules reload to match it)."""
        if not ON_GPU:
            os.environ["TRITON_INTERPRET"] = "1"
        yield
        restore_interpret_variable()

    @pytest.fixture(autouse=True)
    def _needs_interpreter(request):
        if needs_fresh and request.node.name != "test_rerun_in_fresh_interpreter":
            pytest.skip("triton was imported before TRITON_INTERPRET=1 was set in this process; "
                        "test_rerun_in_fresh_interpreter runs these tests in a subprocess")

    def test_rerun_in_fresh_interpreter():
        """Only active when this process cannot interpret (see triton_interpreter.py)."""
        if not needs_fresh:
            pytest.skip("kernels run in this process")
        env = dict(os.environ, TRITON_INTERPRET="1")
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file],
                              env=env, capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-4000:]
        assert " passed" in proc.stdout and "failed" not in proc.stdout, proc.stdout[-4000:]

    return _interpreter_while_these_tests_run, _needs_interpreter, test_rerun_in_fresh_interpreter


def kernel_test_module(test_file: str, what: str) -> tuple:
    """Everything a kernel test module does before its tests (see the module doc): triton imported
    under the interpreter where there is no GPU; the module skipped where triton is not importable or
    its interpreter cannot run the kernels' loops. -> (DEVICE, needs_fresh, the three fixtures)."""
    import_triton()
    from helix_core.kernels import triton_available

    if not triton_available():
        pytest.skip(f"triton is not importable (pip install 'helix-serve[triton]'): {what} cannot be tested",
                    allow_module_level=True)
    needs_fresh = needs_fresh_process()
    skip_unless_interpreter_runs_loaded_loop_bounds(needs_fresh)
    return (DEVICE, needs_fresh, *kernel_test_fixtures(test_file, needs_fresh))
