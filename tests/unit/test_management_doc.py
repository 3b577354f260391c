"""The management port's OpenAPI document."""

from __future__ import annotations

import json

from openapi_spec_validator import OpenAPIV30SpecValidator, validate

from torchwire.api.management_doc import management_document

EXPECTED = {
    "/": {"options"},
    "/api-description": {"get"},
    "/models": {"get", "post"},
    "/models/{model_name}": {"get", "put", "delete"},
    "/models/{model_name}/{model_version}": {"get", "put", "delete"},
    "/models/{model_name}/{model_version}/set-default": {"put"},
    "/v1/models/{model_name}": {"get"},
    "/token": {"get"},
    "/workflows": {"get", "post"},
    "/workflows/{workflow_name}": {"get", "delete"},
}


def test_validates_and_lists_every_route() -> None:
    doc = management_document("1.2.3")
    validate(doc, cls=OpenAPIV30SpecValidator)
    assert {p: set(item) for p, item in doc["paths"].items()} == EXPECTED
    assert json.loads(json.dumps(doc)) == doc
    assert doc["security"] == [{"bearer": []}]


def test_without_auth_there_is_no_token_route() -> None:
    doc = management_document("1.2.3", with_token=False)
    validate(doc)
    assert "/token" not in doc["paths"] and "security" not in doc


def test_register_documents_its_statuses() -> None:
    op = management_document("1")["paths"]["/models"]["post"]
    assert {"200", "202", "400", "404", "405", "409", "500"} <= set(op["responses"])
    names = {p["name"] for p in op["parameters"]}
    assert {"url", "model_name", "initial_workers", "synchronous", "batch_size"} <= names
