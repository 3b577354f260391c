"""Handler for the digits MLP: an 8x8 grayscale image (PNG/JPEG, raw or base64), or 64
numbers (0-16) as a JSON list or as an Open Inference Protocol tensor with 64 elements.

Bright pixels are ink. Answers the top 3 digits with their probabilities.
"""

import base64
import io

import torch
from PIL import Image

from torchwire.errors import InvalidInput
from torchwire.handlers.base import BaseHandler


def to_vector(value):
    if isinstance(value, str):  # a base64 image, as KServe clients send images in JSON
        value = base64.b64decode(value, validate=True)
    if isinstance(value, (bytes, bytearray)):
        image = Image.open(io.BytesIO(value)).convert("L").resize((8, 8))
        return torch.tensor(list(image.getdata()), dtype=torch.float32) / 255.0
    if isinstance(value, list) and len(value) == 64:
        return torch.tensor(value, dtype=torch.float32) / 16.0
    if getattr(value, "size", None) == 64 and hasattr(value, "reshape"):  # a numpy array
        return torch.as_tensor(value.reshape(64), dtype=torch.float32) / 16.0
    raise InvalidInput("expected an 8x8 image, or 64 numbers (0-16) as a JSON list or a tensor")


class DigitsHandler(BaseHandler):
    topk = 3

    def preprocess(self, data):
        rows = [to_vector(row.get("data", row.get("body"))) for row in data]
        return torch.stack(rows)

    def postprocess(self, data):
        probs = torch.softmax(data, dim=1)
        top = torch.topk(probs, self.topk, dim=1)
        results = []
        for values, indices in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            names = [self.mapping.get(str(i), str(i)) if self.mapping else str(i) for i in indices]
            results.append(dict(zip(names, values, strict=True)))
        return results
