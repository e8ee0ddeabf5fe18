"""Every rank's decode-step metrics, taken from the engine's profiler hooks.

Engine.decode calls its profiler's begin_step / end_step on every rank (followers too, whose loop
lives in helix_core.group), so wrapping the phase profiler is where each shard counts and times
its own decode steps. Launched steps (Engine.decode_launch, which the scheduler uses) overlap on
the device; for them a step is timed as the host sees it, from the previous step's tokens (or
its launch, when none was in flight) to this step's.
"""

from __future__ import annotations

import time

from services.metrics import DecodePhaseProfiler


class StepMetricsProfiler:
    """A DecodePhaseProfiler that also feeds helix_decode_steps_total and helix_decode_step_seconds."""

    def __init__(self, phases: DecodePhaseProfiler, metrics):
        self._phases = phases
        self._metrics = metrics
        self._started_s = 0.0

    def begin_step(self, profile: bool | None = None) -> bool:
        self._started_s = time.perf_counter()
        return self._phases.begin_step(profile=profile)

    def phase(self, name: str):
        return self._phases.phase(name)

    def end_step(self) -> dict[str, float]:
        totals = self._phases.end_step()
        self._metrics.decode_step.observe(time.perf_counter() - self._started_s)
        self._metrics.decode_steps.inc()
        return totals
