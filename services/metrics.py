"""Every Prometheus metric of the Helix processes, defined in one place, and their /metrics server.

Each process role builds its own set on its own CollectorRegistry (never prometheus_client's
global one), so that tests and single-process demos can hold a coordinator and several shards
side by side. Names start with helix_ and end with their unit (_seconds, _tokens, _pages,
_requests, _steps, _rpcs; counters add _total).

    metrics = ShardMetrics.create(shard_rank=0)
    server = start_metrics_server(9400, metrics.registry)

DecodePhaseProfiler times the phases of one decode step in N (sampled profiling) into
helix_decode_phase_seconds.
"""

from __future__ import annotations

import contextlib
import socketserver
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    make_wsgi_app,
)

from services.ports import port_unavailable

# Latencies from 0.5 ms (one fast decode step) to 60 s (a million-token prefill), finest where
# token-to-token latencies live (a few ms to a few tens of ms).
LATENCY_BUCKETS_S = (
    0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008,
    0.01, 0.0125, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1,
    0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0,
    7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
)  # fmt: skip
# One phase's share of one decode step: from tens of microseconds (sampling, a small all-reduce)
# to a second.
PHASE_BUCKETS_S = (
    0.00002, 0.00005, 0.0001, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.0015, 0.002,
    0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0,
)  # fmt: skip

# How a Generate request ended: the finish reasons, then the abnormal ends.
REQUEST_OUTCOMES = (
    "length", "stop_token", "cancelled", "max_context",
    "rejected", "deadline_exceeded", "client_gone", "error",
)  # fmt: skip
# Phases of a Helix decode step, each summed over the layers of one step.
DECODE_PHASES = ("attention", "all_to_all", "all_reduce", "ffn", "sampling")


def _new_registry(include_process_metrics: bool) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    if include_process_metrics:  # CPU, memory, file descriptors, GC: what the default registry has
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


def _rpc_counter(registry: CollectorRegistry) -> Counter:
    return Counter(
        "helix_grpc_rpcs",
        "gRPC calls this server completed, by method and status code.",
        ["grpc_method", "grpc_code"],
        registry=registry,
    )


@dataclass(frozen=True)
class CoordinatorMetrics:
    """The coordinator's metrics: what clients experience, request by request."""

    registry: CollectorRegistry
    time_to_first_token: Histogram
    token_to_token_latency: Histogram
    request_latency: Histogram
    queue_time: Histogram
    requests: Counter  # label: outcome (REQUEST_OUTCOMES); use count_request()
    prompt_tokens: Counter
    generated_tokens: Counter
    in_flight_requests: Gauge
    rpcs: Counter  # labels: grpc_method, grpc_code

    @classmethod
    def create(cls, include_process_metrics: bool = True) -> CoordinatorMetrics:
        registry = _new_registry(include_process_metrics)

        def latency(name: str, documentation: str) -> Histogram:
            return Histogram(name, documentation, buckets=LATENCY_BUCKETS_S, registry=registry)

        requests = Counter(
            "helix_requests", "Generate requests ended, by outcome.", ["outcome"], registry=registry
        )
        for outcome in REQUEST_OUTCOMES:  # export every outcome from the start, so rate() sees zeros
            requests.labels(outcome=outcome)
        return cls(
            registry=registry,
            time_to_first_token=latency(
                "helix_time_to_first_token_seconds", "From receiving a request to sending its first token."
            ),
            token_to_token_latency=latency(
                "helix_token_to_token_latency_seconds", "Between consecutive tokens of one request (TTL)."
            ),
            request_latency=latency(
                "helix_request_latency_seconds", "From receiving a request to sending its last event."
            ),
            queue_time=latency("helix_queue_time_seconds", "Requests' wait for a batch slot and KV pages."),
            requests=requests,
            prompt_tokens=Counter("helix_prompt_tokens", "Prompt tokens admitted.", registry=registry),
            generated_tokens=Counter(
                "helix_generated_tokens", "Tokens generated and sent.", registry=registry
            ),
            in_flight_requests=Gauge(
                "helix_in_flight_requests", "Generate streams open (queued or decoding).", registry=registry
            ),
            rpcs=_rpc_counter(registry),
        )

    def count_request(self, outcome: str) -> None:
        """Counts one ended request; outcome must be one of REQUEST_OUTCOMES."""
        if outcome not in REQUEST_OUTCOMES:
            raise ValueError(f"unknown request outcome {outcome!r}; expected one of {REQUEST_OUTCOMES}")
        self.requests.labels(outcome=outcome).inc()


@dataclass(frozen=True)
class ShardMetrics:
    """One shard's metrics, labelled with its shard_rank (all but rpcs). The scheduler gauges
    (running, waiting, batch size) are only updated by rank 0, which runs the scheduler."""

    registry: CollectorRegistry
    shard_rank: int
    kv_cache_used_pages: Gauge
    kv_cache_free_pages: Gauge
    running_requests: Gauge
    waiting_requests: Gauge
    batch_size: Gauge
    decode_step: Histogram
    prefill_chunk: Histogram
    decode_steps: Counter
    prefill_tokens: Counter
    decode_phase: Mapping[str, Histogram]  # phase name (DECODE_PHASES) -> its histogram
    rpcs: Counter  # labels: grpc_method, grpc_code

    @classmethod
    def create(cls, shard_rank: int, include_process_metrics: bool = True) -> ShardMetrics:
        registry = _new_registry(include_process_metrics)
        rank = str(shard_rank)

        def gauge(name: str, documentation: str) -> Gauge:
            return Gauge(name, documentation, ["shard_rank"], registry=registry).labels(shard_rank=rank)

        def counter(name: str, documentation: str) -> Counter:
            return Counter(name, documentation, ["shard_rank"], registry=registry).labels(shard_rank=rank)

        def latency(name: str, documentation: str) -> Histogram:
            return Histogram(
                name, documentation, ["shard_rank"], buckets=LATENCY_BUCKETS_S, registry=registry
            ).labels(shard_rank=rank)

        phase_histogram = Histogram(
            "helix_decode_phase_seconds",
            "Time of one phase within one decode step, summed over layers; sampled steps only.",
            ["shard_rank", "phase"],
            buckets=PHASE_BUCKETS_S,
            registry=registry,
        )
        return cls(
            registry=registry,
            shard_rank=shard_rank,
            kv_cache_used_pages=gauge("helix_kv_cache_used_pages", "KV pages holding tokens on this rank."),
            kv_cache_free_pages=gauge("helix_kv_cache_free_pages", "KV pages free on this rank."),
            running_requests=gauge("helix_running_requests", "Requests in the decode batch (rank 0)."),
            waiting_requests=gauge("helix_waiting_requests", "Requests waiting for admission (rank 0)."),
            batch_size=gauge("helix_batch_size_requests", "Requests decoded in the last step (rank 0)."),
            decode_step=latency("helix_decode_step_seconds", "One decode step of the whole batch."),
            prefill_chunk=latency("helix_prefill_chunk_seconds", "One prefill chunk of one request."),
            decode_steps=counter("helix_decode_steps", "Decode steps run."),
            prefill_tokens=counter("helix_prefill_tokens", "Prompt tokens prefilled."),
            decode_phase={
                phase: phase_histogram.labels(shard_rank=rank, phase=phase) for phase in DECODE_PHASES
            },
            rpcs=_rpc_counter(registry),
        )


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper must not keep the process alive


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # a scrape every few seconds would flood the logs


class MetricsServer:
    """A running /metrics HTTP endpoint; `port` is the bound port (useful after asking for 0)."""

    def __init__(self, httpd: WSGIServer) -> None:
        self._httpd = httpd
        self.port: int = httpd.server_port
        self._thread = threading.Thread(target=httpd.serve_forever, name="helix-metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def start_metrics_server(
    port: int, registry: CollectorRegistry, addr: str = "0.0.0.0", flag: str = "--metrics-port"
) -> MetricsServer:
    """Serves `registry` over HTTP (any path, /metrics by convention) from a daemon thread.
    A port it cannot bind raises PortUnavailable, which names `flag`."""
    try:
        httpd = make_server(
            addr, port, make_wsgi_app(registry), _ThreadingWSGIServer, handler_class=_QuietHandler
        )
    except OSError as error:
        reason = error.strerror or str(error)
        off = ", or turn /metrics off (--no-metrics)"
        raise port_unavailable(addr, port, "/metrics", flag, reason, also=off) from None
    return MetricsServer(httpd)


class DecodePhaseProfiler:
    """Times the phases of one decode step in every `every_n_steps` (0: never).

        profiled = profiler.begin_step()          # rank 0 decides, and broadcasts the flag;
        profiler.begin_step(profile=flag)         # the other ranks follow it
        with profiler.phase("attention"): ...
        with profiler.phase("all_to_all"): ...
        profiler.end_step()                       # observes each phase's total for the step

    A phase entered several times in a step (once per layer) is summed. Phases must not nest.
    `synchronize` (e.g. torch.cuda.synchronize) is called at every phase boundary of a profiled
    step, so that host clocks measure device work; that makes profiled steps slower, which is
    why only one step in N is profiled. Unprofiled steps cost a dictionary lookup per phase.
    """

    def __init__(
        self,
        phase_histograms: Mapping[str, Histogram],
        every_n_steps: int = 0,
        synchronize: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._phase_histograms = phase_histograms
        self._synchronize = synchronize or (lambda: None)
        self._clock = clock
        self.every_n_steps = every_n_steps
        self._steps_begun = 0
        self._profiling = False
        self._open_phase: str | None = None
        self._totals_s: dict[str, float] = {}
        self._not_profiled = contextlib.nullcontext()

    def set_every_n_steps(self, every_n_steps: int) -> int:
        """Changes the sampling period (SetProfiling); returns the previous one."""
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps must be >= 0 (0 turns profiling off), got {every_n_steps}")
        previous, self.every_n_steps = self.every_n_steps, every_n_steps
        return previous

    def begin_step(self, profile: bool | None = None) -> bool:
        """Starts a step; profile=None decides by the step count. Returns whether it is profiled."""
        if profile is None:
            profile = self.every_n_steps > 0 and self._steps_begun % self.every_n_steps == 0
        self._steps_begun += 1
        self._profiling = profile
        self._totals_s = {}
        if profile:
            self._synchronize()  # so that the first phase does not absorb earlier queued work
        return profile

    def phase(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Context manager timing `name` (one of the histograms' phases) when the step is profiled."""
        if name not in self._phase_histograms:
            raise KeyError(f"unknown decode phase {name!r}; expected one of {sorted(self._phase_histograms)}")
        return self._timed(name) if self._profiling else self._not_profiled

    @contextlib.contextmanager
    def _timed(self, name: str) -> Iterator[None]:
        if self._open_phase is not None:
            raise RuntimeError(
                f"phase {name!r} entered inside phase {self._open_phase!r}: phases must not nest"
            )
        self._open_phase = name
        self._synchronize()
        started_s = self._clock()
        try:
            yield
        finally:
            self._synchronize()
            self._totals_s[name] = self._totals_s.get(name, 0.0) + self._clock() - started_s
            self._open_phase = None

    def end_step(self) -> dict[str, float]:
        """Ends the step; a profiled one records and returns its per-phase totals, in seconds."""
        totals_s, self._totals_s = self._totals_s, {}
        if self._profiling:
            for name, seconds in totals_s.items():
                self._phase_histograms[name].observe(seconds)
        self._profiling = False
        return totals_s
