"""services/metrics.py: names, buckets, separate registries, the /metrics server, phase profiling."""

from __future__ import annotations

import re
import urllib.request

import prometheus_client
import pytest

from services.metrics import (
    DECODE_PHASES,
    LATENCY_BUCKETS_S,
    CoordinatorMetrics,
    DecodePhaseProfiler,
    ShardMetrics,
    start_metrics_server,
)

pytestmark = pytest.mark.timeout(60)

UNITS = ("seconds", "tokens", "pages", "requests", "steps", "rpcs")


def _helix_families(registry):
    return {family.name: family for family in registry.collect() if family.name.startswith("helix_")}


@pytest.mark.parametrize("make", [CoordinatorMetrics.create, lambda: ShardMetrics.create(shard_rank=2)])
def test_names_are_prefixed_and_end_with_their_unit(make):
    families = _helix_families(make().registry)
    assert families
    for name in families:  # counters' family names exclude the _total suffix
        assert re.fullmatch(r"helix_[a-z0-9_]+", name) and name.endswith(UNITS), name


def test_each_role_has_its_own_registry():
    first, second = ShardMetrics.create(shard_rank=0), ShardMetrics.create(shard_rank=1)
    coordinator = CoordinatorMetrics.create()  # no "Duplicated timeseries" despite shared names
    first.kv_cache_used_pages.set(7)
    assert first.registry.get_sample_value("helix_kv_cache_used_pages", {"shard_rank": "0"}) == 7
    assert second.registry.get_sample_value("helix_kv_cache_used_pages", {"shard_rank": "0"}) is None
    assert coordinator.registry.get_sample_value("helix_kv_cache_used_pages", {"shard_rank": "0"}) is None


def test_latency_buckets_span_half_a_millisecond_to_a_minute():
    assert LATENCY_BUCKETS_S[0] == 0.0005 and LATENCY_BUCKETS_S[-1] == 60.0
    assert list(LATENCY_BUCKETS_S) == sorted(set(LATENCY_BUCKETS_S))
    metrics = CoordinatorMetrics.create()
    metrics.token_to_token_latency.observe(0.0007)
    bucket = metrics.registry.get_sample_value(
        "helix_token_to_token_latency_seconds_bucket", {"le": "0.00075"}
    )
    assert bucket == 1


def test_request_outcomes_are_exported_from_the_start_and_checked():
    metrics = CoordinatorMetrics.create()
    assert metrics.registry.get_sample_value("helix_requests_total", {"outcome": "cancelled"}) == 0
    metrics.count_request("stop_token")
    assert metrics.registry.get_sample_value("helix_requests_total", {"outcome": "stop_token"}) == 1
    with pytest.raises(ValueError, match="unknown request outcome"):
        metrics.count_request("stopped")


def test_metrics_server_serves_the_registry():
    metrics = ShardMetrics.create(shard_rank=3)
    metrics.kv_cache_free_pages.set(42)
    server = start_metrics_server(0, metrics.registry, addr="127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
            body = response.read().decode()
    finally:
        server.close()
    assert 'helix_kv_cache_free_pages{shard_rank="3"} 42.0' in body
    assert 'helix_decode_phase_seconds_count{phase="attention",shard_rank="3"} 0.0' in body


class _FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _profiler(every_n_steps):
    metrics = ShardMetrics.create(shard_rank=0, include_process_metrics=False)
    clock, synchronizations = _FakeClock(), []
    profiler = DecodePhaseProfiler(
        metrics.decode_phase,
        every_n_steps,
        synchronize=lambda: synchronizations.append(clock.now),
        clock=clock,
    )
    return metrics, profiler, clock, synchronizations


def _step(profiler, clock, profile=None):
    profiled = profiler.begin_step(profile)
    for _layer in range(2):
        with profiler.phase("attention"):
            clock.now += 0.003
        with profiler.phase("all_to_all"):
            clock.now += 0.001
    return profiled, profiler.end_step()


def test_profiler_samples_one_step_in_n_and_sums_phases_over_layers():
    metrics, profiler, clock, synchronizations = _profiler(every_n_steps=3)
    outcomes = [_step(profiler, clock) for _ in range(6)]

    assert [profiled for profiled, _ in outcomes] == [True, False, False, True, False, False]
    assert outcomes[0][1] == pytest.approx({"attention": 0.006, "all_to_all": 0.002})
    assert outcomes[1][1] == {}
    count = metrics.registry.get_sample_value(
        "helix_decode_phase_seconds_count", {"shard_rank": "0", "phase": "attention"}
    )
    assert count == 2  # two profiled steps, one observation each
    assert len(synchronizations) == 2 * (1 + 2 * 4)  # step start + both ends of 4 phases, per profiled step


def test_profiler_follows_an_explicit_flag_and_can_be_switched():
    _, profiler, clock, _ = _profiler(every_n_steps=0)
    assert _step(profiler, clock)[0] is False
    assert _step(profiler, clock, profile=True)[0] is True  # the flag rank 0 broadcast
    assert profiler.set_every_n_steps(1) == 0
    assert _step(profiler, clock)[0] is True
    with pytest.raises(ValueError):
        profiler.set_every_n_steps(-1)


def test_profiler_rejects_unknown_and_nested_phases():
    _, profiler, _, _ = _profiler(every_n_steps=1)
    profiler.begin_step()
    with pytest.raises(KeyError, match="unknown decode phase"):
        profiler.phase("atention")
    nested = pytest.raises(RuntimeError, match="must not nest")
    with nested, profiler.phase("ffn"), profiler.phase("all_reduce"):
        pass
    assert set(DECODE_PHASES) >= {"attention", "all_to_all", "all_reduce", "ffn", "sampling"}


def test_phase_histograms_are_histograms():
    metrics = ShardMetrics.create(shard_rank=0, include_process_metrics=False)
    assert set(metrics.decode_phase) == set(DECODE_PHASES)
    assert all(
        isinstance(histogram, prometheus_client.Histogram) for histogram in metrics.decode_phase.values()
    )
