"""OpenAPI 3.0.1 description of the management port (``OPTIONS /`` on :8081)."""

from __future__ import annotations

from typing import Any

from torchwire.api.openapi import (
    add_paths,
    base_document,
    error_response,
    json_response,
    model_parameters,
    operation,
    path_parameter,
)
from torchwire.api.workflows_doc import workflow_management_paths

STATUS_REF = "#/components/schemas/Status"
DESCRIPTION_REF = "#/components/schemas/ModelDescription"
LIST_REF = "#/components/schemas/ModelList"


def query(name: str, kind: str, description: str) -> dict[str, Any]:
    return {"in": "query", "name": name, "required": False, "description": description,
            "schema": {"type": kind}}


def status_response(description: str) -> dict[str, Any]:
    return json_response(description, {"$ref": STATUS_REF})


PARTIAL = {"description": "TorchServe's partial success (some workers started); torchwire "
                          "answers 500 when workers cannot start and does not send 210."}


def errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "A parameter is invalid, the url is not allowed or cannot be fetched, or "
             "the management key is missing or wrong (InvalidKeyException).",
        403: "The default version cannot be deleted while other versions exist.",
        404: "The model, model version or archive does not exist.",
        405: "Registering or deleting models is disabled (enable_model_api).",
        408: "TorchServe's answer when unloading times out; torchwire lets accepted "
             "requests finish first and does not send it.",
        409: "This model version is already registered.",
        500: "The workers could not be started.",
        503: "No worker can answer (customized describe).",
    }
    return {str(c): error_response(text[c]) for c in codes}


def schemas() -> dict[str, Any]:
    worker = {"type": "object", "properties": {
        "id": {"type": "string"}, "startTime": {"type": "string"},
        "status": {"type": "string", "enum": ["READY", "LOADING", "UNLOADING"]},
        "memoryUsage": {"type": "integer"}, "pid": {"type": "integer"},
        "gpu": {"type": "boolean"}, "gpuUsage": {"type": "string"}}}
    integer = {"type": "integer"}
    description = {"type": "object", "properties": {
        "modelName": {"type": "string"}, "modelVersion": {"type": "string"},
        "modelUrl": {"type": "string"}, "runtime": {"type": "string"},
        "minWorkers": integer, "maxWorkers": integer, "batchSize": integer,
        "maxBatchDelay": integer, "responseTimeout": integer, "startupTimeout": integer,
        "deviceType": {"type": "string"}, "loadedAtStartup": {"type": "boolean"},
        "status": {"type": "string",
                   "enum": ["Loading", "Ready", "Failed", "Stopped", "Unloading"]},
        "loadError": {"type": "string"},
        "workers": {"type": "array", "items": worker},
        "jobQueueStatus": {"type": "object", "properties": {
            "remainingCapacity": integer, "pendingRequests": integer}},
        "customizedMetadata": {"type": "string"}}}
    listing = {"type": "object", "properties": {
        "nextPageToken": {"type": "string"},
        "models": {"type": "array", "items": {"type": "object", "properties": {
            "modelName": {"type": "string"}, "modelUrl": {"type": "string"}}}}}}
    return {"Status": {"type": "object", "required": ["status"],
                       "properties": {"status": {"type": "string"}}},
            "ModelDescription": description, "ModelList": listing}


def register_operation() -> dict[str, Any]:
    params = [
        query("url", "string", "Archive name in the model store, a path, or an http(s) "
                               "URL allowed by allowed_urls. Required."),
        query("model_name", "string", "Name to serve the model under."),
        query("handler", "string", "Handler overriding the manifest's."),
        query("runtime", "string", "Runtime (python)."),
        query("batch_size", "integer", "Inference batch size."),
        query("max_batch_delay", "integer", "Most milliseconds to wait to fill a batch."),
        query("initial_workers", "integer", "Worker processes to start (default: "
                                            "default_workers_per_model where configured, else 0)."),
        query("synchronous", "boolean", "Answer once the workers are up (default true)."),
        query("response_timeout", "integer", "Seconds a worker may take per batch."),
        query("startup_timeout", "integer", "Seconds a worker may take to load."),
        query("s3_sse_kms", "boolean", "Accepted for TorchServe's clients and ignored: "
                                       "torchwire does not fetch s3:// URLs."),
    ]
    return operation("registerModel", "Register a model version.", {
        "200": status_response("Registered (synchronous, or with 0 workers)."),
        "202": status_response("Registered; workers are starting (synchronous=false)."),
        "210": PARTIAL,
        **errors(400, 404, 405, 409, 500)}, parameters=params)


def describe_operation(operation_id: str, versioned: bool) -> dict[str, Any]:
    params = [*model_parameters(versioned),
              query("customized", "boolean", "Include the handler's describe_handle().")]
    ok = json_response("The model version(s).", {"type": "array",
                                                   "items": {"$ref": DESCRIPTION_REF}})
    what = "a version (or all, with version 'all')" if versioned else "the default version"
    return operation(operation_id, f"Describe {what} of a model.",
                     {"200": ok, **errors(400, 404, 503)}, parameters=params)


def scale_operation(operation_id: str, versioned: bool) -> dict[str, Any]:
    params = [*model_parameters(versioned),
              query("min_worker", "integer", "Workers to keep (default 1)."),
              query("max_worker", "integer", "Most workers (default min_worker)."),
              query("number_gpu", "integer", "Accepted for TorchServe's clients and ignored: "
                                             "the model's deviceType and deviceIds pick GPUs."),
              query("synchronous", "boolean", "Answer once scaled (default false)."),
              query("timeout", "integer", "Seconds a retiring worker may take to finish its "
                                          "requests; 0 stops it at once; -1 (default) waits.")]
    return operation(operation_id, "Scale the workers of a model version.", {
        "200": status_response("Scaled."), "202": status_response("Scaling started."),
        "210": PARTIAL, **errors(400, 404, 500)}, parameters=params)


def unregister_operation(operation_id: str, versioned: bool) -> dict[str, Any]:
    params = [*model_parameters(versioned),
              query("synchronous", "boolean", "Accepted for TorchServe's clients and ignored: "
                                              "the answer comes once the version is gone."),
              query("timeout", "integer", "Accepted for TorchServe's clients and ignored: "
                                          "accepted requests finish within response_timeout.")]
    return operation(operation_id, "Unregister a model version (its requests finish first).",
                     {"200": status_response("Unregistered."),
                      "202": status_response("TorchServe's asynchronous answer; torchwire "
                                             "answers 200 once the version is gone."),
                      **errors(400, 403, 404, 405, 408, 500)}, parameters=params)


def model_paths() -> dict[str, Any]:
    listing = operation("listModels", "List the default version of every model.", {
        "200": json_response("One page of models.", {"$ref": LIST_REF}), **errors(400)},
        parameters=[query("limit", "integer", "Models per page (at most 100)."),
                    query("next_page_token", "integer", "Where the page starts.")])
    default = operation("setDefault", "Make a version the default.", {
        "200": status_response("Default version set."), **errors(400, 404)},
        parameters=model_parameters(True))
    return {
        "/models": {"get": listing, "post": register_operation()},
        "/models/{model_name}": {
            "get": describe_operation("describeModel", False),
            "put": scale_operation("setAutoScale", False),
            "delete": unregister_operation("unregisterModel", False)},
        "/models/{model_name}/{model_version}": {
            "get": describe_operation("versionDescribeModel", True),
            "put": scale_operation("versionSetAutoScale", True),
            "delete": unregister_operation("versionUnregisterModel", True)},
        "/models/{model_name}/{model_version}/set-default": {"put": default},
    }


def other_paths(with_token: bool) -> dict[str, Any]:
    doc_schema = {"type": "object", "description": "An OpenAPI 3.0.1 document."}
    described = json_response("This document.", doc_schema)
    ready = json_response("Whether the model can serve now.", {
        "type": "object", "properties": {"name": {"type": "string"},
                                         "ready": {"type": "boolean"}}})
    paths: dict[str, Any] = {
        "/": {"options": operation("apiDescription", "Describe the management API.",
                                   {"200": described})},
        "/api-description": {"get": operation("getApiDescription",
                                              "Describe the management API.",
                                              {"200": described})},
        "/v1/models/{model_name}": {"get": operation(
            "kserveV1ModelReady", "KServe v1 model readiness.",
            {"200": ready, **errors(400, 404)},
            parameters=[path_parameter("model_name", "Name of a registered model.")])},
    }
    if with_token:
        key = json_response("The new key.", {"type": "object"})
        paths["/token"] = {"get": operation(
            "token", "Replace the management or inference key (send the API key).",
            {"200": key, **errors(400)},
            parameters=[query("type", "string", "management or inference")])}
    return paths


def management_document(version: str, with_token: bool = True) -> dict[str, Any]:
    doc = base_document("torchwire Management API", version)
    doc["components"]["schemas"].update(schemas())
    if with_token:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    doc = add_paths(doc, model_paths())
    doc = add_paths(doc, workflow_management_paths())
    return add_paths(doc, other_paths(with_token))
