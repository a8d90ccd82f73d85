"""The Dockerfile builds the one image the chart runs. No Docker engine is at hand in the test
environments, so these tests read it: what the chart relies on (the tmq entry point, a non-root
uid, the ports, the packaged DCGM capture) must be what the Dockerfile says."""

from __future__ import annotations

import json
import tomllib

import pytest
from chart_support import REPO, pod_spec

SAMPLE_CSV = "dcgm_metrics_20250718_134233.csv"


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's build stages, each a list of (INSTRUCTION, arguments), with line
    continuations joined and comments dropped."""
    logical, pending = [], ""
    for line in (REPO / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    result: list[list[tuple[str, str]]] = []
    for instruction in logical:
        keyword, _, arguments = instruction.partition(" ")
        if keyword.upper() == "FROM":
            result.append([])
        elif not result:
            continue  # ARG before the first FROM
        result[-1].append((keyword.upper(), arguments.strip()))
    return result


def instructions(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [arguments for key, arguments in stage if key == keyword]


@pytest.fixture(scope="module")
def runtime() -> list[tuple[str, str]]:
    """The last stage: the image that runs."""
    return stages()[-1]


class DockerfileTests:
    def test_the_image_runs_tmq_with_help_by_default(self, runtime):
        """The runtime stage's entry point is the `tmq` console script in exec form, so a pod's
        args pick the role; without args it prints the help."""
        assert [json.loads(e) for e in instructions(runtime, "ENTRYPOINT")] == [["tmq"]]
        assert [json.loads(c) for c in instructions(runtime, "CMD")] == [["--help"]]

    def test_the_image_runs_as_the_non_root_uid_the_chart_sets(self, runtime, rendered):
        """The runtime stage ends as numeric uid:gid 10001:10001, the same uid the chart's tmq
        pods run as (runAsUser), so files the image owns and the pods' uid agree."""
        (user,) = instructions(runtime, "USER")
        assert user == "10001:10001"
        tmq_pods = [
            w
            for w in rendered["default"].workloads()
            if any(c["image"].startswith("tmq:") for c in pod_spec(w)["containers"])
        ]
        assert {pod_spec(w)["securityContext"]["runAsUser"] for w in tmq_pods} == {10001}
        assert any("useradd --uid 10001" in run for run in instructions(runtime, "RUN"))

    def test_every_port_the_chart_uses_is_exposed(self, runtime, rendered):
        """EXPOSE lists every container port of the chart's tmq containers: 9092, 9100, 8080."""
        exposed = {int(p) for e in instructions(runtime, "EXPOSE") for p in e.split()}
        used = {
            port["containerPort"]
            for value_set in rendered.values()
            for workload in value_set.workloads()
            for c in pod_spec(workload)["containers"]
            if c["image"].startswith("tmq:")
            for port in c["ports"]
        }
        assert used == {9092, 9100, 8080}
        assert exposed == used

    def test_the_builder_builds_a_wheel_from_every_source_directory(self):
        """The builder stage on python:3.11-slim-bookworm copies every source directory the
        distribution maps in pyproject.toml (and the twistd plugin) and runs pip wheel; the
        runtime stage installs from those wheels only."""
        builder, runtime = stages()
        pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
        copied = {c.split()[0] for c in instructions(builder, "COPY")}
        needed = set(pyproject["tool"]["setuptools"]["package-dir"].values()) | {"twisted"}
        assert needed <= copied
        assert {"pyproject.toml", pyproject["project"]["readme"]} <= {
            word for c in instructions(builder, "COPY") for word in c.split()[:-1]
        }
        arg = (REPO / "Dockerfile").read_text()
        assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in arg
        assert instructions(builder, "RUN") == ["pip wheel --no-cache-dir . -w /wheels"]
        assert any("--no-index --find-links /wheels tmq" in r for r in instructions(runtime, "RUN"))

    def test_the_capture_the_producer_copies_is_packaged(self):
        """The producer's init container copies tmq/telemetry/data/<capture> from the installed
        package: the file exists and pyproject.toml ships data/*.csv with tmq.telemetry."""
        assert (REPO / "tmq" / "telemetry" / "data" / SAMPLE_CSV).is_file()
        pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
        assert "data/*.csv" in pyproject["tool"]["setuptools"]["package-data"]["tmq.telemetry"]

    def test_dockerignore_keeps_environments_and_caches_out_of_the_context(self):
        """.dockerignore excludes the virtualenvs, build output, caches and .git."""
        ignored = {
            line.strip()
            for line in (REPO / ".dockerignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        }
        assert {".git", ".venv", ".tox", "build", ".pytest_cache", "**/__pycache__"} <= ignored
