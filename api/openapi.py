"""The OpenAPI 3 document of the REST API, generated with apispec from the route definitions.

``build_spec()`` reads the operations of ``tmq.api.validation`` (paths, parameters, their
ranges and enums) and the response schemas below, so the document says exactly what the
server checks. The server serves it at ``/openapi.json``; ``make openapi`` writes it to
``api/openapi.json`` (``python -m tmq.api.openapi PATH``), and a test fails when that
committed file differs from what ``build_spec()`` makes.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from typing import Any

from apispec import APISpec

from .validation import OPERATIONS, Operation

__all__ = ["build_spec", "spec_json"]

_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_TIME = {**_TIME, "nullable": True}
_NULLABLE_TEXT = {"type": "string", "nullable": True}
_VALUE = {"type": "number", "nullable": True, "description": "null for a DCGM blank"}
_COUNT = {"type": "integer", "minimum": 0}


def _object(properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema


def _page(item: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return _object(
        {
            **(extra or {}),
            "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}},
            "total": {**_COUNT, "description": "items in all pages"},
            "limit": _COUNT,
            "offset": _COUNT,
        }
    )


_ECHO = {
    "gpu_id": {"type": "string"},
    "metric_name": {"type": "string"},
    "aggregation": {"type": "string"},
    "start_time": _NULLABLE_TIME,
    "end_time": _NULLABLE_TIME,
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Gpu": _object(
        {
            "uuid": {"type": "string", "example": "GPU-5fd4f087-86f3-7a43-b711-4771313afc50"},
            "hostname": {"type": "string"},
            "device": {"type": "string", "example": "nvidia0"},
            "gpu_index": {"type": "integer"},
            "model_name": {"type": "string"},
            "first_seen": _TIME,
            "last_seen": _TIME,
        }
    ),
    "GpuPage": _page("Gpu"),
    "Sample": _object(
        {
            "timestamp": _TIME,
            "metric_name": {"type": "string"},
            "value": _VALUE,
            "container": _NULLABLE_TEXT,
            "pod": _NULLABLE_TEXT,
            "namespace": _NULLABLE_TEXT,
        }
    ),
    "SamplePage": _page("Sample"),
    "LatestPage": _page("Sample", {"gpu_id": {"type": "string"}}),
    "Bucket": _object(
        {"start": _TIME, "end": _TIME, "value": _VALUE, "samples": _COUNT},
        "One time bucket: [start, end).",
    ),
    "AggregateValue": _object(
        {**_ECHO, "value": _VALUE, "samples": _COUNT},
        "One aggregate over the window (no interval). value is null when no sample has one.",
    ),
    "AggregateBuckets": _page(
        "Bucket", {**_ECHO, "interval_seconds": {"type": "integer", "minimum": 1}}
    ),
    "Aggregate": {
        "oneOf": [
            {"$ref": "#/components/schemas/AggregateValue"},
            {"$ref": "#/components/schemas/AggregateBuckets"},
        ]
    },
    "Error": _object(
        {
            "error": _object(
                {
                    "code": {"type": "string", "example": "invalid_parameter"},
                    "message": {"type": "string"},
                    "details": {"type": "object"},
                }
            )
        }
    ),
    "Health": _object({"status": {"type": "string", "enum": ["ok"]}}),
    "Ready": _object(
        {"status": {"type": "string", "enum": ["ready"]}, "schema_version": {"type": "integer"}}
    ),
}

_ERRORS = {
    400: "Bad parameter: error.details names it and what is allowed.",
    404: "No such GPU.",
    503: "The database is unavailable; retry later.",
}


def _json(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _operation(operation: Operation) -> dict[str, Any]:
    parameters = []
    if operation.gpu_path:
        parameters.append(
            {
                "name": "gpu_id",
                "in": "path",
                "required": True,
                "description": "The GPU's UUID (GPU-...).",
                "schema": {"type": "string", "minLength": 1, "maxLength": 128},
            }
        )
    for param in operation.params:
        parameters.append(
            {
                "name": param.name,
                "in": "query",
                "required": param.required,
                "description": param.description,
                "schema": dict(param.schema),
            }
        )
    responses = {"200": _json("OK", operation.response)}
    for status in operation.errors:
        responses[str(status)] = _json(_ERRORS[status], "Error")
    return {
        "operationId": operation.name,
        "summary": operation.summary,
        "description": operation.description,
        "tags": ["telemetry"],
        "parameters": parameters,
        "responses": responses,
    }


def build_spec() -> dict[str, Any]:
    """The OpenAPI 3.0 document, as a dict."""
    spec = APISpec(
        title="tmq telemetry API",
        version=version("tmq"),
        openapi_version="3.0.3",
        info={
            "description": "GPU telemetry stored by tmq's sink: GPUs, samples, aggregates. "
            "Errors are {error: {code, message, details}}."
        },
    )
    for name, schema in SCHEMAS.items():
        spec.components.schema(name, schema)
    for operation in OPERATIONS:
        spec.path(path=operation.path, operations={"get": _operation(operation)})
    spec.path(
        path="/healthz",
        operations={
            "get": {
                "operationId": "healthz",
                "summary": "Liveness",
                "tags": ["health"],
                "responses": {"200": _json("The process serves requests.", "Health")},
            }
        },
    )
    spec.path(
        path="/readyz",
        operations={
            "get": {
                "operationId": "readyz",
                "summary": "Readiness: the database answers and has the schema",
                "tags": ["health"],
                "responses": {
                    "200": _json("Ready.", "Ready"),
                    "503": _json(_ERRORS[503], "Error"),
                },
            }
        },
    )
    spec.path(
        path="/metrics",
        operations={
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics: requests per route, latencies, database up",
                "tags": ["health"],
                "responses": {
                    "200": {
                        "description": "The Prometheus text exposition format 0.0.4.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    )
    return spec.to_dict()


def spec_json() -> str:
    """The document as the committed file holds it: sorted keys, indented, one final
    newline."""
    return json.dumps(build_spec(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tmq.api.openapi PATH", file=sys.stderr)
        return 2
    with open(argv[0], "w", encoding="utf-8") as out:
        out.write(spec_json())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
