"""Independent probes of the two rates of the roofline, measured in the same run, and of the rate L2 feeds the SMs
(a bound for kernels whose programs re-read shared data)."""
from __future__ import annotations

import torch


def time_cuda(fn, iters: int, warmup: int = 3) -> float:
    """Seconds per call of `fn`, from CUDA events around `iters` back-to-back calls."""
    for _ in range(warmup):
        fn()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        fn()
    stop.record()
    torch.cuda.synchronize()
    return start.elapsed_time(stop) / 1e3 / iters


def capture_graph(fn):
    """A CUDA graph of one call of `fn` (warmed up once on a side stream, as capture requires)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph


def hbm_bandwidth(device, gib: float = 4.0) -> float:
    """Bytes per second of a large device copy, counting bytes read and written."""
    n = int(gib * (1 << 30)) // 2
    src = torch.empty(n, dtype=torch.bfloat16, device=device).normal_()
    dst = torch.empty_like(src)
    seconds = time_cuda(lambda: dst.copy_(src), iters=20)
    return 2 * n * 2 / seconds


def matmul_rate(device, size: int = 8192, dtype=torch.bfloat16, sustained_s: float | None = None) -> float:
    """FLOP/s of a large matrix product on random data: over 20 products (the GPU's burst clocks), or, with
    `sustained_s`, over that many seconds of products after as many seconds of them (the clocks the GPU keeps
    under its power cap: an H200 drew 690 W and fell from 1980 to 1410-1545 MHz within a second of them, and
    its rate from 808 to 676 TFLOP/s; docs/benchmarks.md, 2026-12-04, fourth session)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    if sustained_s is None:
        seconds = time_cuda(lambda: a @ b, iters=20)
    else:
        seconds = time_for(lambda: a @ b, sustained_s)
    return 2 * size ** 3 / seconds


def time_for(fn, duration_s: float) -> float:
    """Seconds per call of `fn` over about `duration_s` of back-to-back calls that follow as long a warm-up."""
    per = time_cuda(fn, iters=3)
    calls = max(3, int(duration_s / per))
    time_cuda(fn, iters=calls, warmup=0)
    return time_cuda(fn, iters=calls, warmup=0)


L2_READ_BLOCK = 4096  # int32 values a load (16 KB a program: 32 a thread at 4 warps)
L2_READ_UNROLL = 4  # loads in flight a program


def l2_read(buf: torch.Tensor, programs: int) -> torch.Tensor:
    """Launch the L2 read kernel: `programs` programs each sum all of int32 `buf` (a whole number of
    L2_READ_BLOCK x L2_READ_UNROLL chunks), each from its own starting chunk; their sums [programs] (int32,
    wrapping)."""
    from helix_core.kernels import kernel_module

    chunk = L2_READ_BLOCK * L2_READ_UNROLL
    if buf.dtype != torch.int32 or buf.dim() != 1 or buf.numel() % chunk or not buf.is_contiguous():
        raise ValueError(f"buf must be a contiguous int32 vector of a multiple of {chunk} values")
    sums = torch.empty(programs, dtype=torch.int32, device=buf.device)
    kernel_module("_triton_l2_read")._l2_read_kernel[(programs,)](
        buf, sums, buf.numel() // chunk, BLOCK=L2_READ_BLOCK, UNROLL=L2_READ_UNROLL, num_warps=4)
    return sums


def l2_read_rate(device, mib: float = 16.0, programs_per_sm: int = 2) -> float:
    """Bytes per second that reach the SMs when `programs_per_sm` programs a SM each read the same `mib` MiB
    (L2-resident after the first pass: an H100 or H200 has 50 MB of L2), counting every program's bytes."""
    from helix_core.kernels import sm_count

    chunk = L2_READ_BLOCK * L2_READ_UNROLL
    n = max(1, int(mib * (1 << 20)) // 4 // chunk) * chunk
    buf = torch.randint(-8, 8, (n,), dtype=torch.int32, device=device)
    programs = programs_per_sm * sm_count(torch.device(device))
    seconds = time_cuda(lambda: l2_read(buf, programs), iters=20)
    return programs * n * 4 / seconds
