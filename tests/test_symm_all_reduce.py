"""The symmetric-memory all-reduce is CUDA-only: elsewhere it must say so, never fail."""
import torch

from helix_core.comm import Comm
from helix_core.plan import Plan
from helix_core.symm_all_reduce import SUPPORTED_DTYPES, symmetric_memory_available


def test_availability_probe_answers_without_cuda():
    available = symmetric_memory_available()
    assert isinstance(available, bool)
    if not torch.cuda.is_available():
        assert available is False


def test_single_rank_needs_no_all_reduce():
    plan = Plan.helix(1, 1)
    comm = Comm(plan, 0, torch.device("cpu"))
    assert comm.enable_symmetric_all_reduce(64, torch.bfloat16) == "none (one rank)"
    x = torch.arange(8.0)
    assert torch.equal(comm.all_reduce(x.clone()), x)


def test_fp16_is_not_a_kernel_dtype():
    assert torch.float16 not in SUPPORTED_DTYPES and torch.bfloat16 in SUPPORTED_DTYPES
