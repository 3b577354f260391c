"""``ts.torch_handler.request_envelope``: TorchServe's request envelopes, reimplemented.

An envelope wraps a handle function: it turns the rows of a batch in some protocol's
format into flat inputs, calls the function, and formats its results back. torchwire
serves KServe v1/v2 itself (no ``service_envelope`` switch), so these are for handlers
that wrap themselves: ``JSONEnvelope(self._handle).handle(data, context)``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from torchwire.errors import InvalidInput

HandleFn = Callable[[list[Any], Any], list[Any]]

NUMPY_TO_V2 = {
    "bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32",
    "uint64": "UINT64", "int8": "INT8", "int16": "INT16", "int32": "INT32",
    "int64": "INT64", "float16": "FP16", "float32": "FP32", "float64": "FP64",
}


def row_body(row: Any) -> Any:
    """A request row's payload: its ``data`` or ``body`` field (TorchServe's rule)."""
    return (row.get("data") or row.get("body")) if isinstance(row, dict) else row


def json_body(value: Any) -> Any:
    """A payload that may still be JSON bytes, parsed."""
    if isinstance(value, bytes | bytearray):
        try:
            return json.loads(bytes(value).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidInput(f"the request body is not JSON: {exc}") from exc
    return value


def _field(body: Any, key: str, what: str) -> Any:
    if not isinstance(body, dict) or key not in body:
        raise InvalidInput(f"a {what} request needs a JSON object with {key!r}")
    return body[key]


class BaseEnvelope:
    """Parse the batch, run the wrapped function, format its results."""

    def __init__(self, handle_fn: HandleFn) -> None:
        self._handle_fn = handle_fn
        self.context: Any = None

    def handle(self, data: list[Any], context: Any) -> list[Any]:
        self.context = context
        if data:
            data = self.parse_input(data)
        results = self._handle_fn(data, context)
        return self.format_output(results) if results else results

    def parse_input(self, data: list[Any]) -> list[Any]:
        raise NotImplementedError

    def format_output(self, data: list[Any]) -> list[Any]:
        raise NotImplementedError


class BodyEnvelope(BaseEnvelope):
    """Each row's payload as it is; results unchanged."""

    def parse_input(self, data: list[Any]) -> list[Any]:
        return [row_body(row) for row in data]

    def format_output(self, data: list[Any]) -> list[Any]:
        return data


def _unbase64(value: Any) -> Any:
    if isinstance(value, dict) and list(value) == ["b64"]:
        return base64.b64decode(value["b64"])
    return value


class JSONEnvelope(BaseEnvelope):
    """TensorFlow Serving's JSON: ``{"instances": [...]}`` in, ``{"predictions": [...]}``
    out, one answer per request; ``{"b64": ...}`` values become bytes."""

    def __init__(self, handle_fn: HandleFn) -> None:
        super().__init__(handle_fn)
        self._lengths: list[int] = []

    def parse_input(self, data: list[Any]) -> list[Any]:
        groups = [self._instances(row) for row in data]
        self._lengths = [len(g) for g in groups]
        return [instance for group in groups for instance in group]

    @staticmethod
    def _instances(row: Any) -> list[Any]:
        body = json_body(row_body(row) or row)
        rows = _field(body, "instances", "JSON")
        if not isinstance(rows, list):
            raise InvalidInput("'instances' must be a list")
        return [
            {k: _unbase64(v) for k, v in r.items()} if isinstance(r, dict) and list(r) != ["b64"]
            else _unbase64(r)
            for r in rows
        ]

    def format_output(self, data: list[Any]) -> list[Any]:
        out, cursor = [], 0
        for length in self._lengths:
            out.append(json.dumps({"predictions": data[cursor:cursor + length]}))
            cursor += length
        return out


class KServeEnvelope(BaseEnvelope):
    """KServe v1: the first request's ``instances`` in; one ``{"predictions": [...]}``
    (or ``"explanations"``) out."""

    def parse_input(self, data: list[Any]) -> list[Any]:
        instances = _field(json_body(row_body(data[0])), "instances", "KServe v1")
        if not isinstance(instances, list):
            raise InvalidInput("'instances' must be a list")
        return instances

    def format_output(self, data: list[Any]) -> list[Any]:
        key = "explanations" if self._is_explain() else "predictions"
        return [{key: data}]

    def _is_explain(self) -> bool:
        ctx = self.context
        return bool(ctx and ctx.request_processor and
                    ctx.get_request_header(0, "explain") == "True")


class KServev2Envelope(BaseEnvelope):
    """KServe v2 (Open Inference Protocol) JSON: the first request's ``inputs`` in, each
    reshaped to its ``shape``; one response with an output per result, named after the
    input at its place."""

    def parse_input(self, data: list[Any]) -> list[Any]:
        import numpy as np

        body = json_body(row_body(data[0]))
        inputs = _field(body, "inputs", "KServe v2")
        names = []
        for item in inputs:
            if item.get("datatype") == "BYTES":
                item["data"] = item["data"][0]
            else:
                item["data"] = np.array(item["data"]).reshape(tuple(item["shape"])).tolist()
            names.append(item.get("name"))
        self.context.input_names = names
        request_id = body.get("id")
        if isinstance(request_id, str) and request_id.strip():
            self.context.input_request_id = request_id
        return list(inputs)

    def format_output(self, data: list[Any]) -> list[Any]:
        ctx = self.context
        model = (ctx.manifest or {}).get("model") or {}
        request_id = getattr(ctx, "input_request_id", None) or ctx.get_request_id(0)
        names = getattr(ctx, "input_names", None) or []
        for attr in ("input_request_id", "input_names"):
            if hasattr(ctx, attr):
                delattr(ctx, attr)
        outputs = [self._output(item, names[i] if i < len(names) else f"output-{i}")
                   for i, item in enumerate(data)]
        return [{"id": request_id, "model_name": model.get("modelName"),
                 "model_version": model.get("modelVersion"), "outputs": outputs}]

    @staticmethod
    def _output(item: Any, name: str) -> dict[str, Any]:
        import numpy as np

        flat = np.array(item).flatten()
        kind = NUMPY_TO_V2.get(str(flat.dtype), "BYTES")
        return {"name": name, "datatype": kind, "data": flat.tolist(), "shape": list(flat.shape)}


__all__ = ["BaseEnvelope", "BodyEnvelope", "JSONEnvelope", "KServeEnvelope", "KServev2Envelope"]
