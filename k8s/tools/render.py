"""Render, lint and load the Helix chart without a helm binary.

Helm is used as a library (the helm-python-sdk package wraps Helm's Go SDK in a shared
library), so this works on machines where no helm binary can be installed, CI included:

    python3 k8s/tools/render.py -f k8s/helix/ci/gpus-16-two-nodes.yaml   # prints the manifests
    python3 k8s/tools/render.py --lint -f my-values.yaml

The tests import the functions below.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

CHART_DIR = Path(__file__).resolve().parent.parent / "helix"
CI_VALUES_DIR = CHART_DIR / "ci"
RELEASE = "demo"
NAMESPACE = "llm"


def load_values(path: Path | str | None) -> dict:
    if path is None:
        return {}
    return yaml.safe_load(Path(path).read_text()) or {}


def render(
    values: dict | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE
) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` renders an install (values are
    checked against values.schema.json first)."""
    import helm_python

    with helm_python.Chart.load(CHART_DIR) as chart:
        return chart.render(values=values or {}, name=release, namespace=namespace, is_install=True)


def objects(rendered: dict[str, str]) -> list[dict]:
    """Every Kubernetes object of a render, in template order (NOTES.txt is not one)."""
    found = []
    for template in sorted(rendered):
        if template.endswith("NOTES.txt"):
            continue
        found += [doc for doc in yaml.safe_load_all(rendered[template]) if doc]
    return found


def lint(values: dict | None = None, *, strict: bool = True) -> dict:
    """`helm lint --strict`: {"messages": [{"severity", "path", "error"}], "errors": [...]}."""
    import helm_python

    return helm_python.lint(CHART_DIR, values or {}, strict=strict, namespace=NAMESPACE)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-f", "--values", help="values file (default: the chart's defaults)")
    parser.add_argument("--lint", action="store_true", help="lint instead of rendering")
    parser.add_argument("--release", default=RELEASE)
    parser.add_argument("--namespace", default=NAMESPACE)
    args = parser.parse_args()
    values = load_values(args.values)
    if args.lint:
        report = lint(values)
        for message in report.get("messages") or []:
            print(f"[{message['severity']}] {message['path']}: {message['error']}")
        return 1 if report.get("errors") else 0
    rendered = render(values, release=args.release, namespace=args.namespace)
    for template in sorted(rendered):
        if rendered[template].strip() and not template.endswith("NOTES.txt"):  # NOTES is text, not YAML
            print(f"---\n# Source: {template}\n{rendered[template].strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
