"""Tests for the OpenAPI document of the inference port."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV30SpecValidator, validate

from torchwire.api.openapi import add_paths, error_response, inference_document

ERROR_REF = "#/components/schemas/Error"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}

EXPECTED_METHODS = {
    "/": {"options"},
    "/api-description": {"get"},
    "/ping": {"get"},
    "/live": {"get"},
    "/predictions/{model_name}": {"post", "put"},
    "/predictions/{model_name}/{model_version}": {"post", "put"},
    "/predictions/{model_name}/{model_version}/{url_path}": {"post", "put"},
    "/explanations/{model_name}": {"post"},
    "/explanations/{model_name}/{model_version}": {"post"},
    "/v1/models/{model_name}:predict": {"post"},
    "/v1/models/{model_name}:explain": {"post"},
}

HANDLER_PATHS = [p for p in EXPECTED_METHODS if p.startswith(("/predictions", "/explanations"))]
INFERENCE_ERROR_CODES = {"400", "404", "408", "413", "500", "503"}


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    ]


@pytest.fixture
def doc() -> dict[str, Any]:
    return inference_document("1.2.3")


def test_validates_as_openapi_30(doc: dict[str, Any]) -> None:
    validate(doc)
    validate(doc, cls=OpenAPIV30SpecValidator)


def test_header(doc: dict[str, Any]) -> None:
    assert doc["openapi"] == "3.0.1"
    assert doc["info"] == {"title": "torchwire Inference API", "version": "1.2.3"}


def test_is_plain_json(doc: dict[str, Any]) -> None:
    assert json.loads(json.dumps(doc)) == doc


def test_each_call_builds_a_fresh_document(doc: dict[str, Any]) -> None:
    doc["paths"]["/ping"]["get"]["summary"] = "changed"
    doc["components"]["schemas"]["Error"]["required"].clear()
    again = inference_document("1.2.3")
    assert again["paths"]["/ping"]["get"]["summary"] != "changed"
    assert again["components"]["schemas"]["Error"]["required"] == ["code", "type", "message"]


def test_exact_paths_and_methods(doc: dict[str, Any]) -> None:
    actual = {p: {m for m in item if m in HTTP_METHODS} for p, item in doc["paths"].items()}
    assert actual == EXPECTED_METHODS


def test_operation_ids_unique_and_summaries_present(doc: dict[str, Any]) -> None:
    ops = operations(doc)
    ids = [op["operationId"] for _, _, op in ops]
    assert all(isinstance(i, str) and i for i in ids)
    assert len(ids) == len(set(ids))
    assert all(isinstance(op.get("summary"), str) and op["summary"] for _, _, op in ops)


def test_path_parameters_match_templates(doc: dict[str, Any]) -> None:
    for path, method, op in operations(doc):
        params = op["parameters"]
        names = re.findall(r"{([^}]+)}", path)
        assert [p["name"] for p in params] == names, (method, path)
        for p in params:
            assert p["in"] == "path"
            assert p["required"] is True
            assert p["schema"] == {"type": "string"}


def test_error_schema(doc: dict[str, Any]) -> None:
    schema = doc["components"]["schemas"]["Error"]
    assert schema["type"] == "object"
    assert set(schema["required"]) == {"code", "type", "message"}
    assert schema["properties"]["code"]["type"] == "integer"
    assert schema["properties"]["type"]["type"] == "string"
    assert schema["properties"]["message"]["type"] == "string"


def test_error_responses_reference_error_schema(doc: dict[str, Any]) -> None:
    checked = 0
    for path, method, op in operations(doc):
        if path == "/ping":
            continue  # its 500 carries the health body, checked below
        for code, response in op["responses"].items():
            if code[0] in "45":
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR_REF}, (method, path, code)
                checked += 1
    assert checked > 0


def test_ping(doc: dict[str, Any]) -> None:
    responses = doc["paths"]["/ping"]["get"]["responses"]
    assert set(responses) == {"200", "500", "503"}
    health = doc["components"]["schemas"]["Health"]
    for code in ("200", "500", "503"):
        ref = responses[code]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/Health"
    assert set(health["properties"]) == {"status", "health"}
    assert set(health["properties"]["status"]["enum"]) == {"Healthy", "Unhealthy"}


@pytest.mark.parametrize("path", HANDLER_PATHS)
def test_handler_operations(doc: dict[str, Any], path: str) -> None:
    for op in doc["paths"][path].values():
        content = op["requestBody"]["content"]
        assert set(content) == {
            "application/octet-stream",
            "image/*",
            "text/plain",
            "application/json",
            "multipart/form-data",
        }
        form = content["multipart/form-data"]["schema"]
        assert form["properties"]["data"] == {"type": "string", "format": "binary"}
        assert "data" in form["required"]
        assert set(op["responses"]) == {"200"} | INFERENCE_ERROR_CODES
        assert "content" in op["responses"]["200"]


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/v1/models/{model_name}:predict", "predictions"),
        ("/v1/models/{model_name}:explain", "explanations"),
    ],
)
def test_kserve_v1(doc: dict[str, Any], path: str, key: str) -> None:
    op = doc["paths"][path]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["instances"]
    assert body["properties"]["instances"]["type"] == "array"
    out = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert out["required"] == [key]
    assert out["properties"][key]["type"] == "array"


def test_description_endpoints(doc: dict[str, Any]) -> None:
    for path, method in (("/", "options"), ("/api-description", "get")):
        response = doc["paths"][path][method]["responses"]["200"]
        assert "application/json" in response["content"]


def test_error_response_helper() -> None:
    response = error_response("Model not found")
    assert response == {
        "description": "Model not found",
        "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
    }
    response["content"].clear()
    assert error_response("x")["content"]


def extra_paths() -> dict[str, Any]:
    return {
        "/models": {
            "get": {
                "operationId": "listModels",
                "summary": "List models.",
                "parameters": [],
                "responses": {"200": {"description": "ok"}, "500": error_response("boom")},
            }
        },
        "/ping": {
            "head": {
                "operationId": "pingHead",
                "summary": "Ping without a body.",
                "parameters": [],
                "responses": {"200": {"description": "ok"}},
            }
        },
    }


def test_add_paths_extends_without_mutating(doc: dict[str, Any]) -> None:
    before = json.dumps(doc, sort_keys=True)
    extended = add_paths(doc, extra_paths())
    assert json.dumps(doc, sort_keys=True) == before
    assert "/models" in extended["paths"]
    assert set(extended["paths"]["/ping"]) == {"get", "head"}
    validate(extended)


def test_add_paths_rejects_duplicate_method(doc: dict[str, Any]) -> None:
    clash = {"/ping": {"get": {"operationId": "other", "responses": {}}}}
    with pytest.raises(ValueError, match="already described"):
        add_paths(doc, clash)


def test_add_paths_rejects_duplicate_operation_id(doc: dict[str, Any]) -> None:
    clash = {"/other": {"get": {"operationId": "ping", "responses": {}}}}
    with pytest.raises(ValueError, match="duplicate operationId"):
        add_paths(doc, clash)
