"""The Helm chart (k8s/helix) lints, renders with every CI values file, and every object it renders
is valid against the Kubernetes schemas (strict: an unknown or misspelled field fails).

Helm runs as a library (helm-python-sdk), the schemas ship inside kubernetes-validate, so all of
this is offline; tests/ci_deps.sh installs both.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "k8s" / "tools"))
import render  # k8s/tools/render.py
from testdeps import need_module

K8S_DIR = render.CHART_DIR.parent
VALUES_FILES = [None, *sorted(render.CI_VALUES_DIR.glob("*.yaml"))]
VALUES_IDS = ["defaults", *(path.stem for path in VALUES_FILES[1:])]
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas shipped.
KUBE_VERSIONS = ("1.27.0", "latest")
# What the issue asks the CI values files to cover.
REQUIRED_SCENARIOS = {"gpus-1", "gpus-8-one-node", "gpus-16-two-nodes", "pod-per-gpu", "metrics-off"}


@pytest.fixture(scope="module", params=VALUES_FILES, ids=VALUES_IDS)
def rendered(request) -> dict[str, str]:
    need_module("helm_python")
    return render.render(render.load_values(request.param))


def test_ci_values_cover_the_required_scenarios():
    assert REQUIRED_SCENARIOS <= {path.stem for path in VALUES_FILES[1:]}


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=VALUES_IDS)
def test_helm_lint_strict_passes(values_file):
    need_module("helm_python")
    report = render.lint(render.load_values(values_file), strict=True)
    problems = [m for m in report.get("messages") or [] if m["severity"] >= 2]  # 2: warning, 3: error
    assert not report.get("errors") and not problems, report


def test_helm_lint_reports_a_broken_chart_input():
    """The lint above is not vacuous: values the schema refuses are lint errors. (Helm's lint
    tolerates the templates' own `fail`; the render tests below cover those.)"""
    need_module("helm_python")
    report = render.lint({"plan": "helix:kvp=four"}, strict=True)
    assert report.get("errors") and any("/plan" in error for error in report["errors"]), report


def test_every_object_is_valid_against_the_kubernetes_schemas(rendered):
    kubernetes_validate = need_module("kubernetes_validate")
    for obj in render.objects(rendered):
        if obj["kind"] in CUSTOM_KINDS:
            CUSTOM_KINDS[obj["kind"]](obj)
            continue
        for version in KUBE_VERSIONS:
            version = kubernetes_validate.latest_version() if version == "latest" else version
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(
                    f"{obj['kind']}/{obj['metadata']['name']} is invalid for Kubernetes {version}: "
                    f"{error.message} at {'.'.join(map(str, error.absolute_path))}"
                )


def test_strict_validation_catches_an_unknown_field():
    kubernetes_validate = need_module("kubernetes_validate")
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"clusterIP": "None", "publishNotReadyAdresses": True},
    }  # misspelled on purpose
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, "1.30.0", strict=True)


def test_rendered_manifests_pass_yamllint(rendered):
    for template, text in rendered.items():
        if text.strip() and not template.endswith("NOTES.txt"):
            assert_yamllint_clean(text, template)


@pytest.mark.parametrize(
    "path",
    [render.CHART_DIR / "values.yaml", render.CHART_DIR / "Chart.yaml", *VALUES_FILES[1:]],
    ids=lambda path: path.name,
)
def test_chart_yaml_files_pass_yamllint(path):
    assert_yamllint_clean(path.read_text(), str(path))


@pytest.mark.parametrize(
    "bad_values, complaint",
    [
        ({"plan": "helix:kvp=two"}, "/plan"),
        ({"plan": "moe:n=4"}, "/plan"),
        ({"dtype": "int4"}, "/dtype"),
        ({"shards": {"gpusPerPod": 0}}, "gpusPerPod"),
        ({"shards": {"workload": "Deployment"}}, "workload"),
        ({"engine": {"kvPage": 100}}, "kvPage"),  # a typo of kvPages
        ({"model": {"source": "s3"}}, "source"),
        ({"plan": "helix:kvp=3,tpa=1"}, "not a multiple of shards.gpusPerPod"),
        ({"plan": "headslice:n=4"}, "needs n= and m="),
    ],
)
def test_bad_values_are_refused_with_a_message(bad_values, complaint):
    need_module("helm_python")
    with pytest.raises(Exception, match=r"(?s)" + complaint.replace(".", r"\.")):
        render.render(bad_values)


# ---- helpers -----------------------------------------------------------------------------------
def assert_yamllint_clean(text: str, where: str) -> None:
    need_module("yamllint")
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    config = YamlLintConfig(file=str(K8S_DIR / ".yamllint.yaml"))
    problems = [f"{p.line}:{p.column} {p.level} {p.desc} ({p.rule})" for p in linter.run(text, config)]
    assert not problems, f"yamllint {where}:\n" + "\n".join(problems)


# Custom resources have no schema in kubernetes-validate: the fields this chart writes are checked
# against the CRDs' shapes here, and embedded pod templates against the core schemas.
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {"type": "object", "required": ["matchLabels"]},
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                        "any": {"type": "boolean"},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["port"],
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": "^(0|(([0-9]+)(ms|s|m|h))+)$"},
                            "relabelings": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "action": {"enum": ["replace", "keep", "drop", "labelmap"]},
                                        "sourceLabels": {"type": "array"},
                                        "targetLabel": {"type": "string"},
                                        "replacement": {"type": "string"},
                                        "regex": {"type": "string"},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def _validate_service_monitor(obj: dict) -> None:
    import jsonschema

    jsonschema.validate(obj, SERVICE_MONITOR_SCHEMA)


def _validate_leader_worker_set(obj: dict) -> None:
    kubernetes_validate = need_module("kubernetes_validate")
    assert obj["apiVersion"] == "leaderworkerset.x-k8s.io/v1"
    spec = obj["spec"]
    assert set(spec) <= {
        "replicas",
        "startupPolicy",
        "leaderWorkerTemplate",
        "rolloutStrategy",
        "networkConfig",
    }
    template = spec["leaderWorkerTemplate"]
    assert set(template) <= {"size", "restartPolicy", "workerTemplate", "leaderTemplate", "subGroupPolicy"}
    assert isinstance(template["size"], int) and template["size"] >= 1
    assert template["restartPolicy"] in ("RecreateGroupOnPodRestart", "RecreateGroupAfterStart", "None")
    # The pod template, strictly, inside a StatefulSet whose selector matches its labels.
    labels = template["workerTemplate"]["metadata"]["labels"]
    stand_in = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": obj["metadata"]["name"]},
        "spec": {
            "serviceName": obj["metadata"]["name"],
            "selector": {"matchLabels": labels},
            "template": template["workerTemplate"],
        },
    }
    kubernetes_validate.validate(stand_in, kubernetes_validate.latest_version(), strict=True)


CUSTOM_KINDS = {"ServiceMonitor": _validate_service_monitor, "LeaderWorkerSet": _validate_leader_worker_set}
