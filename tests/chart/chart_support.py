"""Rendering the umbrella chart chart/telemetry-platform offline with Helm's own Go code.

helm-python-sdk binds Helm v4's SDK as a native library (ctypes), so linting and rendering need
neither a helm binary nor a cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "chart" / "telemetry-platform"
RELEASE = "tp"
NAMESPACE = "telemetry"
# The values a user installs with: the chart's defaults alone, or one of its values files on top.
VALUE_SETS = {"default": None, "dev": "values-dev.yaml", "prod": "values-prod.yaml"}


def values_of(value_set: str) -> dict[str, Any] | None:
    """The user-supplied values of ``value_set`` (None: the defaults alone)."""
    filename = VALUE_SETS[value_set]
    if filename is None:
        return None
    return yaml.safe_load((CHART / filename).read_text())


@dataclass(frozen=True)
class Rendering:
    """One ``helm template``: the Kubernetes objects and the rendered NOTES.txt."""

    objects: list[dict[str, Any]]
    notes: str

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        """The object ``kind``/``name``; fails the test when there is not exactly one."""
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{len(found)} objects {kind}/{name}"
        return found[0]

    def names(self, kind: str) -> set[str]:
        return {o["metadata"]["name"] for o in self.of_kind(kind)}

    def workloads(self) -> Iterator[dict[str, Any]]:
        """Every Deployment and StatefulSet (the long-running pods)."""
        return (o for o in self.objects if o["kind"] in ("Deployment", "StatefulSet"))


def render_chart(values: dict[str, Any] | None) -> Rendering:
    """Render the chart as a first install of release ``tp`` in namespace ``telemetry``."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    notes = ""
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        objects.extend(o for o in yaml.safe_load_all(text) if o)
    return Rendering(objects, notes)


def fullname(component: str) -> str:
    """The chart names every object ``<release>-<component>``."""
    return f"{RELEASE}-{component}"


def service_host(service: str) -> str:
    """The cluster DNS name of ``service`` in the release namespace."""
    return f"{service}.{NAMESPACE}.svc.cluster.local"


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    """The container ``name`` of a workload's pod."""
    (found,) = [c for c in pod_spec(workload)["containers"] if c["name"] == name]
    return found


def option(args: list[str], flag: str) -> str:
    """The value following ``flag`` in ``args``; fails the test unless it is there once."""
    assert args.count(flag) == 1, f"{flag} appears {args.count(flag)} times in {args}"
    return args[args.index(flag) + 1]


def env(container_spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A container's environment entries by name."""
    return {e["name"]: e for e in container_spec.get("env", [])}
