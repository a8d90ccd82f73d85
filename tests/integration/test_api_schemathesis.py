"""Schemathesis (property-based, from the OpenAPI document) against the real ``tmq api``
process over real PostgreSQL holding the real DCGM capture and a small ``tmq gen`` fleet.

The checks, named in ``CHECKS`` (not left to schemathesis' defaults, which change between
versions), on every response: no 5xx (``not_a_server_error``), only the status codes the spec
documents for the operation (``status_code_conformance``), the documented content type
(``content_type_conformance``) and headers (``response_headers_conformance``), a body matching
the response schema (``response_schema_conformance``), a 4xx for data the schema rules out
(``negative_data_rejection``, ``missing_required_header``), a 405 for methods the spec does
not list (``unsupported_method``, ``allow_header_conformance``). Left out, as they do not
apply: ``use_after_free`` and ``ensure_resource_availability`` (need operations that create
or delete; the API only reads), ``ignored_auth`` and ``object_level_authorization`` (the
spec declares no security).

One check is replaced, not dropped: ``positive_data_acceptance`` wants every schema-valid
request accepted, but the API refuses, with its documented 400, a few requests that OpenAPI
3.0 cannot rule out: ``start_time`` after ``end_time`` (a rule across two parameters), an
``interval`` longer than 366 days, a ``gpu_id`` that is not printable, an RFC 3339 leap
second. ``positive_data_acceptance_except_stated_rules`` runs the built-in check and lets
such a 400 through only when the request really breaks that rule (re-checked here from the
request), so every other refusal of valid data still fails.

Schemathesis loads the schema when the tests are collected, before the server exists, from
``build_spec()``; ``LiveSpecTests`` checks that the server's /openapi.json is that very
document, and the stateful test loads it from the server. Generated cases put the GPU ids of
the loaded data into most ``gpu_id`` values (``_toward_data``), so the 200 paths are
exercised, not only the 404; ``ExplicitCaseTests`` sends hand-written requests for every
route that must answer 200 with data. The seed is fixed (``TMQ_SCHEMATHESIS_SEED`` changes
it) so a run is repeatable; schemathesis prints a ``curl`` command for each failure.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from collections.abc import Iterator
from urllib.parse import unquote
from uuid import uuid4

import pytest
import schemathesis
from api_helpers import ApiProcess, load_csv, load_samples
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    allow_header_conformance,
    content_type_conformance,
    missing_required_header,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from schemathesis.openapi.checks import RejectedPositiveData

from tmq.api.openapi import build_spec
from tmq.api.validation import parse_time
from tmq.telemetry.csv_source import real_capture_path
from tmq.telemetry.gen import generate

#: The small synthetic fleet loaded next to the real capture: many samples per series (the
#: capture has one), so windows, pages and ``interval`` buckets have something to cut.
FLEET = {
    "hosts": 2,
    "gpus_per_host": 2,
    "scrapes": 90,
    "interval_s": 10.0,
    "seed": 11,
    "extra_metrics": True,
}
FLEET_GPUS = sorted({sample.uuid for sample in generate(**{**FLEET, "scrapes": 1})})
REAL_GPU = "GPU-5fd4f087-86f3-7a43-b711-4771313afc50"  # the capture's first GPU
REAL_HOST = "mtv5-dgx1-hgpu-031"
#: What ``_toward_data`` puts into generated cases.
KNOWN_GPUS = [REAL_GPU, *FLEET_GPUS]
INTERVALS = ["1s", "1m", "5m", "1h", "366d"]

SEED = int(os.environ.get("TMQ_SCHEMATHESIS_SEED", "20250718"))
#: Generated requests per operation in the fuzzing phase (the coverage phase adds its own
#: boundary and negative cases); the whole file takes about a minute.
MAX_EXAMPLES = 250
STATEFUL_SCENARIOS = 60

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "request-timeout": 30,
        "generation": {
            "max-examples": MAX_EXAMPLES,
            # no example database: nothing written to the working directory, every run alike
            "database": "none",
        },
        "checks": {
            # Not in CHECKS: positive_data_acceptance_except_stated_rules (module docstring)
            # calls it, with these statuses: 200, or 404 for a GPU that does not exist.
            "positive_data_acceptance": {"enabled": False, "expected-statuses": [200, 404]},
        },
    }
)

schema = schemathesis.openapi.from_dict(build_spec(), config=CONFIG)


@schema.hook("flatmap_case")
def _toward_data(context, case):
    """Steer generated cases of the per-GPU routes to answers with data: most ask for a GPU
    that has data (a generated id is a 404, or a 400 when not printable, as most are), and
    most with an ``interval`` ask for a sensible width (most widths the pattern allows are
    past the 366 days the API takes). One in six (``None``) keeps what was generated.
    Schemathesis re-validates a case changed here, so a negative case stays labelled right.
    """
    if "gpu_id" not in (case.path_parameters or {}):
        return st.just(case)

    def steer(choice: tuple[str | None, str | None]):
        gpu, interval = choice
        if gpu is not None:
            case.path_parameters = {**case.path_parameters, "gpu_id": gpu}
        if interval is not None and "interval" in (case.query or {}):
            case.query = {**case.query, "interval": interval}
        return case

    choices = st.tuples(st.sampled_from([None, *KNOWN_GPUS]), st.sampled_from([None, *INTERVALS]))
    return choices.map(steer)


# --- the replaced check ----------------------------------------------------------------------

_INTERVAL = re.compile(r"([1-9][0-9]{0,8})([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_MAX_INTERVAL_SECONDS = 366 * 86400  # DESIGN §7
_LEAP_SECOND = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:60.*")


def _breaks_a_stated_rule(case, response) -> bool:
    """Whether the 400 answering a schema-valid request is for one of the API's rules that
    the spec cannot state, and the request really breaks it."""
    try:
        error = response.json()["error"]
        parameter = error["details"]["parameter"]
    except (ValueError, KeyError, TypeError):
        return False
    query = case.query or {}
    if parameter == "gpu_id":  # path values are held percent-encoded
        return not unquote(str(case.path_parameters["gpu_id"])).isprintable()
    if parameter == "interval":
        match = _INTERVAL.fullmatch(str(query.get("interval")))
        seconds = int(match[1]) * _UNIT_SECONDS[match[2]] if match else 0
        return seconds > _MAX_INTERVAL_SECONDS
    if parameter not in ("start_time", "end_time"):
        return False
    value = str(query.get(parameter))
    if _LEAP_SECOND.fullmatch(value):
        return True
    if error["message"].startswith("start_time is after end_time"):
        start, end = str(query.get("start_time")), str(query.get("end_time"))
        return parse_time(start, round_up=True) > parse_time(end)
    return False


def positive_data_acceptance_except_stated_rules(ctx, response, case):
    """``positive_data_acceptance``, except for a 400 the API answers because the request
    breaks a rule OpenAPI 3.0 cannot express (module docstring)."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if response.status_code == 400 and _breaks_a_stated_rule(case, response):
            return None
        raise


#: What every response is checked with (module docstring).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    missing_required_header,
    unsupported_method,
    allow_header_conformance,
    positive_data_acceptance_except_stated_rules,
]


# --- the server ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(postgres_cluster, tmp_path_factory) -> Iterator[ApiProcess]:
    """``tmq api`` over a database (like ``pg_dsn``'s, but shared by this module's tests)
    holding the real capture and the ``FLEET``; stopped, and the database dropped, at the
    end."""
    name = f"test_{uuid4().hex[:16]}"
    dsn = postgres_cluster.create_database(name)
    try:
        load_csv(dsn, real_capture_path())
        load_samples(dsn, generate(**FLEET))
        process = ApiProcess(dsn, tmp_path_factory.mktemp("api"))
        try:
            yield process
        finally:
            process.stop()
    finally:
        postgres_cluster.drop_database(name)


def _get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.headers.get_content_type() == "application/json"
        return json.loads(response.read())


# --- the tests -------------------------------------------------------------------------------


class LiveSpecTests:
    def test_served_spec_is_the_generated_one(self, api):
        """The server's /openapi.json is build_spec(), the document schemathesis generates
        requests from here."""
        assert _get_json(api.url("/openapi.json")) == build_spec()


class SchemathesisTests:
    @schema.parametrize()
    def test_api_conforms_to_its_spec(self, case, api):
        """Every generated request (coverage and fuzzing phases, valid and invalid data) gets
        a documented status, never a 5xx, with a body matching the spec."""
        case.call_and_validate(base_url=api.base, checks=CHECKS)

    def test_stateful_scenarios_conform_to_the_spec(self, api):
        """Scenarios chaining operations by the links schemathesis infers (a GPU's uuid from
        /api/v1/gpus into the per-GPU routes), loaded from the live /openapi.json, pass the
        same checks."""
        live = schemathesis.openapi.from_url(api.url("/openapi.json"), config=CONFIG)
        machine = live.as_state_machine()

        class Scenarios(machine):  # type: ignore[misc, valid-type]
            def validate_response(self, response, case, additional_checks=None, **kwargs):
                __tracebackhide__ = True
                case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

        Scenarios.run(
            settings=settings(
                max_examples=STATEFUL_SCENARIOS,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
                stateful_step_count=6,
            )
        )


class ExplicitCaseTests:
    @pytest.mark.parametrize(
        ("path", "path_parameters", "query", "items"),
        [
            ("/api/v1/gpus", {}, {"limit": 1000}, 247 + len(FLEET_GPUS)),
            ("/api/v1/gpus", {}, {"hostname": REAL_HOST, "limit": 1}, 1),
            ("/api/v1/gpus/{gpu_id}/telemetry", {"gpu_id": REAL_GPU}, {}, 10),
            (
                "/api/v1/gpus/{gpu_id}/telemetry",
                {"gpu_id": FLEET_GPUS[0]},
                {
                    "metric_name": "DCGM_FI_DEV_POWER_USAGE",
                    "start_time": "2025-07-18T20:42:34Z",
                    "end_time": "2025-07-18T20:52:33.999999+00:00",
                    "limit": 25,
                    "offset": 5,
                },
                25,
            ),
            ("/api/v1/gpus/{gpu_id}/latest", {"gpu_id": REAL_GPU}, {}, 10),
            (
                "/api/v1/gpus/{gpu_id}/latest",
                {"gpu_id": FLEET_GPUS[-1]},
                {"metric_name": "DCGM_FI_DEV_GPU_TEMP"},
                1,
            ),
            (
                "/api/v1/gpus/{gpu_id}/metrics",
                {"gpu_id": FLEET_GPUS[1]},
                {"metric_name": "DCGM_FI_DEV_GPU_UTIL", "aggregation": "max", "interval": "1m"},
                16,  # 90 scrapes 10 s apart from 20:42:34: minutes 20:42 to 20:57
            ),
            (
                "/api/v1/gpus/{gpu_id}/metrics",
                {"gpu_id": REAL_GPU},
                {"metric_name": "DCGM_FI_DEV_FB_USED", "aggregation": "count"},
                None,
            ),
            (
                "/api/v1/gpus/{gpu_id}/metrics",
                {"gpu_id": FLEET_GPUS[0]},
                {"metric_name": "DCGM_FI_DEV_POWER_USAGE", "end_time": "0001-01-01T00:00:00Z"},
                None,
            ),
        ],
    )
    def test_requests_for_known_gpus_answer_200(self, api, path, path_parameters, query, items):
        """Hand-written requests for GPUs that have data answer 200 with the expected number
        of items (or one aggregate), and pass every check."""
        case = schema[path]["GET"].Case(path_parameters=path_parameters, query=query)
        response = case.call_and_validate(base_url=api.base, checks=CHECKS)
        assert response.status_code == 200, response.text
        body = response.json()
        if items is None:
            assert "value" in body and "samples" in body
        else:
            assert len(body["items"]) == items, body
