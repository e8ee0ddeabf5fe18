"""The Grafana dashboard (k8s/helix/dashboards/helix.json), offline: its shape, its variables, the
panels the issue asks for, and every metric its queries name is one services/metrics.py exports.
tests/test_prometheus_scrape.py then runs every query against a real Prometheus."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "k8s" / "tools"))
import dashboard_queries as dq  # k8s/tools/dashboard_queries.py

INSTANCE_MATCHER = 'helix_instance=~"$instance"'
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return dq.load()


def exported_metric_names() -> set[str]:
    """The series names a coordinator and a shard expose, from services/metrics.py itself."""
    from services.metrics import CoordinatorMetrics, ShardMetrics

    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    names = set()
    for metrics in (
        CoordinatorMetrics.create(include_process_metrics=False),
        ShardMetrics.create(shard_rank=0),
    ):
        for family in metrics.registry.collect():
            names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return names


def unknown_metrics(queries: list[dq.Query], exported: set[str]) -> list[str]:
    return [
        f"{q.panel} [{q.ref}]: {name}" for q in queries for name in sorted(dq.metric_names(q.expr) - exported)
    ]


def test_every_query_names_only_exported_metrics(dashboard):
    assert not unknown_metrics(dq.queries(dashboard), exported_metric_names())


def test_an_unexported_metric_is_caught():
    """The check above is not vacuous: a typo'd metric name is reported."""
    typo = dq.Query(
        "TTL",
        "A",
        "p50",
        "histogram_quantile(0.5, sum by (le) (rate("
        'helix_token_to_token_latency_bucket{helix_instance=~"$instance"}[$__rate_interval])))',
    )
    assert unknown_metrics([typo], exported_metric_names()) == [
        "TTL [A]: helix_token_to_token_latency_bucket"
    ]


def test_every_metric_selector_is_scoped_to_the_instance_variable(dashboard):
    for query in dq.queries(dashboard):
        selectors = re.findall(r"\bhelix_[a-z0-9_]+\{([^}]*)\}", query.expr)
        assert selectors and len(selectors) == len(
            re.findall(r"\bhelix_[a-z0-9_]+(?=[{\[\s)])", query.expr)
        ), query
        assert all(INSTANCE_MATCHER in selector for selector in selectors), query


def test_templated_datasource_and_instance_variables(dashboard):
    datasource = dq.variable(dashboard, "datasource")
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    instance = dq.variable(dashboard, "instance")
    assert instance["type"] == "query" and instance["datasource"] == DATASOURCE
    assert dq.label_values_query(instance) == ("helix_requests_total", "helix_instance")
    assert instance["includeAll"] and instance["allValue"] == ".*"
    for panel in dq.panels(dashboard):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert all(target["datasource"] == DATASOURCE for target in panel["targets"]), panel["title"]


def test_the_panels_the_issue_asks_for(dashboard):
    by_title = {}
    for query in dq.queries(dashboard):
        by_title.setdefault(query.panel, []).append(query)
    ttl = by_title["Token-to-token latency (TTL)"]
    assert [q.legend for q in ttl] == ["p50", "p90", "p99"]
    assert [re.search(r"histogram_quantile\(([0-9.]+)", q.expr).group(1) for q in ttl] == [
        "0.5",
        "0.9",
        "0.99",
    ]
    assert [q.legend for q in by_title["Time to first token"]] == ["p50", "p90", "p99"]
    assert any("helix_generated_tokens_total" in q.expr for q in by_title["Tokens / s"])
    running = " ".join(q.expr for q in by_title["Requests running and waiting"])
    assert "helix_running_requests" in running and "helix_waiting_requests" in running
    assert "shard_rank" in by_title["KV pages used per shard"][0].expr
    assert "by (phase)" in by_title["Decode step time per phase"][0].expr
    assert "by (grpc_code)" in by_title["gRPC errors by status code"][0].expr


def test_the_phase_panel_covers_the_phases_the_shards_time():
    from services.metrics import DECODE_PHASES

    assert {"attention", "all_to_all", "all_reduce", "ffn"} <= set(DECODE_PHASES)


def test_layout_ids_and_grid(dashboard):
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 36 and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]] + [
        p["id"] for p in dq.panels(dashboard) if p not in dashboard["panels"]
    ]
    assert len(ids) == len(set(ids))
    cells = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
    for panel in dq.panels(dashboard):
        assert panel["targets"] and len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
