"""The objects the chart renders wire together into one working Helix instance.

For every CI values file: the shard processes add up to the plan's world size, every rank
0..N-1 is started exactly once (the pods' own shell wrapper and the real `helix` argument parser
compute it), all of them dial pod 0's DNS name, the coordinator dials rank 0, probes hit the gRPC
health service on a port the process listens on, and the Services, ServiceMonitors and
NetworkPolicies name the ports the containers open.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "k8s" / "tools"))
import render  # k8s/tools/render.py
from testdeps import need_module

VALUES_FILES = [None, *sorted(render.CI_VALUES_DIR.glob("*.yaml"))]
VALUES_IDS = ["defaults", *(path.stem for path in VALUES_FILES[1:])]
DOMAIN = "cluster.local"


class Release:
    """One render: its values (merged with the chart's defaults) and its objects."""

    def __init__(self, values_file):
        helm_python = need_module("helm_python")
        overrides = render.load_values(values_file)
        with helm_python.Chart.load(render.CHART_DIR) as chart:
            self.values = chart.merge_values(overrides)
        self.objects = render.objects(render.render(overrides))

    def all(self, kind: str, component: str | None = None) -> list[dict]:
        return [
            o
            for o in self.objects
            if o["kind"] == kind
            and (component is None or o["metadata"]["labels"].get("app.kubernetes.io/component") == component)
        ]

    def one(self, kind: str, component: str | None = None) -> dict:
        found = self.all(kind, component)
        assert len(found) == 1, f"expected one {kind} ({component}), found {len(found)}"
        return found[0]

    @property
    def shard_workload(self) -> dict:
        return self.one(self.values["shards"]["workload"])

    @property
    def shard_pods(self) -> int:
        workload = self.shard_workload
        if workload["kind"] == "StatefulSet":
            return workload["spec"]["replicas"]
        return workload["spec"]["leaderWorkerTemplate"]["size"]

    @property
    def shard_pod_template(self) -> dict:
        workload = self.shard_workload
        if workload["kind"] == "StatefulSet":
            return workload["spec"]["template"]
        return workload["spec"]["leaderWorkerTemplate"]["workerTemplate"]

    def pod_names(self) -> list[str]:
        """Pod names (= hostnames) as the workload controller makes them."""
        name = self.shard_workload["metadata"]["name"]
        if self.shard_workload["kind"] == "StatefulSet":
            return [f"{name}-{i}" for i in range(self.shard_pods)]
        return [f"{name}-0", *(f"{name}-0-{i}" for i in range(1, self.shard_pods))]  # LWS: leader, workers


@pytest.fixture(scope="module", params=VALUES_FILES, ids=VALUES_IDS)
def release(request) -> Release:
    return Release(request.param)


def container(pod_template: dict, name: str) -> dict:
    (found,) = [c for c in pod_template["spec"]["containers"] if c["name"] == name]
    return found


def ports_by_name(container_spec: dict) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container_spec.get("ports", [])}


def parse_cli(argv: list[str], env: dict[str, str] | None = None, monkeypatch=None):
    """The real `helix` argument parser (services/cli.py), with only `env` as HELIX_* variables
    (the parser reads them as defaults when it is built)."""
    from services import cli

    for name in [n for n in os.environ if n.startswith("HELIX_")]:
        monkeypatch.delenv(name)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    try:
        return cli._parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"`helix {' '.join(argv)}` is refused by the CLI's parser")


def run_wrapper(command: list[str], args: list[str], env: dict[str, str], tmp_path: Path) -> str:
    """Runs the container's command for real, with a stand-in `helix` that prints the pod index
    it was given, the way the kubelet would (command + args, the pod's environment)."""
    fake = tmp_path / "helix"
    fake.write_text('#!/bin/sh\nprintf "%s" "$HELIX_POD_INDEX"\n')
    fake.chmod(0o755)
    done = subprocess.run(
        command + args,
        env={"PATH": f"{tmp_path}:/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return done.stdout


# ---- the shard group -----------------------------------------------------------------------------
def test_shard_processes_add_up_to_the_plans_world_size(release, monkeypatch):
    from helix_core.plan import Plan

    world = Plan.parse(release.values["plan"]).world_size
    args = parse_cli(
        container(release.shard_pod_template, "shard")["args"], {"HELIX_POD_INDEX": "0"}, monkeypatch
    )
    assert args.local_ranks == release.values["shards"]["gpusPerPod"]
    assert release.shard_pods * args.local_ranks == world
    assert args.world_size == world and args.plan == release.values["plan"]


@pytest.mark.parametrize("pod_index_source", ["downward-api label", "hostname"])
def test_every_rank_is_started_exactly_once(release, pod_index_source, monkeypatch, tmp_path):
    shard = container(release.shard_pod_template, "shard")
    ranks = []
    for index, hostname in enumerate(release.pod_names()):
        label = str(index) if pod_index_source == "downward-api label" else ""  # "" : a cluster without it
        pod_index = run_wrapper(
            shard["command"], shard["args"], {"HOSTNAME": hostname, "HELIX_POD_INDEX": label}, tmp_path
        )
        args = parse_cli(shard["args"], {"HELIX_POD_INDEX": pod_index}, monkeypatch)
        assert args.rank is None and args.pod_index == index
        ranks += [
            args.pod_index * args.local_ranks + j for j in range(args.local_ranks)
        ]  # as services/cli.py
    assert sorted(ranks) == list(range(args.world_size))


def test_pod_index_comes_from_the_workloads_own_label(release):
    env = {e["name"]: e for e in container(release.shard_pod_template, "shard")["env"]}
    label = {
        "StatefulSet": "apps.kubernetes.io/pod-index",
        "LeaderWorkerSet": "leaderworkerset.sigs.k8s.io/worker-index",
    }[release.shard_workload["kind"]]
    assert env["HELIX_POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == f"metadata.labels['{label}']"


def test_every_rank_dials_pod_0s_dns_name(release, monkeypatch):
    workload, service = release.shard_workload, release.one("Service", "shard")
    namespace = render.NAMESPACE
    if workload["kind"] == "StatefulSet":
        assert workload["spec"]["serviceName"] == service["metadata"]["name"]
        assert workload["spec"]["podManagementPolicy"] == "Parallel"
    else:  # LeaderWorkerSet names its pods' subdomain after itself, and adopts a Service of that name
        assert workload["metadata"]["name"] == service["metadata"]["name"]
    shard = container(release.shard_pod_template, "shard")
    args = parse_cli(shard["args"], {"HELIX_POD_INDEX": "0"}, monkeypatch)
    host, port = args.rendezvous.rsplit(":", 1)
    assert host == f"{release.pod_names()[0]}.{service['metadata']['name']}.{namespace}.svc.{DOMAIN}"
    assert int(port) == ports_by_name(shard)["rendezvous"] == release.values["shards"]["ports"]["rendezvous"]
    assert {"name": "rendezvous", "port": int(port)}.items() <= service_port(service, "rendezvous").items()


def test_headless_service_publishes_pods_before_they_are_ready(release):
    service = release.one("Service", "shard")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"].items() <= release.shard_pod_template["metadata"]["labels"].items()


def test_shard_ports_follow_the_cli_flags(release, monkeypatch):
    shard = container(release.shard_pod_template, "shard")
    args = parse_cli(shard["args"], {"HELIX_POD_INDEX": "0"}, monkeypatch)
    ports = ports_by_name(shard)
    for j in range(
        args.local_ranks
    ):  # services/cli.py: local rank j listens on --port + j, --metrics-port + j
        assert ports[f"grpc-{j}"] == args.port + j
        if release.values["metrics"]["enabled"]:
            assert ports[f"metrics-{j}"] == args.metrics_port + j
    if not release.values["metrics"]["enabled"]:
        assert args.no_metrics and not any(name.startswith("metrics") for name in ports)


ENGINE_FLAGS = {
    "kvPages": "kv_pages",
    "pageSize": "page_size",
    "stageSize": "stage_size",
    "prefillChunk": "prefill_chunk",
    "hopbPieces": "hopb_pieces",
    "allReduce": "all_reduce",
    "exchange": "exchange",
    "smallLinear": "small_linear",
    "oProjection": "o_projection",
    "maxBatchSize": "max_batch_size",
    "profileEvery": "profile_every",
    "collectiveTimeoutS": "collective_timeout_s",
    "joinTimeoutS": "join_timeout_s",
    "drainGraceS": "drain_grace_s",
}


def test_engine_values_reach_the_shard_flags(release, monkeypatch):
    shard = container(release.shard_pod_template, "shard")
    args = parse_cli(shard["args"], {"HELIX_POD_INDEX": "0"}, monkeypatch)
    assert args.dtype == release.values["dtype"] and args.model == release.values["model"]["path"]
    assert args.model_name == release.values["model"]["name"]
    engine = release.values["engine"]
    for key, attribute in ENGINE_FLAGS.items():
        if engine.get(key) is not None:  # null: the CLI's own default
            assert getattr(args, attribute) == engine[key], key


def test_shard_pods_get_gpus_shared_memory_and_the_model(release, monkeypatch):
    pod = release.shard_pod_template["spec"]
    shard = container(release.shard_pod_template, "shard")
    args = parse_cli(shard["args"], {"HELIX_POD_INDEX": "0"}, monkeypatch)
    gpus = shard["resources"].get("limits", {}).get(release.values["shards"]["gpuResource"])
    assert args.device == release.values["shards"]["device"]
    assert gpus == (args.local_ranks if args.device == "cuda" else None)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in shard["volumeMounts"]}
    assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"]["medium"] == "Memory"
    model = volumes[mounts[args.model]["name"]]
    assert mounts[args.model]["readOnly"] is True
    if release.values["model"]["source"] == "pvc":
        assert model["persistentVolumeClaim"]["claimName"] == release.values["model"]["pvc"]["claimName"]
    else:
        assert model["hostPath"]["path"] == release.values["model"]["hostPath"]["path"]


def test_nccl_settings_reach_the_shards_as_environment(release):
    env = {e["name"]: e.get("value") for e in container(release.shard_pod_template, "shard")["env"]}
    nccl = release.values["nccl"]
    if release.values["shards"]["device"] != "cuda":
        assert not any(name.startswith("NCCL_") for name in env)
        return
    assert env["NCCL_IB_DISABLE"] == ("0" if nccl["ib"]["enabled"] else "1")
    expected = {
        "NCCL_SOCKET_IFNAME": nccl["socketIfname"],
        "GLOO_SOCKET_IFNAME": nccl["socketIfname"],
        "NCCL_IB_HCA": nccl["ib"]["hca"],
        "NCCL_DEBUG": nccl["debug"],
        "NCCL_DEBUG_SUBSYS": nccl["debugSubsys"],
        "NCCL_IB_GID_INDEX": None if nccl["ib"].get("gidIndex") is None else str(nccl["ib"]["gidIndex"]),
        **{k: str(v) for k, v in nccl["extraEnv"].items()},
    }
    for name, value in expected.items():
        assert env.get(name) == (value or None), name


# ---- the coordinator -----------------------------------------------------------------------------
def test_coordinator_dials_shard_rank_0(release, monkeypatch):
    deployment = release.one("Deployment", "coordinator")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    coordinator = container(deployment["spec"]["template"], "coordinator")
    args = parse_cli(coordinator["command"][1:] + coordinator["args"], monkeypatch=monkeypatch)
    shard = parse_cli(
        container(release.shard_pod_template, "shard")["args"], {"HELIX_POD_INDEX": "0"}, monkeypatch
    )
    host, port = args.shard_address.rsplit(":", 1)
    assert host == shard.rendezvous.rsplit(":", 1)[0]  # pod 0, where rank 0 (local rank 0) listens
    assert int(port) == shard.port
    ports = ports_by_name(coordinator)
    assert ports["grpc"] == args.port
    assert (
        (ports.get("metrics") == args.metrics_port)
        if release.values["metrics"]["enabled"]
        else args.no_metrics
    )


def test_probes_ask_the_grpc_health_service_of_the_right_port(release):
    from services.proto_gen.helix.v1 import coordinator_pb2, shard_pb2

    services = {
        "coordinator": coordinator_pb2.DESCRIPTOR.services_by_name["Coordinator"].full_name,
        "shard": shard_pb2.DESCRIPTOR.services_by_name["Shard"].full_name,
    }
    templates = {
        "coordinator": release.one("Deployment", "coordinator")["spec"]["template"],
        "shard": release.shard_pod_template,
    }
    for name, template in templates.items():
        spec = container(template, name)
        first_grpc_port = ports_by_name(spec)["grpc" if name == "coordinator" else "grpc-0"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert spec[probe]["grpc"] == {"port": first_grpc_port, "service": services[name]}, (name, probe)


# ---- Services, ServiceMonitors, NetworkPolicies --------------------------------------------------
def service_port(service: dict, name: str) -> dict:
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == name]
    return port


def test_every_service_port_reaches_a_container_port(release):
    pods = [release.shard_pod_template, release.one("Deployment", "coordinator")["spec"]["template"]]
    for service in release.all("Service"):
        selected = [p for p in pods if service["spec"]["selector"].items() <= p["metadata"]["labels"].items()]
        assert len(selected) == 1, service["metadata"]["name"]
        opened = {}
        for spec in selected[0]["spec"]["containers"]:
            opened.update(ports_by_name(spec))
        for port in service["spec"]["ports"]:
            assert opened.get(port["targetPort"]) == port["port"], (service["metadata"]["name"], port)


def test_service_monitors_scrape_every_metrics_port(release):
    monitors = release.all("ServiceMonitor")
    if not (release.values["metrics"]["enabled"] and release.values["metrics"]["serviceMonitor"]["enabled"]):
        assert not monitors
        return
    assert len(monitors) == 2
    for monitor in monitors:
        (service,) = [
            s
            for s in release.all("Service")
            if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
        ]
        metrics_ports = {p["name"] for p in service["spec"]["ports"] if p["name"].startswith("metrics")}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} == metrics_ports
        for endpoint in monitor["spec"]["endpoints"]:  # the dashboard's instance variable selects on it
            (relabel,) = endpoint["relabelings"]
            assert relabel["targetLabel"] == "helix_instance"
            assert relabel["replacement"] == f"{render.NAMESPACE}/{render.RELEASE}"


def test_network_policy_opens_shards_to_each_other_only(release):
    policies = release.all("NetworkPolicy")
    if not release.values["networkPolicy"]["enabled"]:
        assert not policies
        return
    shard_labels = release.shard_pod_template["metadata"]["labels"]
    coordinator_labels = release.one("Deployment", "coordinator")["spec"]["template"]["metadata"]["labels"]
    (policy,) = [
        p for p in policies if p["spec"]["podSelector"]["matchLabels"].items() <= shard_labels.items()
    ]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    shard_ports = ports_by_name(container(release.shard_pod_template, "shard"))
    metrics_ports = {port for name, port in shard_ports.items() if name.startswith("metrics")}
    for rule in policy["spec"]["ingress"]:
        peers = rule.get("from", [])
        selects = [peer.get("podSelector", {}).get("matchLabels", {}) for peer in peers]
        if "ports" not in rule:  # any port: only for the shards of this very release (NCCL's ephemeral ports)
            assert selects == [policy["spec"]["podSelector"]["matchLabels"]]
            continue
        ports = {p["port"] for p in rule["ports"]}
        if not peers or any(
            "namespaceSelector" in peer for peer in peers
        ):  # outside the release: /metrics only
            assert ports == metrics_ports
        else:
            assert all(s.items() <= coordinator_labels.items() for s in selects)
            assert ports == {port for name, port in shard_ports.items() if name.startswith("grpc")}
    (front,) = [
        p for p in policies if p["spec"]["podSelector"]["matchLabels"].items() <= coordinator_labels.items()
    ]
    opened = {p["port"] for rule in front["spec"]["ingress"] for p in rule["ports"]}
    assert opened == set(
        ports_by_name(
            container(release.one("Deployment", "coordinator")["spec"]["template"], "coordinator")
        ).values()
    )


def test_dashboard_configmap_ships_the_dashboard_file(release):
    maps = [m for m in release.all("ConfigMap") if "helix.json" in m.get("data", {})]
    shipped = (
        release.values["metrics"]["enabled"] and release.values["metrics"]["grafanaDashboard"]["enabled"]
    )
    if not shipped:
        assert not maps
        return
    (configmap,) = maps
    assert (
        configmap["metadata"]["labels"].items()
        >= release.values["metrics"]["grafanaDashboard"]["labels"].items()
    )
    file = json.loads((render.CHART_DIR / "dashboards" / "helix.json").read_text())
    assert json.loads(configmap["data"]["helix.json"]) == file


def test_o_projection_value_reaches_the_shard_flag(tmp_path, monkeypatch):
    """engine.oProjection (no CI values file sets it: it matters for helix with tpa 1 on GPUs)."""
    values = tmp_path / "replicated-o.yaml"
    values.write_text('plan: "helix:kvp=8,tpa=1"\nshards:\n  gpusPerPod: 8\nengine:\n  oProjection: replicated\n')
    release = Release(values)
    args = parse_cli(container(release.shard_pod_template, "shard")["args"], {"HELIX_POD_INDEX": "0"}, monkeypatch)
    assert args.o_projection == "replicated"
    assert "--o-projection" not in container(Release(None).shard_pod_template, "shard")["args"]  # null: no flag


def _shard_choices(dest: str) -> list | None:
    """The choices of `helix shard`'s flag that sets `dest` (None: a flag without choices)."""
    import argparse

    from services import cli

    (sub,) = [a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction)]
    (action,) = [a for a in sub.choices["shard"]._actions if a.dest == dest]
    return None if action.choices is None else list(action.choices)


def test_engine_value_enums_are_the_shard_flag_choices():
    """A choice added to a flag (e.g. --all-reduce nccl-window) must be one the chart's schema accepts, and
    the schema must offer nothing the flag refuses."""
    schema = json.loads((render.CHART_DIR / "values.schema.json").read_text())
    engine = schema["properties"]["engine"]["properties"]
    checked = 0
    for key, dest in ENGINE_FLAGS.items():
        enum = engine[key].get("enum")
        if enum is None:
            continue
        choices = _shard_choices(dest)
        assert [v for v in enum if v is not None and not isinstance(v, bool)] == choices, key
        # YAML 1.1 reads an unquoted on / off as true / false: the schema takes those too, for on / off
        assert all({True: "on", False: "off"}[v] in choices for v in enum if isinstance(v, bool)), key
        checked += 1
    assert checked >= 4  # allReduce, exchange, smallLinear, oProjection


def test_all_reduce_flag_offers_what_the_engine_takes():
    from helix_core.engine import ALL_REDUCE_CHOICES

    assert _shard_choices("all_reduce") == list(ALL_REDUCE_CHOICES)
