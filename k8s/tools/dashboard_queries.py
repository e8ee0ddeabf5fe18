"""The PromQL of the Grafana dashboard (k8s/helix/dashboards/helix.json), for the tests that
check it offline against services/metrics.py and live against a real Prometheus."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parent.parent / "helix" / "dashboards" / "helix.json"
# Every metric the service exports starts with helix_. Label names can too (helix_instance), but
# only inside {matchers} and by/without/on/ignoring(...) lists, which are cut out first.
_LABEL_LISTS = re.compile(r"\{[^}]*\}|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_METRIC = re.compile(r"\bhelix_[a-zA-Z0-9_]+")
_LABEL_VALUES = re.compile(
    r"^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$"
)


@dataclass(frozen=True)
class Query:
    panel: str  # panel title
    ref: str  # target refId
    legend: str
    expr: str

    def resolved(self, instance: str, rate_interval: str) -> str:
        """The expression as Grafana sends it, with the dashboard's variables filled in."""
        return self.expr.replace("$__rate_interval", rate_interval).replace("$instance", instance)


def load(path: Path = DASHBOARD) -> dict:
    return json.loads(path.read_text())


def panels(dashboard: dict) -> list[dict]:
    """Every panel, rows' nested panels included, rows themselves excluded."""
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found += panel.get("panels", [])
        else:
            found.append(panel)
    return found


def queries(dashboard: dict) -> list[Query]:
    return [
        Query(panel["title"], target["refId"], target.get("legendFormat", ""), target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def metric_names(expr: str) -> set[str]:
    return set(_METRIC.findall(_LABEL_LISTS.sub(" ", expr)))


def variable(dashboard: dict, name: str) -> dict:
    (found,) = [v for v in dashboard["templating"]["list"] if v["name"] == name]
    return found


def label_values_query(var: dict) -> tuple[str, str]:
    """(metric, label) of a `label_values(metric, label)` variable."""
    query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
    match = _LABEL_VALUES.match(query.strip())
    if match is None:
        raise ValueError(f"variable {var['name']}: expected label_values(metric, label), got {query!r}")
    return match.group(1), match.group(2)
