"""The OpenAPI documents behind OPTIONS / on :8080 and :8081 against TorchServe's.

The facts below are read from TorchServe's own
frontend/server/src/test/resources/{inference,management}_open_api.json (0.12): for
every path, each method's parameter names and response codes. On every path both
servers have, torchwire's document must list the same methods, every TorchServe
parameter and response code, and beyond them only the deliberate extras named here.
"""

from __future__ import annotations

from typing import Any

import pytest

from torchwire.api.kserve_v2_doc import oip_paths
from torchwire.api.management_doc import management_document
from torchwire.api.openapi import add_paths, inference_document

Facts = dict[str, dict[str, tuple[set[str], set[int]]]]

_DESCRIBED = {200, 500}
_PREDICT = {200, 404, 500, 503}
_SCALE = {"min_worker", "max_worker", "number_gpu", "synchronous", "timeout"}
_SCALE_CODES = {200, 202, 210, 400, 404, 500}
_DELETE = {"synchronous", "timeout"}
_DELETE_CODES = {200, 202, 404, 408, 500}

TORCHSERVE_INFERENCE: Facts = {
    "/": {"options": (set(), _DESCRIBED)},
    "/ping": {"get": (set(), {200, 500})},
    "/v1/models/{model_name}:predict": {"post": ({"model_name"}, _PREDICT)},
    "/v2/models/{model_name}/infer": {"post": ({"model_name"}, _PREDICT)},
    "/predictions/{model_name}": {"post": ({"model_name"}, _PREDICT)},
    "/predictions/{model_name}/{model_version}": {
        "post": ({"model_name", "model_version"}, _PREDICT)},
    "/api-description": {"get": (set(), _DESCRIBED)},
    "/metrics": {"get": ({"name[]"}, {200, 500})},
}

TORCHSERVE_MANAGEMENT: Facts = {
    "/": {"options": (set(), _DESCRIBED)},
    "/models": {
        "get": ({"limit", "next_page_token"}, {200, 500}),
        "post": ({"url", "model_name", "handler", "runtime", "batch_size", "max_batch_delay",
                  "response_timeout", "startup_timeout", "initial_workers", "synchronous",
                  "s3_sse_kms"}, {200, 202, 210, 400, 404, 409, 500})},
    "/models/{model_name}": {
        "get": ({"model_name"}, {200, 404, 500}),
        "put": ({"model_name", *_SCALE}, _SCALE_CODES),
        "delete": ({"model_name", *_DELETE}, _DELETE_CODES)},
    "/models/{model_name}/{model_version}": {
        "get": ({"model_name", "model_version"}, {200, 404, 500}),
        "put": ({"model_name", "model_version", *_SCALE}, _SCALE_CODES),
        "delete": ({"model_name", "model_version", *_DELETE}, _DELETE_CODES)},
    "/models/{model_name}/{model_version}/set-default": {
        "put": ({"model_name", "model_version"}, {200, 404, 500})},
    "/api-description": {"get": (set(), _DESCRIBED)},
    "/metrics": {"get": ({"name[]"}, {200, 500})},
}

# torchwire's deliberate extras on shared paths
EXTRA_METHODS = {"/predictions/{model_name}": {"put"},
                 "/predictions/{model_name}/{model_version}": {"put"}}
EXTRA_PARAMETERS = {"customized"}  # TorchServe's own describe option, missing from its file
EXTRA_CODES = {400, 403, 405, 408, 409, 413, 503}  # clearer refusals, keys, overload


def facts(doc: dict[str, Any]) -> Facts:
    return {path: {method: ({p["name"] for p in op.get("parameters", [])},
                            {int(code) for code in op["responses"]})
                   for method, op in item.items()}
            for path, item in doc["paths"].items()}


def mismatches(ours: Facts, theirs: Facts) -> list[str]:
    """Every way a shared path of ``ours`` differs from ``theirs`` beyond the extras."""
    found = []
    for path in sorted(set(ours) & set(theirs)):
        extra = EXTRA_METHODS.get(path, set())
        if set(ours[path]) - extra != set(theirs[path]):
            found.append(f"{path}: methods {sorted(ours[path])} vs {sorted(theirs[path])}")
            continue
        for method, (params, codes) in theirs[path].items():
            our_params, our_codes = ours[path][method]
            if our_params - EXTRA_PARAMETERS != params:
                found.append(f"{method} {path}: parameters {sorted(our_params)}")
            if our_codes - EXTRA_CODES != codes - EXTRA_CODES or not codes <= our_codes:
                found.append(f"{method} {path}: responses {sorted(our_codes)}")
    return found


def served_inference_document() -> dict[str, Any]:
    return add_paths(inference_document("1.2.3"), oip_paths())  # what OPTIONS / on :8080 sends


@pytest.mark.parametrize("with_token", [True, False])
def test_management_document_matches_torchserve_on_shared_paths(with_token: bool) -> None:
    ours = facts(management_document("1.2.3", with_token=with_token))
    assert mismatches(ours, TORCHSERVE_MANAGEMENT) == []
    shared = set(ours) & set(TORCHSERVE_MANAGEMENT)
    assert shared == set(TORCHSERVE_MANAGEMENT) - {"/metrics"}  # metrics live on :8082


def test_inference_document_matches_torchserve_on_shared_paths() -> None:
    ours = facts(served_inference_document())
    assert mismatches(ours, TORCHSERVE_INFERENCE) == []
    assert set(ours) & set(TORCHSERVE_INFERENCE) == set(TORCHSERVE_INFERENCE) - {"/metrics"}


def test_the_comparison_notices_a_missing_parameter_and_code() -> None:
    ours = facts(management_document("1.2.3"))
    params, codes = ours["/models"]["post"]
    ours["/models"]["post"] = (params - {"s3_sse_kms"}, codes - {210})
    assert mismatches(ours, TORCHSERVE_MANAGEMENT) == [
        "post /models: parameters " + str(sorted(params - {"s3_sse_kms"})),
        "post /models: responses " + str(sorted(codes - {210}))]
