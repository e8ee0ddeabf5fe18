"""The step timeline charges each kernel the time the step advanced while it ran (bench/timeline.py)."""
from helix_core.bench.timeline import KernelSpan, critical_path, format_table


def test_overlapping_dependent_is_charged_only_past_the_previous_end():
    # a: 0-10; b launched early (PDL) at 2, ends 15; gap; c 20-24; a again 24-30 with another grid
    spans = [KernelSpan("a", 0, 10, (4, 1, 1)), KernelSpan("b", 2, 15), KernelSpan("c", 20, 24),
             KernelSpan("a", 24, 30, (8, 1, 1))]
    rows, total = critical_path(spans)
    by_key = {r.key: r for r in rows}
    assert total == 30
    assert by_key["a grid=4x1x1"].effective_ns == 10 and by_key["a grid=4x1x1"].idle_before_ns == 0
    assert by_key["b"].effective_ns == 5 and by_key["b"].duration_ns == 13  # 10..15, not 2..15
    assert by_key["c"].effective_ns == 4 and by_key["c"].idle_before_ns == 5  # the launch gap 15..20
    assert by_key["a grid=8x1x1"].effective_ns == 6
    assert sum(r.effective_ns + r.idle_before_ns for r in rows) == total
    assert [r.key for r in rows][0] == "a grid=4x1x1"  # largest effective time first


def test_concurrent_kernels_share_the_span_and_the_table_is_per_replay():
    # a side-stream kernel inside the main one is charged up to its end, the main one the rest
    spans = [KernelSpan("main", 0, 100), KernelSpan("side", 10, 40), KernelSpan("main", 100, 200),
             KernelSpan("side", 110, 140)]
    rows, total = critical_path(spans)
    by_key = {r.key: r for r in rows}
    assert by_key["side"].effective_ns == 80  # 0..40 and 100..140: each side kernel ended first
    assert by_key["main"].effective_ns == 120 and total == 200
    assert sum(r.idle_before_ns for r in rows) == 0  # something always ran
    text = format_table(rows, total, replays=2, title="t")
    assert "span 0.1 us" in text  # 200 ns over 2 replays
    assert text.splitlines()[2].split()[-1] == "main" and text.splitlines()[2].split()[0] == "0.1"  # 60 ns


def test_spans_come_from_the_chrome_trace_with_grids():
    from helix_core.bench.timeline import spans_from_chrome_trace

    trace = {"traceEvents": [
        {"ph": "X", "cat": "kernel", "name": "_row_kernel", "ts": 10.5, "dur": 2.25,
         "args": {"stream": 7, "grid": [768, 1, 1], "block": [128, 1, 1]}},
        {"ph": "X", "cat": "gpu_memcpy", "name": "Memcpy DtoD", "ts": 13.0, "dur": 1.0, "args": {}},
        {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 1.0, "dur": 50.0},
        {"ph": "M", "name": "process_name", "args": {"name": "python"}},
    ]}
    spans = spans_from_chrome_trace(trace)
    assert [(s.name, s.start_ns, s.end_ns, s.grid) for s in spans] == [
        ("_row_kernel", 10500, 12750, (768, 1, 1)), ("Memcpy DtoD", 13000, 14000, ())]


def test_a_cpu_profile_has_no_device_spans():
    import torch
    from torch.profiler import ProfilerActivity, profile

    from helix_core.bench.timeline import spans_from_profiler

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        torch.ones(8).sum()
    assert spans_from_profiler(prof) == []
