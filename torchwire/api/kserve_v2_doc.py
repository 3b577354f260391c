"""The Open Inference Protocol (KServe v2) paths of the inference port's OpenAPI document."""

from __future__ import annotations

from typing import Any

from torchwire.api.openapi import json_response, model_parameters, operation


def oip_error(description: str) -> dict[str, Any]:
    """OIP errors are ``{"error": "..."}``, not TorchServe's error object."""
    schema = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
    return json_response(description, schema)


def _errors() -> dict[str, Any]:
    return {
        "400": oip_error("The request or its tensors are malformed."),
        "404": oip_error("Unknown model or version."),
        "500": oip_error("The handler failed."),
        "503": oip_error("The model cannot serve now (queue full, no worker)."),
    }


def _object(description: str) -> dict[str, Any]:
    return json_response(description, {"type": "object"})


def _infer_body() -> dict[str, Any]:
    tensor = {"type": "object", "required": ["name", "shape", "datatype"],
              "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                             "shape": {"type": "array", "items": {"type": "integer"}},
                             "data": {}}}
    schema = {"type": "object", "required": ["inputs"],
              "properties": {"id": {"type": "string"}, "parameters": {"type": "object"},
                             "inputs": {"type": "array", "items": tensor},
                             "outputs": {"type": "array", "items": {"type": "object"}}}}
    return {"required": True, "content": {"application/json": {"schema": schema},
                                          "application/octet-stream": {"schema": {
                                              "type": "string", "format": "binary"}}}}


def _model_paths(versioned: bool) -> dict[str, Any]:
    base = "/v2/models/{model_name}" + ("/versions/{model_version}" if versioned else "")
    suffix = "Version" if versioned else ""
    params = model_parameters(versioned)
    infer = operation(f"oipInfer{suffix}", "Run inference (Open Inference Protocol).",
                      {"200": _object("The output tensors."), **_errors()}, params, _infer_body())
    explain = operation(f"oipExplain{suffix}", "Explain an inference (Open Inference Protocol).",
                        {"200": _object("The explanation tensors."), **_errors()}, params,
                        _infer_body())
    return {
        base: {"get": operation(f"oipModelMetadata{suffix}", "Model metadata: inputs, outputs.",
                                {"200": _object("Model metadata."), **_errors()}, params)},
        base + "/ready": {"get": operation(f"oipModelReady{suffix}", "Is the model ready?",
                                           {"200": _object("Ready."), **_errors()}, params)},
        base + "/infer": {"post": infer},
        base + "/explain": {"post": explain},
    }


def oip_paths() -> dict[str, Any]:
    """Every ``/v2`` path the inference port serves."""
    return {
        "/v2": {"get": operation("oipServerMetadata", "Server metadata and extensions.",
                                 {"200": _object("Server metadata.")})},
        "/v2/health/live": {"get": operation("oipServerLive", "Is the server live?",
                                             {"200": _object("Live.")})},
        "/v2/health/ready": {"get": operation("oipServerReady", "Are all models ready?",
                                              {"200": _object("Ready."),
                                               "503": oip_error("Not ready.")})},
        **_model_paths(False),
        **_model_paths(True),
    }
