"""OpenAPI 3.0.1 description of the inference port.

The server returns :func:`inference_document` for ``OPTIONS /`` and
``GET /api-description``. Every piece is built by a function at call time, so
callers may mutate what they get; :func:`add_paths` lets other routers
(management, KServe v2) extend a document with their own paths.
"""

from __future__ import annotations

import copy
from typing import Any

OPENAPI_VERSION = "3.0.1"
ERROR_REF = "#/components/schemas/Error"
HEALTH_REF = "#/components/schemas/Health"

# Statuses an inference call may answer with, besides 200 (see torchwire.errors).
_INFERENCE_ERRORS: tuple[tuple[int, str], ...] = (
    (400, "Bad request: the input could not be decoded or is invalid."),
    (404, "The model or model version is not registered."),
    (408, "The model did not answer within its response timeout."),
    (413, "The request body is larger than the configured limit."),
    (500, "The handler failed while processing the request."),
    (503, "No worker is available, or the job queue is full."),
)

_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


# --- reusable building blocks -------------------------------------------------


def error_schema() -> dict[str, Any]:
    """The JSON body of every error: ``{"code", "type", "message"}``."""
    return {
        "type": "object",
        "required": ["code", "type", "message"],
        "properties": {
            "code": {"type": "integer", "description": "HTTP status code."},
            "type": {"type": "string", "description": "Error type name."},
            "message": {"type": "string", "description": "Human-readable explanation."},
        },
    }


def health_schema() -> dict[str, Any]:
    """The body of ``GET /ping``."""
    return {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["Healthy", "Unhealthy"]},
            "health": {"type": "string", "example": "stopping"},
        },
    }


def error_response(description: str) -> dict[str, Any]:
    """A response object whose JSON body is the shared Error schema."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
    }


INTERNAL_ERROR = error_response("Internal Server Error")


def path_parameter(name: str, description: str) -> dict[str, Any]:
    """A required string path parameter."""
    return {
        "in": "path",
        "name": name,
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def model_parameters(versioned: bool) -> list[dict[str, Any]]:
    """``model_name`` and, when ``versioned``, ``model_version`` path parameters."""
    params = [path_parameter("model_name", "Name of a registered model.")]
    if versioned:
        params.append(path_parameter("model_version", "Version of the model."))
    return params


def inference_errors() -> dict[str, Any]:
    """The error responses shared by every inference operation."""
    return {str(code): error_response(text) for code, text in _INFERENCE_ERRORS}


def json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def operation(
    operation_id: str,
    summary: str,
    responses: dict[str, Any],
    parameters: list[dict[str, Any]] | None = None,
    request_body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An operation object; every operation lists its (possibly empty) parameters and,
    as TorchServe's do, a 500 for an unexpected failure."""
    op: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "parameters": parameters or [],
        "responses": {**responses, "500": responses.get("500", INTERNAL_ERROR)},
    }
    if request_body is not None:
        op["requestBody"] = request_body
    return op


# --- inference port pieces ----------------------------------------------------


def handler_input_body() -> dict[str, Any]:
    """Request body of predictions/explanations: a raw body or a multipart form."""
    raw = {"schema": {"type": "string", "format": "binary"}}
    return {
        "description": (
            "Input for the handler: either the raw request body, or a multipart form "
            "whose fields (at least `data`) are passed to the handler by name."
        ),
        "required": True,
        "content": {
            "application/octet-stream": copy.deepcopy(raw),
            "image/*": copy.deepcopy(raw),
            "text/plain": {"schema": {"type": "string"}},
            "application/json": {"schema": {}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["data"],
                    "properties": {"data": {"type": "string", "format": "binary"}},
                    "additionalProperties": True,
                }
            },
        },
    }


def handler_output_responses(what: str) -> dict[str, Any]:
    """200 with whatever the handler returned, plus the shared errors."""
    ok = {"description": f"The handler's {what}.", "content": {"*/*": {"schema": {}}}}
    return {"200": ok, **inference_errors()}


def description_operation(operation_id: str) -> dict[str, Any]:
    schema = {"type": "object", "description": "An OpenAPI 3.0.1 document."}
    return operation(
        operation_id,
        "Describe the inference API (this document).",
        {"200": json_response("The OpenAPI description of this port.", schema)},
    )


def ping_operation() -> dict[str, Any]:
    ref = {"$ref": HEALTH_REF}
    return operation(
        "ping",
        "Report whether the server is healthy.",
        {
            "200": json_response(
                'Healthy; the body is {"status": "Healthy"}.',
                copy.deepcopy(ref),
            ),
            "500": json_response(
                'Unhealthy; the body is {"status": "Unhealthy"}.', copy.deepcopy(ref)
            ),
            "503": json_response(
                'Stopping (SIGTERM; requests are still answered); the body is '
                '{"status": "Unhealthy", "health": "stopping"}.', copy.deepcopy(ref)
            ),
        },
    )


def live_operation() -> dict[str, Any]:
    schema = {"type": "object", "properties": {"status": {"type": "string", "enum": ["Alive"]}}}
    return operation(
        "live",
        "Liveness: the server process answers (model loading does not matter).",
        {"200": json_response('Alive; the body is {"status": "Alive"}.', schema)},
    )


def handler_operation(
    operation_id: str, summary: str, versioned: bool, what: str
) -> dict[str, Any]:
    return operation(
        operation_id,
        summary,
        handler_output_responses(what),
        parameters=model_parameters(versioned),
        request_body=handler_input_body(),
    )


def prediction_path(versioned: bool) -> dict[str, Any]:
    """Methods of ``/predictions/{model_name}[/{model_version}]``."""
    base = "versionPredictions" if versioned else "predictions"
    target = "a specific version of a model" if versioned else "the default version of a model"
    return {
        "post": handler_operation(
            base,
            f"Run inference on {target}.",
            versioned,
            "prediction",
        ),
        "put": handler_operation(
            f"{base}Put",
            f"Run inference on {target} (PUT form).",
            versioned,
            "prediction",
        ),
    }


def url_path_prediction() -> dict[str, Any]:
    """``/predictions/{model_name}/{model_version}/{url_path}``: as the versioned form, with
    the rest of the path handed to the handler as the request header ``url_path``."""
    item = prediction_path(True)
    rest = path_parameter("url_path", "The rest of the path (slashes allowed), which the "
                                      "handler reads as the request header url_path.")
    for op in item.values():
        op["operationId"] += "UrlPath"
        op["parameters"] = [*op["parameters"], rest]
    return item


def explanation_path(versioned: bool) -> dict[str, Any]:
    """Methods of ``/explanations/{model_name}[/{model_version}]``."""
    target = "a specific version of a model" if versioned else "the default version of a model"
    return {
        "post": handler_operation(
            "versionExplanations" if versioned else "explanations",
            f"Explain the output of {target}.",
            versioned,
            "explanation",
        )
    }


def array_object(key: str, description: str) -> dict[str, Any]:
    """``{key: [...]}`` with ``key`` required and items of any type."""
    return {
        "type": "object",
        "required": [key],
        "properties": {key: {"type": "array", "items": {}, "description": description}},
    }


def kserve_v1_operation(operation_id: str, summary: str, result_key: str) -> dict[str, Any]:
    body = {
        "required": True,
        "content": {
            "application/json": {"schema": array_object("instances", "One input per instance.")}
        },
    }
    ok = json_response(
        f"One entry in `{result_key}` per instance.",
        array_object(result_key, "One result per instance."),
    )
    return operation(
        operation_id,
        summary,
        {"200": ok, **inference_errors()},
        parameters=model_parameters(False),
        request_body=body,
    )


def inference_paths() -> dict[str, Any]:
    """Every path served on the inference port."""
    return {
        "/": {"options": description_operation("apiDescription")},
        "/api-description": {"get": description_operation("getApiDescription")},
        "/ping": {"get": ping_operation()},
        "/live": {"get": live_operation()},
        "/predictions/{model_name}": prediction_path(False),
        "/predictions/{model_name}/{model_version}": prediction_path(True),
        "/predictions/{model_name}/{model_version}/{url_path}": url_path_prediction(),
        "/explanations/{model_name}": explanation_path(False),
        "/explanations/{model_name}/{model_version}": explanation_path(True),
        "/v1/models/{model_name}:predict": {
            "post": kserve_v1_operation(
                "kserveV1Predict", "Run inference (KServe v1 protocol).", "predictions"
            )
        },
        "/v1/models/{model_name}:explain": {
            "post": kserve_v1_operation(
                "kserveV1Explain", "Explain predictions (KServe v1 protocol).", "explanations"
            )
        },
    }


# --- documents ----------------------------------------------------------------


def base_document(title: str, version: str) -> dict[str, Any]:
    """An empty document with the shared component schemas."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version},
        "paths": {},
        "components": {"schemas": {"Error": error_schema(), "Health": health_schema()}},
    }


def _operation_ids(paths: dict[str, Any]) -> list[str]:
    return [
        op["operationId"]
        for item in paths.values()
        for method, op in item.items()
        if method in _HTTP_METHODS and isinstance(op, dict) and "operationId" in op
    ]


def add_paths(doc: dict[str, Any], paths: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``doc`` with ``paths`` merged in; neither input is modified.

    Methods are merged per path. Raises ``ValueError`` if a method of a path is
    already described, or if an operationId would no longer be unique.
    """
    merged = copy.deepcopy(doc)
    target: dict[str, Any] = merged.setdefault("paths", {})
    for template, item in paths.items():
        existing = target.setdefault(template, {})
        for key, value in item.items():
            if key in existing:
                raise ValueError(f"{key.upper()} {template} is already described")
            existing[key] = copy.deepcopy(value)
    ids = _operation_ids(target)
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate operationId: {', '.join(duplicates)}")
    return merged


def inference_document(version: str) -> dict[str, Any]:
    """The OpenAPI document for ``OPTIONS /`` and ``GET /api-description``."""
    return add_paths(base_document("torchwire Inference API", version), inference_paths())
