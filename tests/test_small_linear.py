"""The small-batch linear kernel (Triton: compiled on a GPU, else its CPU interpreter) against a
float64 matmul."""
import pytest
import torch
from triton_interpreter import kernel_test_module

# module fixtures and the fresh-process rerun, collected by pytest under these names
(DEVICE, NEEDS_FRESH_PROCESS, _interpreter_while_these_tests_run, _needs_interpreter,
 test_rerun_in_fresh_interpreter) = kernel_test_module(__file__, "the small-batch linear kernel")

from helix_core.kernels.small_linear import LinearConfig, small_linear, usable  # noqa: E402

CASES = [
    # rows, K, N, config: one row and several; whole and ragged tiles; one split and several
    (1, 512, 64, LinearConfig(block_n=16, block_k=128, splits=1)),
    (1, 512, 64, LinearConfig(block_n=16, block_k=128, splits=4)),
    (1, 300, 50, LinearConfig(block_n=16, block_k=64, splits=2)),  # ragged N and K
    (3, 512, 64, LinearConfig(block_n=16, block_k=128, splits=1)),
    (16, 384, 48, LinearConfig(block_n=16, block_k=64, splits=3)),
    (5, 200, 40, LinearConfig(block_n=32, block_k=64, splits=0)),  # splits chosen from the SM count
    (1, 1024, 40, LinearConfig()),  # the engine's one-row config
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows,k,n,config", CASES)
def test_matches_a_float64_matmul(rows, k, n, config, dtype):
    gen = torch.Generator().manual_seed(rows * 1000 + k + n)
    x = torch.randn(rows, k, generator=gen).to(dtype).to(DEVICE)
    w = torch.randn(n, k, generator=gen).to(dtype).to(DEVICE)
    y = small_linear(x, w, config)
    ref = x.double() @ w.double().T
    assert y.shape == (rows, n) and y.dtype == dtype
    # fp32 accumulation (tf32-free); the only rounding beyond it is the store in the output dtype
    tol = 1e-4 if dtype == torch.float32 else 1e-2
    err = ((y.double() - ref).abs() / (ref.abs() + 1.0)).max().item()
    assert err < tol, err


def test_refuses_what_it_cannot_run():
    x = torch.randn(17, 64, device=DEVICE)
    w = torch.randn(32, 64, device=DEVICE)
    assert not usable(x, w)  # a GEMM, not a decode batch
    assert not usable(x[:2].to(torch.bfloat16), w)  # mixed dtypes
    with pytest.raises(ValueError, match="do not fit"):
        small_linear(x, w)
