"""The L2 read probe's kernel (Triton: compiled on a GPU, else its CPU interpreter): every program must read the
whole buffer, so each program's sum is the buffer's sum computed by torch, and the rate counts real reads."""
import pytest
import torch
from triton_interpreter import kernel_test_module

# module fixtures and the fresh-process rerun, collected by pytest under these names
(DEVICE, NEEDS_FRESH_PROCESS, _interpreter_while_these_tests_run, _needs_interpreter,
 test_rerun_in_fresh_interpreter) = kernel_test_module(__file__, "the L2 read probe's kernel")

from helix_core.bench.probes import L2_READ_BLOCK, L2_READ_UNROLL, l2_read  # noqa: E402


@pytest.mark.parametrize("chunks,programs", [(1, 3), (3, 5), (4, 2)])
def test_every_program_sums_the_whole_buffer(chunks, programs):
    gen = torch.Generator().manual_seed(chunks * 10 + programs)
    buf = torch.randint(-1000, 1000, (chunks * L2_READ_BLOCK * L2_READ_UNROLL,), generator=gen, dtype=torch.int32)
    sums = l2_read(buf.to(DEVICE), programs)
    assert sums.tolist() == [int(buf.long().sum())] * programs


def test_a_buffer_of_partial_chunks_is_refused():
    with pytest.raises(ValueError, match="multiple of"):
        l2_read(torch.zeros(L2_READ_BLOCK, dtype=torch.int32, device=DEVICE), 2)
