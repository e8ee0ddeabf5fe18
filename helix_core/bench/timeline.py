"""Where a captured decode step's time goes, kernel by kernel, from a profiler's kernel timestamps.

Per-kernel durations mislead once kernels overlap: a kernel launched as a programmatic dependent
(PDL) starts while the one before it runs and waits, so its duration counts the wait. This table
charges each kernel the time from the previous kernel's end to its own end (in the order kernels
end), less the time inside it when no kernel ran at all (idle: launch gaps), which is charged to it
separately. Effective + idle over all kernels is the step's span. On one stream this is the time
the step waited on each kernel; where two streams run kernels at once (HOP-B) the split between the
concurrent kernels is arbitrary, the total still right. Kernels are grouped by name and grid, so the
projections of one kernel function (q/k/v, o, gate/up, down) get a row each.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass


@dataclass(frozen=True)
class KernelSpan:
    name: str
    start_ns: int
    end_ns: int
    grid: tuple[int, ...] = ()


@dataclass
class TimelineRow:
    key: str
    calls: int = 0
    effective_ns: int = 0
    idle_before_ns: int = 0
    duration_ns: int = 0  # the kernels' own durations, overlap included


def _idle_gaps(spans: list[KernelSpan]) -> list[tuple[int, int]]:
    """The intervals between the first start and the last end that no kernel covers."""
    gaps, covered_to = [], None
    for span in sorted(spans, key=lambda s: s.start_ns):
        if covered_to is not None and span.start_ns > covered_to:
            gaps.append((covered_to, span.start_ns))
        covered_to = span.end_ns if covered_to is None else max(covered_to, span.end_ns)
    return gaps


def critical_path(spans: list[KernelSpan]) -> tuple[list[TimelineRow], int]:
    """(rows sorted by effective time, the span from the first start to the last end) of these kernels."""
    if not spans:
        return [], 0
    gaps = _idle_gaps(spans)
    rows: dict[str, TimelineRow] = {}
    previous_end = min(s.start_ns for s in spans)
    for span in sorted(spans, key=lambda s: (s.end_ns, s.start_ns)):
        key = span.name + (f" grid={'x'.join(map(str, span.grid))}" if span.grid else "")
        row = rows.setdefault(key, TimelineRow(key))
        charged = max(0, span.end_ns - previous_end)
        idle = sum(max(0, min(b, span.end_ns) - max(a, previous_end)) for a, b in gaps)
        row.calls += 1
        row.effective_ns += charged - idle
        row.idle_before_ns += idle
        row.duration_ns += span.end_ns - span.start_ns
        previous_end = max(previous_end, span.end_ns)
    total = max(s.end_ns for s in spans) - min(s.start_ns for s in spans)
    return sorted(rows.values(), key=lambda r: -r.effective_ns), total


def format_table(rows: list[TimelineRow], total_ns: int, replays: int, title: str) -> str:
    """The rows per replay (one step), in microseconds."""
    per = max(1, replays)
    lines = [f"{title}: {replays} replays; per step: span {total_ns / per / 1e3:.1f} us",
             f"{'effective us':>12s} {'idle us':>8s} {'own us':>8s} {'calls':>6s}  kernel"]
    for row in rows:
        lines.append(f"{row.effective_ns / per / 1e3:12.1f} {row.idle_before_ns / per / 1e3:8.1f} "
                     f"{row.duration_ns / per / 1e3:8.1f} {row.calls // per:6d}  {row.key[:150]}")
    effective = sum(r.effective_ns for r in rows) / per / 1e3
    idle = sum(r.idle_before_ns for r in rows) / per / 1e3
    lines.append(f"{effective:12.1f} {idle:8.1f} {'':8s} {'':6s}  (all kernels: effective + idle = span)")
    return "\n".join(lines) + "\n"


_DEVICE_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")


def spans_from_chrome_trace(trace: dict) -> list[KernelSpan]:
    """The device activities (kernels, copies, sets) of a torch.profiler Chrome trace, with each kernel's
    grid (the trace's args["grid"]); times are microseconds there, nanoseconds here."""
    spans = []
    for event in trace.get("traceEvents", []):
        if event.get("ph") != "X" or event.get("cat") not in _DEVICE_CATEGORIES:
            continue
        start = round(float(event["ts"]) * 1000)
        grid = tuple(int(v) for v in (event.get("args") or {}).get("grid", ()))
        spans.append(KernelSpan(event["name"], start, start + round(float(event.get("dur", 0)) * 1000), grid))
    return spans


def spans_from_profiler(prof) -> list[KernelSpan]:
    """The device activities a finished torch.profiler run recorded (through its Chrome trace)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as handle:
            return spans_from_chrome_trace(json.load(handle))
