"""One-shot all-reduce over NVLink peer-to-peer loads (torch symmetric memory), for small tensors.

A decode step's all-reduces move a few KiB each (batch x hidden), where NCCL's latency (about
20 us between two H200s inside a CUDA graph) dominates. Torch's symmetric memory maps every
rank's buffer into every peer's address space; its one-shot kernel copies the local tensor into
this rank's buffer, waits on a device-side barrier, sums all ranks' buffers in rank order (so
every rank gets bitwise the same result) and ends with a barrier, so the buffer can be reused by
the next call. No host synchronisation: it is captured in CUDA graphs like any kernel.

Only peer-to-peer loads are used; NVLink multicast (multimem) kernels are never called.
Where it cannot run (CPU, fp16, a tensor larger than the buffer, a torch without the op) the
caller keeps NCCL.
"""
from __future__ import annotations

import importlib
import warnings

import torch

SUPPORTED_DTYPES = (torch.bfloat16, torch.float32)  # what torch's one-shot kernel dispatches on


def symmetric_memory_available() -> bool:
    """This torch has the symmetric-memory one-shot all-reduce (CUDA builds of torch >= 2.7)."""
    if not torch.cuda.is_available():
        return False
    try:
        importlib.import_module("torch.distributed._symmetric_memory")
        return hasattr(torch.ops.symm_mem, "one_shot_all_reduce_copy_out")
    except Exception:  # import errors of optional CUDA pieces
        return False


class SymmetricAllReduce:
    """All-reduce (sum) of tensors up to `max_numel` elements of `dtype` over one process group.

    Construction is collective: every rank of the group must build it at the same point, with
    the same sizes (the buffer is allocated and its handles exchanged across the group).
    """

    def __init__(self, group, max_numel: int, dtype: torch.dtype, device: torch.device):
        import torch.distributed._symmetric_memory as symm_mem

        if dtype not in SUPPORTED_DTYPES:
            raise ValueError(f"symmetric-memory all-reduce supports {SUPPORTED_DTYPES}, not {dtype}")
        self.group_name = group.group_name
        enable = getattr(symm_mem, "enable_symm_mem_for_group", None)
        if enable is not None:  # required by torch <= 2.8, deprecated (a no-op) later
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                enable(self.group_name)
        self.dtype = dtype
        self.max_numel = int(max_numel)
        self.buffer = symm_mem.empty(self.max_numel, dtype=dtype, device=device)
        self.handle = symm_mem.rendezvous(self.buffer, self.group_name)

    def handles(self, tensor: torch.Tensor) -> bool:
        """Whether `tensor` takes this path (a static decision per shape and dtype, the same on
        every rank, so every rank calls the same collective)."""
        return (tensor.dtype == self.dtype and tensor.numel() <= self.max_numel and tensor.is_contiguous()
                and tensor.is_cuda and tensor.data_ptr() % 16 == 0
                and (tensor.numel() * tensor.element_size()) % 16 == 0)

    def __call__(self, tensor: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """The sum over the group, into `out` (same shape, contiguous), or in place into `tensor`
        like dist.all_reduce when `out` is None."""
        flat = tensor.view(-1)
        target = flat if out is None else out.view(-1)
        staging = self.buffer[: flat.numel()]
        torch.ops.symm_mem.one_shot_all_reduce_copy_out(staging, flat, "sum", self.group_name, target)
        return tensor if out is None else out
