"""A real Prometheus scrapes a running `helix serve` cluster while a client generates and some
requests fail on purpose; then every PromQL query of the Grafana dashboard is evaluated through
Prometheus's HTTP API and must return data, name only metrics the service exports, and the TTL
quantiles must agree with the token-to-token latencies the client measured.

Everything listens on 127.0.0.1 and is stopped at the end; Prometheus is Debian's package
(tests/ci_deps.sh installs it).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "k8s" / "tools"))
import dashboard_queries as dq  # k8s/tools/dashboard_queries.py
from testdeps import need_binary

INSTANCE = "ci/helix"  # helix_instance, as the chart's ServiceMonitors set it ("<namespace>/<release>")
SCRAPE_INTERVAL_S = 1
RATE_WINDOW = "10m"  # longer than this module runs: every rate() covers all the traffic
GOOD_REQUESTS, BAD_EVERY, WORKERS = 30, 5, 3  # every 5th request is refused on purpose
MAX_NEW_TOKENS = 20
VOCAB = 256  # the tiny random Llama of `helix serve` without --model

pytestmark = pytest.mark.timeout(300)


# ---- processes -----------------------------------------------------------------------------------
def _stop(proc: subprocess.Popen, grace_s: float) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what this test started
            proc.wait(10)


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """`helix serve` on CPU: coordinator + 2 shards, every port chosen free, phases profiled on
    every step so the per-phase panel has data. Yields its ready file (where everything listens)."""
    work = tmp_path_factory.mktemp("helix-serve")
    ready, log = work / "ready.json", work / "serve.log"
    argv = [
        sys.executable,
        "-m",
        "services.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--metrics-port",
        "0",
        "--shard-port",
        "0",
        "--shard-metrics-port",
        "0",
        "--threads-per-shard",
        "1",
        "--profile-every",
        "1",
        "--ready-file",
        str(ready),
    ]
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 150
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"helix serve did not become ready (exit {proc.poll()}):\n{_tail(log)}")
            time.sleep(0.2)
        yield json.loads(ready.read_text())
    finally:
        _stop(proc, grace_s=40)


class Prometheus:
    def __init__(self, url: str):
        self.url = url

    def get(self, path: str, **params) -> object:
        query = urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        data = self.get("/api/v1/query", query=expr, **({"time": f"{at:.3f}"} if at else {}))
        assert data["resultType"] == "vector", (expr, data["resultType"])
        return data["result"]

    def scalar(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, expected: float, timeout_s: float) -> float | None:
        deadline = time.monotonic() + timeout_s
        while (value := self.scalar(expr)) != expected and time.monotonic() < deadline:
            time.sleep(0.5)
        return value


@pytest.fixture(scope="module")
def prometheus(cluster, tmp_path_factory):
    from services.ports import free_port

    binary = need_binary("prometheus")
    work = tmp_path_factory.mktemp("prometheus")
    labels = {"helix_instance": INSTANCE}
    shard_targets = [f"127.0.0.1:{shard['metrics_port']}" for shard in cluster["shards"]]
    config = {
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "scrape_timeout": f"{SCRAPE_INTERVAL_S}s"},
        "scrape_configs": [
            {
                "job_name": "helix-coordinator",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{cluster['coordinator_metrics_port']}"], "labels": labels}
                ],
            },
            {"job_name": "helix-shard", "static_configs": [{"targets": shard_targets, "labels": labels}]},
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port, log = free_port(), work / "prometheus.log"
    argv = [
        binary,
        f"--config.file={work / 'prometheus.yml'}",
        f"--storage.tsdb.path={work / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Prometheus(f"http://127.0.0.1:{port}")
    try:
        targets = 1 + len(shard_targets)
        deadline = time.monotonic() + 60
        while True:  # ready, and every target scraped once: the counters start from a sample at 0
            try:
                if server.scalar(f'sum(up{{helix_instance="{INSTANCE}"}})') == targets:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"prometheus did not scrape the {targets} targets (exit {proc.poll()}):\n{_tail(log)}"
                )
            time.sleep(0.3)
        yield server
    finally:
        _stop(proc, grace_s=15)


# ---- traffic -------------------------------------------------------------------------------------
def _request(coordinator: str, i: int) -> tuple[str, list[float]]:
    """One request: ("ok", its token-to-token latencies as the client saw them) or (error code, [])."""
    from services.client import HelixClient, InvalidArgument

    with HelixClient(coordinator, timeout_s=60) as client:
        if i % BAD_EVERY == BAD_EVERY - 1:  # refused on purpose, two ways, before any token
            bad = (
                {"prompt_token_ids": [VOCAB + 7]}
                if i % 2
                else {"prompt_token_ids": [1, 2], "max_new_tokens": 0}
            )
            try:
                client.generate(**{"max_new_tokens": MAX_NEW_TOKENS, **bad})
            except InvalidArgument:
                return "INVALID_ARGUMENT", []
            pytest.fail(f"request {i} ({bad}) was not refused")
        prompt = [1 + (i * 7 + k) % (VOCAB - 2) for k in range(4 + i % 20)]
        result = client.generate(prompt, max_new_tokens=MAX_NEW_TOKENS)
        return "ok", list(result.ttl_s)


@pytest.fixture(scope="module")
def traffic(cluster, prometheus):
    total = GOOD_REQUESTS + GOOD_REQUESTS // (BAD_EVERY - 1)
    with ThreadPoolExecutor(WORKERS) as pool:
        outcomes = list(pool.map(lambda i: _request(cluster["coordinator"], i), range(total)))
    ttls = [ttl for code, latencies in outcomes if code == "ok" for ttl in latencies]
    refused = sum(code == "INVALID_ARGUMENT" for code, _ in outcomes)
    # Wait until Prometheus has scraped the final state, then one more round for the shards.
    sel = f'{{helix_instance="{INSTANCE}"}}'
    seen = prometheus.wait_for(f"sum(helix_requests_total{sel})", total, timeout_s=30)
    assert seen == total, f"Prometheus counts {seen} requests, the client sent {total}"
    seen = prometheus.wait_for(
        f"sum(helix_token_to_token_latency_seconds_count{sel})", len(ttls), timeout_s=15
    )
    assert seen == len(ttls), (
        f"Prometheus counts {seen} token-to-token latencies, the client measured {len(ttls)}"
    )
    time.sleep(2 * SCRAPE_INTERVAL_S + 0.5)
    return {"ttls": ttls, "refused": refused, "total": total}


# ---- the dashboard against Prometheus ------------------------------------------------------------
def _finite(result: list[dict]) -> list[float]:
    return [v for v in (float(series["value"][1]) for series in result) if math.isfinite(v)]


def test_every_dashboard_query_returns_data(prometheus, traffic):
    dashboard = dq.load()
    metric, label = dq.label_values_query(dq.variable(dashboard, "instance"))
    instances = prometheus.get(f"/api/v1/label/{label}/values", **{"match[]": metric})
    assert INSTANCE in instances, f"the instance variable offers {instances}"
    exported = set(prometheus.get("/api/v1/label/__name__/values"))
    at, problems = time.time(), []
    for query in dq.queries(dashboard):
        unknown = dq.metric_names(query.expr) - exported
        if unknown:
            problems.append(
                f"{query.panel} [{query.ref}] names metrics the service does not export: {sorted(unknown)}"
            )
            continue
        result = prometheus.query(query.resolved(INSTANCE, RATE_WINDOW), at)
        if not _finite(result):
            problems.append(f"{query.panel} [{query.ref}] returned no data: {query.expr} -> {result}")
    assert not problems, "\n".join(problems)


def test_ttl_quantiles_agree_with_what_the_client_measured(prometheus, traffic):
    """Prometheus estimates a quantile inside one histogram bucket; the client's latencies are the
    server's plus gRPC delivery jitter. So the dashboard's p50/p90/p99 must fall in the bucket of
    the client's own quantile, or a neighbouring one, allowing the client's quantile a small rank
    window for the jitter (a wrong quantile or metric lands many buckets away)."""
    from services.metrics import LATENCY_BUCKETS_S

    def bucket(seconds: float) -> int:  # index of the histogram bucket holding `seconds`
        return next(
            (i for i, bound in enumerate(LATENCY_BUCKETS_S) if seconds <= bound), len(LATENCY_BUCKETS_S)
        )

    def client_quantile(q: float) -> float:  # nearest rank
        return ttls[min(len(ttls), max(1, math.ceil(q * len(ttls)))) - 1]

    ttls = sorted(traffic["ttls"])
    queries = {q.legend: q for q in dq.queries(dq.load()) if q.panel == "Token-to-token latency (TTL)"}
    report = []
    for quantile in (0.5, 0.9, 0.99):
        name = f"p{round(quantile * 100)}"
        (server,) = _finite(prometheus.query(queries[name].resolved(INSTANCE, RATE_WINDOW)))
        window = min(0.02, (1 - quantile) / 2)
        low, client, high = (client_quantile(quantile + d) for d in (-window, 0, window))
        report.append(
            f"{name}: client {client * 1e3:.2f} ms ({low * 1e3:.2f}..{high * 1e3:.2f}), "
            f"Prometheus {server * 1e3:.2f} ms"
        )
        assert bucket(low) - 1 <= bucket(server) <= bucket(high) + 1, "\n".join(report)
    print("\n".join(report))


def test_refused_requests_show_as_errors(prometheus, traffic):
    sel = f'helix_instance="{INSTANCE}"'
    assert prometheus.scalar(f'sum(helix_requests_total{{{sel},outcome="rejected"}})') == traffic["refused"]
    errors = prometheus.query(f'sum by (grpc_code) (helix_grpc_rpcs_total{{{sel},grpc_code!="OK"}})')
    assert {s["metric"]["grpc_code"]: float(s["value"][1]) for s in errors} == {
        "INVALID_ARGUMENT": traffic["refused"]
    }
