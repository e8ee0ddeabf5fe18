"""The sm_90 Gluon MLA decode kernel on a GPU: numbers against an fp32 torch reference, then its time
against the Triton kernel (CUDA graphs, 50 replays). Run by scripts/gpu_h200_kernels.sh (first by
scripts/ran/gpu_gluon_mla.sh).

    python scripts/gpu_gluon_mla.py check
    python scripts/gpu_gluon_mla.py bench
    python scripts/gpu_gluon_mla.py probe       # parts of the kernel's work switched off
    python scripts/gpu_gluon_mla.py sustained   # rates over 20 calls and over 3 s (the GPU's power cap)
    python scripts/gpu_gluon_mla.py split-cost  # a short launch's time: split kernel, merge, split counts, PDL
    python scripts/gpu_gluon_mla.py timeline    # each program's stages, from clock readings the kernel writes
    python scripts/gpu_gluon_mla.py partials    # the error of bf16 partials against fp32 attention, split keys
    python scripts/gpu_gluon_mla.py fused       # the kernel merging its own splits against the merge kernel
    python scripts/gpu_gluon_mla.py bound       # the key loads from HBM and from L2, beside L2's rate into the SMs
    python scripts/gpu_gluon_mla.py even-splits # splits within a tile of each other against ceil(tiles / splits)
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from helix_core.kernels.decode_attention import DecodeConfig, HeadGroups, paged_decode_attention

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the GPU tests' cases and reference
from mla_cases import make_case, reference  # noqa: E402

FLOP_PER_KEY_HEAD = 2 * (576 + 512)


def check() -> int:
    scale = 1.0 / math.sqrt(192)
    cases = [
        (1, 128, [1000], 64, None, torch.float32),
        (3, 128, [0, 77, 5000], 16, 1, torch.float32),
        (3, 128, [0, 77, 5000], 16, 3, torch.float32),
        (3, 128, [0, 77, 5000], 16, None, torch.float32),
        (2, 64, [4096, 129], 64, None, torch.float32),
        (2, 16, [300, 64], 16, None, torch.bfloat16),
        (1, 128, [33000], 64, None, torch.float32),
        (2, 128, [20000, 64], 32, 7, torch.bfloat16),
    ]
    failed = 0
    for batch, heads, lengths, page_size, splits, out_dtype in cases:
        q, keys, table, lens = make_case(lengths, heads, page_size)
        ref_out, ref_lse = reference(q, keys, table, lens, scale)
        results = {}
        for name, flag in (("gluon", True), ("triton", False)):
            cfg = DecodeConfig(sm90_mla=flag, num_splits=splits)
            out, lse = paged_decode_attention(q, keys, None, table, lens, scale, heads, value_dim=512,
                                              max_length=max(lengths), config=cfg, out_dtype=out_dtype)
            torch.cuda.synchronize()
            live = torch.isfinite(ref_lse)
            d_out = (out.float() - ref_out).abs().max().item()
            d_lse = (lse[live] - ref_lse[live]).abs().max().item() if live.any() else 0.0
            empty_ok = bool((lse[~live] == float("-inf")).all()) and bool((out[~live].float() == 0).all())
            results[name] = (d_out, d_lse, empty_ok, bool(torch.isfinite(out.float()).all()))
        g, t = results["gluon"], results["triton"]
        ok = g[2] and g[3] and g[1] <= 2e-3 and g[0] <= 2 * t[0] + 2e-3
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} B={batch} H={heads} L={lengths} page={page_size} splits={splits} "
              f"out={str(out_dtype).split('.')[-1]}: gluon max|d out| {g[0]:.2e} |d lse| {g[1]:.2e} "
              f"(triton {t[0]:.2e} / {t[1]:.2e}) empty rows ok {g[2]}", flush=True)
    print(f"check: {len(cases) - failed} / {len(cases)} passed", flush=True)
    return 1 if failed else 0


PARTIALS_POINTS = ((1, 32768), (1, 131072), (4, 131072))


def partials() -> int:
    """What bf16 partials cost in accuracy where the keys are split (128 heads, pages of 64, the default splits,
    output in bf16 as the model takes it): each launch's max and mean |error| against fp32 attention, beside the
    error of the reference itself rounded to bf16 (the floor any bf16 output has)."""
    from helix_core.kernels import mla_sm90

    scale = 1.0 / math.sqrt(192)
    for batch, length in PARTIALS_POINTS:
        q, keys, table, lens = make_case([length] * batch, 128, 64)
        ref_out, _ = reference(q, keys, table, lens, scale)
        groups = HeadGroups.from_group_size(128, 128)
        gkv, gh = groups.tables(64, q.device)
        splits = mla_sm90.choose_splits(batch, groups, length, q.device)
        floor = (ref_out.bfloat16().float() - ref_out).abs()
        print(f"partials {batch} x {length} splits {splits}: reference rounded to bf16 max |err| "
              f"{floor.max().item():.3e} mean {floor.mean().item():.3e}", flush=True)
        for dtype in (torch.float32, torch.bfloat16):
            out = torch.empty(batch, 128, 512, device="cuda", dtype=torch.bfloat16)
            lse = torch.empty(batch, 128, device="cuda")
            mla_sm90.launch(q, keys, table, lens, scale, gkv, gh, splits, out, lse, q_by_tma=True, staged_store=True,
                            partials=dtype)
            err = (out.float() - ref_out).abs()
            print(f"partials {batch} x {length} splits {splits}: {str(dtype)[6:]} partials max |err| "
                  f"{err.max().item():.3e} mean {err.mean().item():.3e}", flush=True)
        del q, keys, table, lens, ref_out
        torch.cuda.empty_cache()
    return 0


def time_graph(fn, replays=50):
    from helix_core.bench.probes import capture_graph

    fn()
    graph = capture_graph(fn)
    torch.cuda.synchronize()
    for _ in range(5):
        graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(replays):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000)
    times.sort()
    return times[len(times) // 2]


def time_graph_back_to_back(fn, replays=100):
    """Median microseconds per replay over 5 runs of `replays` back-to-back replays (bench_decode's way)."""
    from helix_core.kernels.bench_decode import time_eager
    from helix_core.bench.probes import capture_graph

    fn()
    torch.cuda.synchronize()
    return time_eager(capture_graph(fn).replay, warmup=3, iters=replays, repeats=5) * 1e6


def bench(points) -> int:
    scale = 1.0 / math.sqrt(192)
    print(f"{'heads':>5} {'batch':>5} {'keys':>8} {'page':>4} {'gluon_us':>9} {'triton_us':>9} {'speedup':>7} "
          f"{'gluon_TF/s':>10} {'triton_TF/s':>11} {'max|d|':>8}", flush=True)
    for point in points:
        heads, batch, length, page = (tuple(point) + (64,))[:4]
        q, keys, table, lens = make_case([length] * batch, heads, page)
        groups = HeadGroups.from_group_size(heads, heads)  # built once: its tables are cached on the device
        outs = {}
        times = {}
        for name, flag in (("gluon", True), ("triton", False)):
            cfg = DecodeConfig(sm90_mla=flag)
            out = torch.empty(batch, heads, 512, device="cuda", dtype=torch.bfloat16)
            lse = torch.empty(batch, heads, device="cuda")

            def call(cfg=cfg, out=out, lse=lse):
                paged_decode_attention(q, keys, None, table, lens, scale, groups, value_dim=512, max_length=length,
                                       config=cfg, out=out, lse=lse)
            times[name] = time_graph(call)
            outs[name] = out.float()
        diff = (outs["gluon"] - outs["triton"]).abs().max().item()
        flop = batch * length * heads * FLOP_PER_KEY_HEAD
        print(f"{heads:5d} {batch:5d} {length:8d} {page:4d} {times['gluon']:9.1f} {times['triton']:9.1f} "
              f"{times['triton'] / times['gluon']:7.2f} {flop / times['gluon'] / 1e6:10.1f} "
              f"{flop / times['triton'] / 1e6:11.1f} {diff:8.1e}", flush=True)
        torch.cuda.empty_cache()
    return 0


POINTS = [(128, 1, 32768), (128, 4, 131072), (128, 4, 524288), (128, 1, 1048576), (128, 4, 1048576),
          (64, 1, 32768), (64, 4, 131072), (64, 4, 1048576)]


def default_options() -> dict:
    """The mla_sm90.launch options decode calls take (for 128 heads, 64 a block): the launch `compare` and `bound`
    time, so they follow the defaults when those change."""
    from helix_core.kernels import mla_sm90

    return dict(q_by_tma=mla_sm90.Q_BY_TMA, staged_store=mla_sm90.STAGED_STORE, even_splits=mla_sm90.EVEN_SPLITS)


def launch_case(batch, length, heads=128, page=64, out_dtype=torch.bfloat16, pool_pages=None):
    """`batch` sequences of `length` keys and the kernel's launch over them: (launch(splits=default, **options)
    calling mla_sm90.launch, the default split count, FLOPs of one launch). pool_pages: every block-table entry
    taken modulo this many pages, so the launch reads only those (L2-resident when small enough)."""
    from helix_core.kernels import mla_sm90

    q, keys, table, lens = make_case([length] * batch, heads, page)
    if pool_pages:
        table %= pool_pages
    groups = HeadGroups.from_group_size(heads, heads)
    gkv, gh = groups.tables(64, q.device)
    default = mla_sm90.choose_splits(batch, groups, length, q.device)
    out = torch.empty(batch, heads, 512, device="cuda", dtype=out_dtype)
    lse = torch.empty(batch, heads, device="cuda")

    def launch(splits=default, **options):
        mla_sm90.launch(q, keys, table, lens, 0.07, gkv, gh, splits, out, lse, **options)
    launch.out = out  # what each launch writes
    return launch, default, batch * length * heads * FLOP_PER_KEY_HEAD


def probe(heads=128, batch=4, length=524288, page=64, *bits) -> int:
    """Time the split kernel alone with parts of its work switched off (PROBE bits: 1 no loads after the
    first tiles, 2 no values MMA in warpgroup 1, 4 no MMAs in warpgroup 0; default 0-3): what bounds it."""
    launch, splits, flop = launch_case(batch, length, heads, page, out_dtype=torch.float32)
    print(f"probe heads {heads} batch {batch} keys {length} page {page} splits {splits}", flush=True)
    for bits in bits or (0, 1, 2, 3):
        fn = (lambda bits=bits: launch(probe=bits))
        one = time_graph(fn)
        run = time_graph_back_to_back(fn)
        print(f"probe {bits}: one replay {one:9.1f} us {flop / one / 1e6:6.1f} TF/s | "
              f"100 back to back {run:9.1f} us {flop / run / 1e6:6.1f} TF/s", flush=True)
    return 0


BOUND_POINTS = ((128, 1, 131072), (128, 4, 524288), (64, 4, 524288))
BOUND_BITS = ((0, "everything"), (1, "no key loads after the first two tiles"))
BOUND_POOL_MIB = 12  # keys read from this many MiB of pages (an H100 or H200 has 50 MB of L2)


def bound(points=BOUND_POINTS) -> int:
    """Whether the key loads are bound by L2's rate into the SMs (the default launch, `default_options`, pages of 64,
    CUDA graph). First the L2 read probe: programs on every SM re-reading 16 MiB (`probes.l2_read_rate`).
    Then the kernel with its key loads switched off (PROBE bit 1; results wrong, times only), its keys read from the
    cache as placed (HBM) and from a pool of BOUND_POOL_MIB MiB that L2 holds: if the launch with its loads takes
    as long with the keys in L2 as in HBM, HBM is not what limits them; if it takes as long as without loads, only
    HBM is. Rates: the key bytes entering SMs (every head block's programs read their split's keys) and the cache
    bytes (read once), per second."""
    from helix_core.bench.probes import l2_read_rate

    device = torch.device("cuda")
    for per_sm in (1, 2, 4):
        print(f"bound l2-read 16 MiB, {per_sm} programs a SM: {l2_read_rate(device, 16.0, per_sm) / 1e12:.2f} TB/s "
              f"into the SMs", flush=True)
    pool = BOUND_POOL_MIB * (1 << 20) // (64 * 576 * 2)
    for heads, batch, length in points:
        cache_bytes = batch * length * 576 * 2
        into_sms = cache_bytes * heads // 64
        for keys, pool_pages in (("hbm", None), ("l2", pool)):
            launch, splits, flop = launch_case(batch, length, heads, 64, pool_pages=pool_pages)
            for bits, name in BOUND_BITS:
                fn = (lambda bits=bits, launch=launch: launch(probe=bits, **default_options()))
                one = time_graph(fn)
                run = time_graph_back_to_back(fn)
                print(f"bound {heads} heads {batch} x {length} splits {splits} keys {keys:3s} {name:38s}: one replay "
                      f"{one:8.1f} us ({flop / one / 1e6:5.1f} TF/s, {into_sms / one / 1e6:5.2f} TB/s into SMs, "
                      f"{cache_bytes / one / 1e6:5.2f} TB/s of cache) | back to back {run:8.1f} us "
                      f"({flop / run / 1e6:5.1f} TF/s, {into_sms / run / 1e6:5.2f} TB/s into SMs)", flush=True)
            del launch
            torch.cuda.empty_cache()
    return 0


def sustained(seconds: float = 3.0) -> int:
    """Rates over short and long back-to-back runs (clocks drop under sustained load): the 8192^3 bf16 matmul
    probe as `helix bench` times it (20 calls) and for `seconds`; the MLA kernel at 4 x 512K, 128 heads, likewise.
    Prints wall-clock marks, to line up with an nvidia-smi log taken alongside."""
    import time

    from helix_core.bench.probes import capture_graph, time_cuda

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    launch, _, mla_flop = launch_case(4, 524288)
    graph = capture_graph(launch)
    jobs = (("matmul", lambda: a @ b, 2 * 8192 ** 3), ("mla", graph.replay, mla_flop))
    for name, fn, flop in jobs:
        for label, iters in (("20 calls", 20), (f"{seconds:.0f} s", None)):
            time.sleep(2.0)  # idle between runs, so each starts from the clocks of an idle GPU
            if iters is None:
                per = time_cuda(fn, iters=5)
                iters = max(20, int(seconds / per))
            t0 = time.time()
            per = time_cuda(fn, iters=iters)
            print(f"sustained {name} {label} ({iters} calls, wall {t0:.2f}-{time.time():.2f}): "
                  f"{per * 1e6:9.1f} us {flop / per / 1e12:6.1f} TF/s", flush=True)
    return 0


def split_cost(points=((1, 131072), (1, 32768), (4, 131072))) -> int:
    """Where a short launch's time goes (128 heads, pages of 64, CUDA graph, back to back): the whole launch
    (split kernel + merge) at several split counts, the split kernel alone (merge switched off), the merge alone,
    and the merge as a programmatic dependent launch (PDL); against a matmul timed as long."""
    from helix_core.bench.probes import capture_graph, matmul_rate, time_for
    from helix_core.kernels import split_merge

    # mla_sm90.launch imports launch_merge when called, so replacing the module's attribute reaches it
    real_merge = split_merge.launch_merge
    for batch, length in points:
        launch, auto, flop = launch_case(batch, length)
        rows = []
        for splits in sorted({auto, max(1, auto // 2), max(1, 2 * auto // 3)}):
            for label, merge, pdl in (("whole", real_merge, False), ("whole, PDL merge", real_merge, True),
                                      ("split kernel only", lambda *x, **k: None, False)):
                split_merge.launch_merge = merge
                try:
                    fn = (lambda splits=splits, pdl=pdl: launch(splits, pdl=pdl))
                    fn()
                    graph = capture_graph(fn)
                    rows.append((f"{splits:3d} splits, {label}", time_for(graph.replay, 0.3)))
                finally:
                    split_merge.launch_merge = real_merge
            mid_out = torch.randn(splits, batch, 128, 512, device="cuda")
            mid_lse = torch.randn(splits, batch, 128, device="cuda")
            out = torch.empty(batch, 128, 512, device="cuda", dtype=torch.bfloat16)
            lse = torch.empty(batch, 128, device="cuda")
            merge = capture_graph(lambda: real_merge(mid_out, mid_lse, out, lse, lse_in_log2=True))
            rows.append((f"{splits:3d} splits, merge only", time_for(merge.replay, 0.3)))
        matmul = matmul_rate(torch.device("cuda"), sustained_s=0.3)
        for label, seconds in rows:
            print(f"split-cost {batch} x {length} {label:28s} {seconds * 1e6:8.1f} us {flop / seconds / 1e12:6.1f} TF/s "
                  f"{flop / seconds / matmul:6.1%} of the matmul ({matmul / 1e12:.1f} TF/s)", flush=True)
        torch.cuda.empty_cache()
    return 0


TIMELINE_POINTS = ((1, 32768, None), (1, 131072, None), (1, 524288, None), (4, 131072, None), (4, 524288, None))
# queries by TMA are the default since 2026-12-05 (seventh session), the staged store since 2026-12-06: each
# variant names both. bf16 partials stored from the MMA layout, in half sectors, were slower (2026-12-05).
TIMELINE_VARIANTS = (("Q by TMA, direct store", dict(q_by_tma=True, staged_store=False)),
                     ("Q by TMA, staged store", dict(q_by_tma=True, staged_store=True)),
                     ("Q by TMA, staged store, bf16 partials",
                      dict(q_by_tma=True, staged_store=True, partials=torch.bfloat16)),
                     ("Q by TMA, staged store, even splits", dict(q_by_tma=True, staged_store=True, even_splits=True)))


def _spread(values) -> str:
    values = sorted(values)
    if not values:
        return "      -"
    return f"{values[len(values) // 2]:7.2f} [{values[0]:7.2f}, {values[-1]:7.2f}]"


def split_tiles(length: int, splits: int, split: int, even: bool) -> int:
    """Tiles of 64 keys (the last one partial) that split `split` of `splits` takes of `length` keys: whole tiles
    of ceil(tiles / splits) a split, or even: tiles * split // splits onwards (the kernel's EVEN_SPLITS)."""
    tiles = math.ceil(length / 64)
    if even:
        return (split + 1) * tiles // splits - split * tiles // splits
    per_split = math.ceil(math.ceil(length / splits) / 64)
    return max(0, min(per_split, tiles - split * per_split))


def _stages(rows, length, splits, even=False) -> tuple[dict, float]:
    """Each stage's microseconds per program (programs with keys only) from a traced launch's rows, and the SM
    clock (GHz) the readings give."""
    for r in rows:
        r["tiles"] = split_tiles(length, splits, r["split"], even)
    busy = [r for r in rows if r["tiles"]]
    ghz = sorted((r["clock_stored"] - r["clock_start"]) / max(1, r["time_stored"] - r["time_start"]) for r in busy)
    clock = ghz[len(ghz) // 2]
    t0 = min(r["time_start"] for r in rows)

    def us(a, b):
        return [(r[b] - r[a]) / clock / 1e3 for r in busy]
    loop = us("clock_first_tile", "clock_loop_end")
    return {
        "start after first": [(r["time_start"] - t0) / 1e3 for r in busy],
        "setup (Q issued / in smem)": us("clock_start", "clock_q_ready"),
        "Q in shared memory": us("clock_start", "clock_q_arrived"),
        "first tile (from start)": us("clock_start", "clock_first_tile"),
        "tile loop": loop,
        "per tile": [t / r["tiles"] for t, r in zip(loop, busy)],
        "scores epilogue": us("clock_loop_end", "clock_stored"),
        "values epilogue": us("clock_loop_end", "clock_values_stored"),
        "end after first start": [(max(r["time_stored"], r["time_values_stored"]) - t0) / 1e3 for r in busy],
        # the fused merge's grid barrier (zero readings without it)
        "barrier passed after start": [(r["time_released"] - t0) / 1e3 for r in busy if r["time_released"]],
        "waited at the barrier": [(r["time_released"] - r["time_arrived"]) / 1e3 for r in busy if r["time_released"]],
        "merged its rows": [(r["time_merged"] - r["time_released"]) / 1e3 for r in busy if r["time_merged"]],
        "merged after start": [(r["time_merged"] - t0) / 1e3 for r in busy if r["time_merged"]],
    }, clock


def timeline(points=TIMELINE_POINTS) -> int:
    """Where a launch's time goes, program by program (128 heads, pages of 64, CUDA graph, back to back): each
    program of the split kernel writes %globaltimer and %clock64 at its stages (mla_sm90.launch(trace=...)); the
    last of 0.3 s of replays is read. Per point and variant (TIMELINE_VARIANTS): the launch timed with and without
    the readings, and 10 launches captured in one graph (no graph launch between them, as in a decode step),
    then the median [min, max] over programs (those with keys) of each stage, and the SM clock the readings give;
    last, the 8192^3 matmul timed for 0.3 s, for the share of the matrix rate."""
    from helix_core.bench.probes import capture_graph, matmul_rate, time_for
    from helix_core.kernels import mla_sm90

    shares = []
    for batch, length, forced in points:
        launch, auto, flop = launch_case(batch, length)
        splits = forced or auto
        blocks = 128 // mla_sm90.BLOCK_H  # launch_case's 128 heads
        for name, options in TIMELINE_VARIANTS:
            trace = mla_sm90.trace_buffer(blocks, splits, batch, "cuda")
            plain = time_for(capture_graph(lambda: launch(splits, **options)).replay, 0.3)
            ten = time_for(capture_graph(lambda: [launch(splits, **options) for _ in range(10)]).replay, 0.3) / 10
            traced = time_for(capture_graph(lambda: launch(splits, trace=trace, **options)).replay, 0.3)
            torch.cuda.synchronize()
            stages, clock = _stages(mla_sm90.trace_rows(trace, blocks, splits, batch), length, splits,
                                    options.get("even_splits", False))
            tag = f"timeline {batch} x {length} splits {splits} {name}:"
            print(f"{tag} launch {plain * 1e6:.1f} us ({flop / plain / 1e12:.1f} TF/s), traced {traced * 1e6:.1f} us; "
                  f"10 launches a graph {ten * 1e6:.1f} us each ({flop / ten / 1e12:.1f} TF/s); SM clock {clock:.2f} GHz",
                  flush=True)
            for stage, values in stages.items():
                print(f"{tag}   {stage:27s} {_spread(values)} us", flush=True)
            shares.append((tag, flop / plain, flop / ten))
        torch.cuda.empty_cache()
    matmul = matmul_rate(torch.device("cuda"), sustained_s=0.3)
    for tag, rate, rate_ten in shares:
        print(f"{tag} {rate / 1e12:.1f} TF/s = {rate / matmul:.1%} of the matmul ({matmul / 1e12:.1f} TF/s, 0.3 s); "
              f"10 a graph: {rate_ten / matmul:.1%}", flush=True)
    return 0


COMPARE_POINTS = ((1, 32768), (1, 131072), (4, 131072), (4, 524288))
FUSED_VARIANTS = (("merge kernel", dict()), ("fused merge", dict(fused_merge=True)),
                  ("fused merge, not cooperative", dict(fused_merge=True, cooperative=False)))

# 1 x 100000: 1563 tiles over 66 splits: 65 of 24 tiles and one of 3 by ceil, 45 of 24 and 21 of 23 by the even rule
EVEN_SPLIT_VARIANTS = (("ceil(tiles / splits) a split", dict(even_splits=False)),
                       ("even splits", dict(even_splits=True)))
EVEN_SPLIT_POINTS = ((1, 131072), (1, 32768), (1, 100000), (4, 131072))


def compare(variants, label: str, points=COMPARE_POINTS, rounds: int = 3) -> int:
    """Variants of the default launch (128 heads, pages of 64, `default_options`, CUDA graph), each `variants` entry
    (name, mla_sm90.launch options over the defaults): one launch a graph and 10 a graph (as in a decode step),
    `rounds` rounds with the variants interleaved; each round's outputs against the first variant's; last, the
    8192^3 matmul timed for 0.3 s, for the share of the matrix rate. Lines start with `label`."""
    from helix_core.bench.probes import capture_graph, matmul_rate, time_for

    rows = []
    for batch, length in points:
        launch, splits, flop = launch_case(batch, length)
        reference = None
        for round_ in range(rounds):
            for name, options in variants:
                opts = {**default_options(), **options}
                launch(**opts)
                torch.cuda.synchronize()
                plain = time_for(capture_graph(lambda: launch(**opts)).replay, 0.3)
                ten = time_for(capture_graph(lambda: [launch(**opts) for _ in range(10)]).replay, 0.3) / 10
                result = launch.out.float().clone()
                if reference is None:
                    reference = result
                diff = (result - reference).abs().max().item()
                rows.append((batch, length, round_, name, plain, ten, flop))
                print(f"{label} {batch} x {length} splits {splits} round {round_} {name:30s}: one a graph "
                      f"{plain * 1e6:7.1f} us, 10 a graph {ten * 1e6:7.1f} us each ({flop / ten / 1e12:6.1f} TF/s); "
                      f"max |out - {variants[0][0]}'s| {diff:.1e}", flush=True)
        torch.cuda.empty_cache()
    matmul = matmul_rate(torch.device("cuda"), sustained_s=0.3)
    for batch, length, round_, name, plain, ten, flop in rows:
        print(f"{label} {batch} x {length} round {round_} {name:30s}: {flop / plain / matmul:6.1%} of the matmul "
              f"({matmul / 1e12:.1f} TF/s), 10 a graph {flop / ten / matmul:6.1%}", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["bench", "probe", *MODES])
    parser.add_argument("values", nargs="*",
                        help="probe: its switches as integers; bench: points HEADS,BATCH,KEYS[,PAGE]; "
                             "timeline: points BATCH,KEYS (default: TIMELINE_POINTS)")
    return parser


# the modes without values
MODES = {"split-cost": split_cost, "sustained": sustained, "check": check, "timeline": timeline, "partials": partials,
         "fused": lambda: compare(FUSED_VARIANTS, "fused"),
         "even-splits": lambda: compare(EVEN_SPLIT_VARIANTS, "even-splits", EVEN_SPLIT_POINTS),
         "bound": bound}


def main() -> int:
    args = build_parser().parse_args()
    if args.mode == "timeline" and args.values:
        return timeline(tuple((*(int(v) for v in p.split(",")), None) for p in args.values))
    if args.mode in MODES:
        return MODES[args.mode]()
    if args.mode == "probe":
        return probe(*(int(v) for v in args.values))
    return bench([tuple(int(v) for v in p.split(",")) for p in args.values] if args.values else POINTS)


if __name__ == "__main__":
    sys.exit(main())
