"""The OpenAPI document (DESIGN §7): the committed ``api/openapi.json`` is what the code
generates, it is valid OpenAPI 3, it states every operation and parameter of
``tmq.api.validation`` with the ranges and enums the server enforces, and its paths are the
Klein app's routes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from openapi_spec_validator import OpenAPIV30SpecValidator, validate

from tmq.api.app import TelemetryApi
from tmq.api.openapi import build_spec, spec_json
from tmq.api.validation import (
    AGGREGATIONS,
    MAX_GPU_ID_LENGTH,
    OPERATIONS,
    ApiError,
    Operation,
    Param,
    parse_query,
)
from tmq.telemetry.model import METRICS

#: The committed file, in the source tree (tox installs the wheel, which does not ship it).
COMMITTED = Path(__file__).resolve().parent.parent.parent / "api" / "openapi.json"

#: Routes that serve the documentation itself, not the API, so the spec leaves them out.
_DOCUMENTATION = re.compile(r"/|/openapi\.json|/swagger/.*")

_SPEC = build_spec()


def _spec_operation(operation: Operation) -> dict:
    return _SPEC["paths"][operation.path]["get"]


def _spec_parameters(operation: Operation) -> dict[str, dict]:
    return {param["name"]: param for param in _spec_operation(operation)["parameters"]}


def _all_params() -> list[tuple[Operation, Param]]:
    return [(operation, param) for operation in OPERATIONS for param in operation.params]


def _param_id(pair: tuple[Operation, Param]) -> str:
    return f"{pair[0].name}.{pair[1].name}"


def _gpu_id(operation: Operation) -> str | None:
    return "GPU-0" if operation.gpu_path else None


def _required_args(operation: Operation) -> dict[bytes, list[bytes]]:
    """Query args giving every required parameter a valid value (its first enum value)."""
    return {
        param.name.encode(): [param.schema["enum"][0].encode()]
        for param in operation.params
        if param.required
    }


class CommittedSpecTests:
    def test_committed_file_is_the_generated_spec(self):
        """api/openapi.json holds exactly what spec_json() generates (run make openapi)."""
        assert COMMITTED.is_file(), f"{COMMITTED} is missing: run `make openapi` and commit it"
        committed = COMMITTED.read_text(encoding="utf-8")
        assert committed == spec_json(), (
            f"{COMMITTED} differs from the spec the code generates: run `make openapi` and "
            "commit api/openapi.json"
        )

    def test_spec_json_is_the_built_spec(self):
        """spec_json() is build_spec() as JSON: sorted keys, indented, one final newline."""
        text = spec_json()
        assert json.loads(text) == build_spec()
        assert text.endswith("}\n") and not text.endswith("\n\n")
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


class SpecValidityTests:
    def test_spec_is_valid_openapi_3_0(self):
        """openapi-spec-validator accepts the document as OpenAPI 3.0."""
        assert _SPEC["openapi"].startswith("3.0.")
        validate(_SPEC, cls=OpenAPIV30SpecValidator)
        assert list(OpenAPIV30SpecValidator(_SPEC).iter_errors()) == []

    def test_every_reference_resolves(self):
        """Every $ref names a schema of components.schemas, and every schema is used."""
        text = json.dumps(_SPEC)
        refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text))
        schemas = set(_SPEC["components"]["schemas"])
        assert refs <= schemas
        assert schemas - refs == set(), "schemas no operation or schema refers to"


class OperationTests:
    @pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.name)
    def test_operation_is_documented(self, operation):
        """Each operation is a GET of its path with its id, summary, description, a 200 of
        its response schema and an Error body for each of its error statuses."""
        assert set(_SPEC["paths"][operation.path]) == {"get"}
        documented = _spec_operation(operation)
        assert documented["operationId"] == operation.name
        assert documented["summary"] == operation.summary
        assert documented["description"] == operation.description
        responses = documented["responses"]
        assert set(responses) == {"200", *(str(status) for status in operation.errors)}
        ok = responses["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{operation.response}"}
        for status in operation.errors:
            error = responses[str(status)]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}

    def test_operation_ids_are_unique(self):
        """No two operations of the spec share an operationId."""
        ids = [op["operationId"] for path in _SPEC["paths"].values() for op in path.values()]
        assert len(ids) == len(set(ids))

    @pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.name)
    def test_parameters_are_exactly_the_operations(self, operation):
        """The spec lists the operation's query parameters in order, plus gpu_id in the path
        (of at most MAX_GPU_ID_LENGTH characters) on the per-GPU routes, and nothing else."""
        parameters = _spec_operation(operation)["parameters"]
        query = [param for param in parameters if param["in"] == "query"]
        path = [param for param in parameters if param["in"] == "path"]
        assert [param["name"] for param in query] == [param.name for param in operation.params]
        assert len(query) + len(path) == len(parameters)
        if operation.gpu_path:
            assert "{gpu_id}" in operation.path
            (gpu_id,) = path
            assert gpu_id["name"] == "gpu_id" and gpu_id["required"] is True
            assert gpu_id["schema"]["maxLength"] == MAX_GPU_ID_LENGTH
        else:
            assert path == [] and "{" not in operation.path

    @pytest.mark.parametrize("pair", _all_params(), ids=_param_id)
    def test_parameter_schema_is_the_validations(self, pair):
        """Each parameter has its schema (type, enum, minimum, maximum, default, pattern),
        its required flag and its description, as tmq.api.validation defines them."""
        operation, param = pair
        documented = _spec_parameters(operation)[param.name]
        assert documented["schema"] == dict(param.schema)
        assert documented["required"] is param.required
        assert documented["description"] == param.description
        if "default" in param.schema:
            assert param.schema["default"] == param.default


class ParameterBoundsTests:
    """The spec's enums and ranges are what parse_query accepts: every enum value and both
    ends of each range pass, the values just outside a range and outside an enum are 400s."""

    def test_enums_are_the_catalogs(self):
        """metric_name's enum is the DCGM catalog; aggregation's is AGGREGATIONS."""
        for operation, param in _all_params():
            if param.name == "metric_name":
                assert param.schema["enum"] == list(METRICS), operation.name
            if param.name == "aggregation":
                assert param.schema["enum"] == list(AGGREGATIONS), operation.name
        enums = [param for _, param in _all_params() if "enum" in param.schema]
        assert {param.name for param in enums} == {"metric_name", "aggregation"}

    def test_every_integer_parameter_has_a_range(self):
        """limit and offset state their minimum, maximum and default."""
        integers = [(op, p) for op, p in _all_params() if p.schema["type"] == "integer"]
        assert {param.name for _, param in integers} == {"limit", "offset"}
        for _, param in integers:
            assert {"minimum", "maximum", "default"} <= set(param.schema)

    @pytest.mark.parametrize(
        "pair", [pair for pair in _all_params() if "enum" in pair[1].schema], ids=_param_id
    )
    def test_enum_values_are_accepted_and_others_refused(self, pair):
        """Every enum value parses; a value outside the enum is a 400 naming the parameter."""
        operation, param = pair
        for value in param.schema["enum"]:
            args = {**_required_args(operation), param.name.encode(): [value.encode()]}
            query = parse_query(operation, args, _gpu_id(operation))
            assert getattr(query, param.name) == value
        args = {**_required_args(operation), param.name.encode(): [b"NOT_A_VALUE"]}
        with pytest.raises(ApiError) as raised:
            parse_query(operation, args, _gpu_id(operation))
        assert raised.value.status == 400
        assert raised.value.details["parameter"] == param.name

    @pytest.mark.parametrize(
        "pair", [pair for pair in _all_params() if "minimum" in pair[1].schema], ids=_param_id
    )
    def test_range_ends_are_accepted_and_beyond_refused(self, pair):
        """minimum and maximum parse; minimum - 1 and maximum + 1 are 400s naming the
        parameter; no value given means the default."""
        operation, param = pair
        low, high = param.schema["minimum"], param.schema["maximum"]
        gpu_id = _gpu_id(operation)
        for value in (low, high):
            args = {**_required_args(operation), param.name.encode(): [str(value).encode()]}
            assert getattr(parse_query(operation, args, gpu_id), param.name) == value
        for value in (low - 1, high + 1):
            args = {**_required_args(operation), param.name.encode(): [str(value).encode()]}
            with pytest.raises(ApiError) as raised:
                parse_query(operation, args, gpu_id)
            assert raised.value.status == 400
            assert raised.value.details["parameter"] == param.name
        query = parse_query(operation, _required_args(operation), gpu_id)
        assert getattr(query, param.name) == param.schema["default"]

    @pytest.mark.parametrize(
        "pair", [pair for pair in _all_params() if pair[1].required], ids=_param_id
    )
    def test_required_parameters_are_required(self, pair):
        """Leaving out a parameter the spec marks required is a 400 naming it."""
        operation, param = pair
        args = _required_args(operation)
        del args[param.name.encode()]
        with pytest.raises(ApiError) as raised:
            parse_query(operation, args, _gpu_id(operation))
        assert (raised.value.status, raised.value.code) == (400, "missing_parameter")
        assert raised.value.details["parameter"] == param.name


def _app_routes() -> dict[str, set[str]]:
    """The Klein app's routes in OpenAPI form (``<string:gpu_id>`` -> ``{gpu_id}``) and
    their methods, without HEAD (Werkzeug adds it to every GET) and OPTIONS."""
    routes: dict[str, set[str]] = {}
    for rule in TelemetryApi.app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:<>]+:)?([^:<>]+)>", r"{\1}", rule.rule)
        routes.setdefault(path, set()).update(set(rule.methods or ()) - {"HEAD", "OPTIONS"})
    return routes


class RoutesTests:
    def test_spec_paths_are_the_app_routes(self):
        """The spec's paths and methods are exactly the app's routes, apart from the routes
        serving the documentation (/, /openapi.json, /swagger/...)."""
        api_routes = {
            path: methods
            for path, methods in _app_routes().items()
            if not _DOCUMENTATION.fullmatch(path)
        }
        spec_routes = {
            path: {method.upper() for method in operations}
            for path, operations in _SPEC["paths"].items()
        }
        assert api_routes == spec_routes

    def test_documentation_is_served(self):
        """The app serves the spec at /openapi.json and Swagger UI under /swagger/."""
        routes = _app_routes()
        for path in ("/openapi.json", "/swagger/index.html", "/swagger/swagger-initializer.js"):
            assert routes.get(path) == {"GET"}, path

    def test_every_operation_has_a_route(self):
        """Every operation of OPERATIONS is a GET route of the app."""
        routes = _app_routes()
        for operation in OPERATIONS:
            assert routes.get(operation.path) == {"GET"}, operation.path
