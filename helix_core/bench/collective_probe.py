"""The latency of one small all-reduce inside a CUDA graph, by the paths torch offers, side by side.

    python -m helix_core.bench.collective_probe --json out/collectives.json     # 2 GPUs

A batch-1 decode step on 2 GPUs runs about 64-100 all-reduce-like collectives of a few KiB (the o and
FFN all-reduces, bf16 [rows, hidden]; the gathered KVP exchange, fp32 [rows, kvp, heads, Dv + 1]), where
latency, not bandwidth, is the cost. Each path is timed the same way: a CUDA graph of `--chain`
back-to-back all-reduces of one tensor, replayed; the result is seconds per collective. Each path first
sums known values (small integers, exact in every dtype) and reports whether every element came back
right. Paths (`--paths`):
- `nccl`: dist.all_reduce of an ordinary tensor (what `--all-reduce nccl` runs);
- `symm-one-shot`: torch's symmetric-memory one-shot kernel with its copy in and out (what the engine's
  `--all-reduce symm` runs, helix_core/symm_all_reduce.py);
- `nccl-window`: dist.all_reduce of a tensor allocated from the process group's NCCL memory pool registered
  with `symm=True` (NCCL 2.27+ then runs its symmetric kernels over P2P; multicast stays off by the
  environment);
- `nccl-window-copy`: the same with an ordinary tensor copied into the window and back, as the engine would
  run it without allocating the step's outputs there;
- `nccl-symm-mem`: dist.all_reduce of a tensor from torch's symmetric memory with its NCCL backend
  (symm_mem.set_backend("NCCL")), the other route to the same kernels;
- `gloo`: dist.all_reduce on the CPU, no graph: this harness's own check, runnable anywhere.
Every path runs in its own pair of processes under a deadline, so one that hangs or fails costs only its
own row; rows are appended to the JSON as they come.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import timedelta

from ..launcher import free_port
from .main import append_rows
from .ranks import run_ranks

# (name, elements, dtype name): what a llama3-8b step's all-reduce-like collectives move on 2 GPUs
SIZES = [("o/ffn batch 1", 4096, "bfloat16"), ("o/ffn batch 8", 8 * 4096, "bfloat16"),
         ("gather batch 1", 2 * 32 * 129, "float32"), ("gather batch 8", 8 * 2 * 32 * 129, "float32")]
PATHS = ("nccl", "symm-one-shot", "nccl-window", "nccl-window-copy", "nccl-symm-mem", "gloo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=[p for p in PATHS if p != "gloo"])
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("--chain", type=int, default=64, help="all-reduces in the captured graph")
    parser.add_argument("--replays", type=int, default=50, help="timed graph replays (after 5 untimed)")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds a path may take, then it is killed")
    parser.add_argument("--json", help="append one row per path and size to this JSON file")
    return parser


def _expected_sum(numel: int, world_size: int, dtype):
    """What every rank must hold after the sum of `_rank_values` over the group (exact small integers)."""
    import torch

    base = (torch.arange(numel) % 7).to(torch.float32)
    return (base * sum(r + 1 for r in range(world_size))).to(dtype)


def _rank_values(numel: int, rank: int, dtype, device):
    import torch

    return ((torch.arange(numel) % 7).to(torch.float32) * (rank + 1)).to(dtype).to(device)


def _allocate(path: str, numel: int, dtype, device, group):
    """A tensor for `path` to all-reduce, allocated where that path needs it, and how the path runs on it."""
    import torch
    import torch.distributed as dist

    if path in ("nccl", "gloo"):
        tensor = torch.zeros(numel, dtype=dtype, device=device)
        return tensor, lambda: dist.all_reduce(tensor, group=group)
    if path == "symm-one-shot":
        from ..symm_all_reduce import SymmetricAllReduce

        reducer = SymmetricAllReduce(group, numel, dtype, device)
        tensor = torch.zeros(numel, dtype=dtype, device=device)
        return tensor, lambda: reducer(tensor)
    if path in ("nccl-window", "nccl-window-copy"):
        backend = group._get_backend(device)
        pool = torch.cuda.MemPool(backend.mem_allocator)
        with torch.cuda.use_mem_pool(pool):
            window = torch.zeros(numel, dtype=dtype, device=device)
        backend.register_mem_pool(pool, symm=True)
        if path == "nccl-window":
            return window, lambda pool=pool: dist.all_reduce(window, group=group)  # holds the pool while it runs
        tensor = torch.zeros(numel, dtype=dtype, device=device)

        def staged(pool=pool):  # an ordinary tensor through the window: the engine's cost without moving buffers
            window.copy_(tensor)
            dist.all_reduce(window, group=group)
            tensor.copy_(window)
        return tensor, staged
    if path == "nccl-symm-mem":
        import torch.distributed._symmetric_memory as symm_mem

        tensor = symm_mem.empty(numel, dtype=dtype, device=device)
        symm_mem.rendezvous(tensor, group.group_name)
        tensor.zero_()
        return tensor, lambda: dist.all_reduce(tensor, group=group)
    raise ValueError(f"unknown path {path!r}")


def _time_path(path: str, numel: int, dtype, device, group, rank: int, world_size: int, chain: int,
               replays: int) -> dict:
    import torch

    tensor, run = _allocate(path, numel, dtype, device, group)
    tensor.copy_(_rank_values(numel, rank, dtype, device))
    run()
    exact = bool(torch.equal(tensor.cpu(), _expected_sum(numel, world_size, dtype)))
    tensor.zero_()  # the timed sums stay zero: no overflow, however many replays
    if device.type == "cpu":
        start = time.perf_counter()
        for _ in range(chain * replays):
            run()
        return {"exact": exact, "seconds_per_all_reduce": (time.perf_counter() - start) / (chain * replays)}
    from .probes import capture_graph, time_cuda

    graph = capture_graph(lambda: [run() for _ in range(chain)])
    seconds = time_cuda(graph.replay, iters=replays, warmup=5)
    return {"exact": exact, "seconds_per_all_reduce": seconds / chain}


def _rank_main(rank: int, path: str, args: dict, results) -> None:
    import torch
    import torch.distributed as dist

    try:
        cpu = path == "gloo"
        if path == "nccl-symm-mem":
            import torch.distributed._symmetric_memory as symm_mem

            symm_mem.set_backend("NCCL")  # before any symmetric allocation of this process
        device = torch.device("cpu") if cpu else torch.device("cuda", rank)
        if not cpu:
            torch.cuda.set_device(device)
        dist.init_process_group("gloo" if cpu else "nccl", init_method=args["init_method"], rank=rank,
                                world_size=args["world_size"], timeout=timedelta(seconds=args["deadline"]),
                                **({} if cpu else {"device_id": device}))
        group = dist.group.WORLD
        if not cpu:  # eager NCCL communicator: registering a symmetric pool needs one
            dist.all_reduce(torch.zeros(1, device=device), group=group)
            torch.cuda.synchronize()
        for name, numel, dtype_name in SIZES:
            row = {"path": path, "size": name, "bytes": numel * getattr(torch, dtype_name).itemsize,
                   "dtype": dtype_name, "world_size": args["world_size"], "chain": args["chain"]}
            try:
                row |= _time_path(path, numel, getattr(torch, dtype_name), device, group, rank, args["world_size"],
                                  args["chain"], args["replays"])
            except Exception as error:  # noqa: BLE001 - a path this torch or NCCL lacks: its row says why
                row["error"] = f"{type(error).__name__}: {error}"[:500]
            if rank == 0:
                results.put(("row", row))
        dist.destroy_process_group()
        results.put(("done", rank))
    except Exception as error:  # noqa: BLE001 - reported to the parent, which ends the path
        results.put(("error", f"rank {rank}: {type(error).__name__}: {error}"[:500]))


def run_path(path: str, world_size: int, chain: int, replays: int, deadline: float) -> list[dict]:
    """One path's rows, from its own `world_size` processes; a failure or a hang becomes a row that says so."""
    args = {"init_method": f"tcp://127.0.0.1:{free_port()}", "world_size": world_size, "chain": chain,
            "replays": replays, "deadline": deadline}
    rows, failure = run_ranks(_rank_main, (path, args), world_size, deadline, done_count=world_size)
    if failure is not None:
        rows.append({"path": path, "world_size": world_size, "error": failure})
    return rows


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")  # P2P only: NVLink multicast stays off
    os.environ.setdefault("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1")
    rows = []
    for path in args.paths:
        new = run_path(path, args.world_size, args.chain, args.replays, args.deadline)
        for row in new:
            print(json.dumps(row), flush=True)
        rows += new
        append_rows(args.json, new)
    return 0 if any("seconds_per_all_reduce" in row for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
