"""OpenAPI paths of the workflow APIs (management :8081 and inference :8080)."""

from __future__ import annotations

from typing import Any

from torchwire.api.openapi import (
    error_response,
    handler_input_body,
    json_response,
    operation,
    path_parameter,
)

STATUS = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
NAME = path_parameter("workflow_name", "Name of a registered workflow.")
_ERRORS = {
    400: "A parameter, the .war or its specification is invalid, the url is not "
         "allowed, or the key is missing or wrong (InvalidKeyException).",
    404: "The workflow (or its .war) does not exist.",
    405: "Registering or deleting workflows is disabled (enable_model_api).",
    409: "A workflow of this name is already registered.",
    500: "A node's model could not be registered or started, or a node failed.",
    503: "A node's model has no worker that can answer.",
    504: "A node did not answer within its timeout-ms.",
}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): error_response(_ERRORS[c]) for c in codes}


def _query(name: str, kind: str, description: str) -> dict[str, Any]:
    return {"in": "query", "name": name, "required": False, "description": description,
            "schema": {"type": kind}}


def _describe() -> dict[str, Any]:
    integer = {"type": "integer"}
    item = {"type": "object", "properties": {
        "workflowName": {"type": "string"}, "workflowUrl": {"type": "string"},
        "minWorkers": integer, "maxWorkers": integer, "batchSize": integer,
        "maxBatchDelay": integer, "workflowDag": {"type": "string"}}}
    return operation("describeWorkflow", "Describe a workflow.", {
        "200": json_response("The workflow.", {"type": "array", "items": item}),
        **_errors(400, 404)}, parameters=[NAME])


def _list() -> dict[str, Any]:
    listing = {"type": "object", "properties": {
        "nextPageToken": {"type": "string"},
        "workflows": {"type": "array", "items": {"type": "object", "properties": {
            "workflowName": {"type": "string"}, "workflowUrl": {"type": "string"}}}}}}
    return operation("listWorkflows", "List the registered workflows.", {
        "200": json_response("One page of workflows.", listing), **_errors(400)},
        parameters=[_query("limit", "integer", "Workflows per page (at most 100)."),
                    _query("next_page_token", "integer", "Where the page starts.")])


def _register() -> dict[str, Any]:
    params = [
        _query("url", "string", "The .war: a name in the workflow store, a path, or an "
                                "http(s) URL allowed by allowed_urls. Required."),
        _query("workflow_name", "string", "Name to serve the workflow under."),
        _query("response_timeout", "integer", "Seconds a node's worker may take per batch."),
        _query("startup_timeout", "integer", "Seconds a node's worker may take to load."),
    ]
    return operation("registerWorkflow", "Register a workflow and start its nodes' models.", {
        "200": json_response("Registered; every node is up.", STATUS),
        **_errors(400, 404, 405, 409, 500)}, parameters=params)


def workflow_management_paths() -> dict[str, Any]:
    unregister = operation("unregisterWorkflow", "Unregister a workflow and its nodes' models.",
                           {"200": json_response("Unregistered.", STATUS),
                            **_errors(400, 404, 405)}, parameters=[NAME])
    return {
        "/workflows": {"get": _list(), "post": _register()},
        "/workflows/{workflow_name}": {"get": _describe(), "delete": unregister},
    }


def workflow_inference_paths() -> dict[str, Any]:
    ok = {"description": "The leaf node's answer, or one JSON object of every leaf's answer "
                         "by node name.", "content": {"application/json": {"schema": {}}}}
    predict = operation("workflowPredictions", "Run a request through a workflow's DAG.",
                        {"200": ok, **_errors(400, 404, 500, 503, 504)},
                        parameters=[NAME], request_body=handler_input_body())
    return {"/wfpredict/{workflow_name}": {"post": predict}}
