"""All-reduce through a buffer registered as an NCCL symmetric window (NCCL 2.27+'s symmetric kernels).

NCCL runs its low-latency symmetric kernels when every rank passes a buffer at the same offset of a
window registered with the symmetric flag. Torch registers such windows for every allocation of a memory
pool made from the process group's NCCL allocator (`register_mem_pool(pool, symm=True)`). The step's
all-reduced tensors are ordinary allocations, so each call stages through one window buffer: copy in,
dist.all_reduce of the window slice (offset 0 on every rank), copy out. Whether those two copies leave
it faster than torch's one-shot kernel (helix_core/symm_all_reduce.py) is what
`python -m helix_core.bench.collective_probe` measures (`nccl-window-copy` against `symm-one-shot`).

Multicast (NVLS) is never asked for: the environment keeps NCCL_NVLS_ENABLE=0, so the kernels are P2P.
On the CPU the window is an ordinary buffer summed by gloo: the staging runs, and is tested, there.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

SUPPORTED_DTYPES = (torch.bfloat16, torch.float16, torch.float32)  # what the symmetric kernels sum


class WindowAllReduce:
    """All-reduce (sum) of tensors up to `max_numel` elements of `dtype` over one process group.

    Construction is collective on CUDA (the window's registration): every rank of the group builds it at
    the same point with the same sizes.
    """

    def __init__(self, group, max_numel: int, dtype: torch.dtype, device: torch.device):
        if dtype not in SUPPORTED_DTYPES:
            raise ValueError(f"NCCL window all-reduce supports {SUPPORTED_DTYPES}, not {dtype}")
        self.group = group
        self.dtype = dtype
        self.max_numel = int(max_numel)
        self.pool = None
        if device.type == "cuda":
            # registering a symmetric pool needs the group's NCCL communicator to exist already
            dist.all_reduce(torch.zeros(1, device=device), group=group)
            backend = group._get_backend(device)
            self.pool = torch.cuda.MemPool(backend.mem_allocator)
            with torch.cuda.use_mem_pool(self.pool):
                self.window = torch.empty(self.max_numel, dtype=dtype, device=device)
            backend.register_mem_pool(self.pool, symm=True)
        else:
            self.window = torch.empty(self.max_numel, dtype=dtype, device=device)

    def handles(self, tensor: torch.Tensor) -> bool:
        """Whether `tensor` takes this path (a static decision per shape and dtype, the same on every rank)."""
        return (tensor.dtype == self.dtype and tensor.numel() <= self.max_numel and tensor.is_contiguous()
                and tensor.device == self.window.device)

    def __call__(self, tensor: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """The sum over the group, into `out` (same shape, contiguous), or in place into `tensor`."""
        flat = tensor.view(-1)
        staged = self.window[: flat.numel()]
        staged.copy_(flat)
        dist.all_reduce(staged, group=self.group)
        target = tensor if out is None else out
        target.view(-1).copy_(staged)
        return target
