"""The workflow's function nodes: TorchServe's (data, context) signature."""

import json

from torchwire.errors import InvalidInput


def preprocess(data, context):
    if data is None:
        return None
    out = []
    for row in data:
        raw = row.get("data") or row.get("body")  # parsed already when sent as JSON
        try:
            values = (raw if isinstance(raw, dict) else json.loads(raw))["values"]
        except (TypeError, ValueError, KeyError) as exc:
            raise InvalidInput(f"send {{\"values\": [numbers]}}: {exc}") from None
        if "boom" in values:
            raise RuntimeError("preprocess cannot take 'boom'")
        out.append([float(v) for v in values])
    return out


def aggregate(data, context):
    if data is None:
        return None
    out = []
    for row in data:
        double = json.loads(row["double"])
        triple = json.loads(row["triple"])
        out.append({"double": double, "triple": triple,
                    "sum": [a + b for a, b in zip(double, triple, strict=True)]})
    return out
