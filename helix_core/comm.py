"""The data plane: named process groups of a plan and the few collectives the engine uses.

NCCL on CUDA, gloo on CPU. A separate gloo group carries small control objects (step commands
from rank 0) so the data plane never waits on Python object pickling of another backend.
Collectives over a group of one rank are skipped, so N=1 runs without any communication.
"""
from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

from .plan import Plan

DEFAULT_TIMEOUT_S = float(os.environ.get("HELIX_COLLECTIVE_TIMEOUT_S", "120"))
# Followers wait on the control channel between commands; rank 0 sends a heartbeat at least
# this often (see group.py), so a silent rank 0 is detected within this time.
CONTROL_TIMEOUT_S = float(os.environ.get("HELIX_CONTROL_TIMEOUT_S", "60"))
# what enable_symmetric_all_reduce / enable_window_all_reduce return when their path is set up
SYMMETRIC_ONE_SHOT = "symm-mem one-shot"
NCCL_WINDOW = "nccl window"


class _Group:
    def __init__(self, ranks: list[int], handle):
        self.ranks = ranks
        self.handle = handle  # None for a single-rank group
        self.size = len(ranks)


class Comm:
    """One rank's view of the plan's process groups."""

    def __init__(self, plan: Plan, rank: int, device: torch.device):
        self.plan = plan
        self.rank = rank
        self.world_size = plan.world_size
        self.device = device
        self._groups: dict[str, _Group] = {}
        distributed = dist.is_available() and dist.is_initialized()
        if distributed and dist.get_world_size() != plan.world_size:
            raise RuntimeError(f"process group has {dist.get_world_size()} ranks, plan needs {plan.world_size}")
        # new_group is collective over the world: every rank creates every group, in the same order.
        for name, rank_lists in plan.process_groups().items():
            for ranks in rank_lists:
                handle = dist.new_group(ranks) if distributed and len(ranks) > 1 else None
                if rank in ranks:
                    self._groups[name] = _Group(ranks, handle)
        self._control = None
        self._fast_sums: dict[str, object] = {}  # group -> SymmetricAllReduce or WindowAllReduce, where enabled
        self.muted = False  # benchmarks: collectives become local no-ops, to time compute alone
        if distributed and plan.world_size > 1:
            self._control = dist.new_group(backend="gloo", timeout=timedelta(seconds=CONTROL_TIMEOUT_S))

    # ---- groups ---------------------------------------------------------------------------------
    def size(self, group: str) -> int:
        return self._groups[group].size

    def index_in(self, group: str) -> int:
        return self._groups[group].ranks.index(self.rank)

    # ---- collectives ----------------------------------------------------------------------------
    def enable_symmetric_all_reduce(self, max_numel: int, dtype: torch.dtype, group: str = "all") -> str:
        """Route sums over `group` of up to `max_numel` `dtype` elements (all_reduce, sum_of)
        through the one-shot symmetric-memory kernel. Collective: every rank calls it at the same
        point. Returns the implementation now in use for them (SYMMETRIC_ONE_SHOT or why not)."""
        from .symm_all_reduce import SUPPORTED_DTYPES, SymmetricAllReduce, symmetric_memory_available

        if self.device.type != "cuda":
            why_not = "gloo (symmetric memory needs CUDA)"
        elif not symmetric_memory_available():
            why_not = "nccl (symmetric memory needs a CUDA build of torch with symm_mem)"
        elif dtype not in SUPPORTED_DTYPES:
            why_not = f"nccl (the one-shot kernel has no {dtype})"
        else:
            why_not = None
        # failures, e.g. GPUs without peer access: every rank fails alike
        return self._install_fast_sum(group, why_not, SymmetricAllReduce, max_numel, dtype,
                                      SYMMETRIC_ONE_SHOT, "symmetric memory failed")

    def enable_window_all_reduce(self, max_numel: int, dtype: torch.dtype, group: str = "all") -> str:
        """Route sums over `group` of up to `max_numel` `dtype` elements through a buffer registered as an
        NCCL symmetric window (NCCL's symmetric kernels; window_all_reduce.py). Collective like
        enable_symmetric_all_reduce; returns NCCL_WINDOW or why the plain collective stays."""
        from .window_all_reduce import SUPPORTED_DTYPES, WindowAllReduce

        if self.device.type != "cuda":
            why_not = "gloo (NCCL windows need CUDA)"
        elif dtype not in SUPPORTED_DTYPES:
            why_not = f"nccl (NCCL's symmetric kernels have no {dtype})"
        else:
            why_not = None
        # failures, e.g. a torch or NCCL without windows: every rank fails alike
        return self._install_fast_sum(group, why_not, WindowAllReduce, max_numel, dtype, NCCL_WINDOW,
                                      "window registration failed")

    def _install_fast_sum(self, group: str, why_not: str | None, make, max_numel: int, dtype: torch.dtype,
                          name: str, failed: str) -> str:
        """`make(handle, max_numel, dtype, device)` becomes the group's sum unless the group has one rank or
        `why_not` says why not; returns `name`, or what the group's sums stay on and why."""
        g = self._groups[group]
        if g.handle is None:
            return "none (one rank)"
        if why_not is not None:
            return why_not
        try:
            self._fast_sums[group] = make(g.handle, max_numel, dtype, self.device)
        except Exception as error:  # noqa: BLE001 - the caller's path cannot run here: the plain collective stays
            return f"nccl ({failed}: {type(error).__name__}: {error})"
        return name

    def _fast_sum(self, group: str, tensor: torch.Tensor):
        fast = self._fast_sums.get(group)
        return fast if fast is not None and fast.handles(tensor) else None

    def all_reduce(self, tensor: torch.Tensor, group: str = "all") -> torch.Tensor:
        g = self._groups[group]
        if g.handle is None or self.muted:
            return tensor
        fast = self._fast_sum(group, tensor)
        if fast is not None:
            return fast(tensor)
        dist.all_reduce(tensor, group=g.handle)
        return tensor

    def sum_of(self, tensor: torch.Tensor, group: str) -> torch.Tensor:
        """The sum of `tensor` over `group` as a new tensor; `tensor` itself is left as it was."""
        g = self._groups[group]
        if g.handle is None or self.muted:
            return tensor.clone()
        fast = self._fast_sum(group, tensor)
        if fast is not None:
            return fast(tensor, out=torch.empty_like(tensor))
        out = tensor.clone()
        dist.all_reduce(out, group=g.handle)
        return out

    def all_to_all(self, output: torch.Tensor, inputs: torch.Tensor, group: str, async_op: bool = False):
        """Dim 0 of `inputs` is split evenly: piece i goes to the i-th rank of the group."""
        g = self._groups[group]
        if g.handle is None or self.muted:
            output.copy_(inputs)
            return None
        return dist.all_to_all_single(output, inputs, group=g.handle, async_op=async_op)

    def all_gather(self, tensor: torch.Tensor, group: str = "all") -> torch.Tensor:
        """Concatenate every rank's tensor along a new leading dim."""
        g = self._groups[group]
        if g.handle is None:
            return tensor.unsqueeze(0)
        if self.muted:
            return tensor.unsqueeze(0).expand(g.size, *tensor.shape).clone()
        flat = tensor.contiguous().view(-1)
        out = torch.empty(g.size * flat.numel(), dtype=tensor.dtype, device=tensor.device)
        _all_gather_flat(out, flat, group=g.handle)
        return out.view(g.size, *tensor.shape)

    def broadcast(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        if self.world_size > 1 and not self.muted:
            dist.broadcast(tensor, src=src)
        return tensor

    def broadcast_object(self, obj=None, src: int = 0):
        """Control plane inside the group: rank `src` sends a picklable object to every rank."""
        if self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=src, group=self._control)
        return box[0]

    def gather_objects(self, obj) -> list:
        """Every rank's picklable `obj`, in rank order, over the control channel."""
        if self.world_size == 1:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self._control)
        return out

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier(group=self._control)


# torch 2.13 renamed all_gather_into_tensor; 2.11 (the GPU image) has only the old name
_all_gather_flat = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


def init_distributed(rank: int, world_size: int, init_method: str, device: torch.device,
                     timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Join the rank group: NCCL for CUDA devices, gloo for CPU; every collective times out."""
    if world_size == 1:
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {}
    if device.type == "cuda":
        kwargs["device_id"] = device
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=timeout_s), **kwargs)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
