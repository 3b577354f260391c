"""A tiny real model: a 1x1 linear layer whose weight is model-config.yaml's ``factor``."""

import json

import torch

from torchwire.errors import InvalidInput


class ScaleHandler:
    def initialize(self, context):
        factor = float(context.model_yaml_config.get("factor", 1))
        self.model = torch.nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            self.model.weight.fill_(factor)
        self.model.eval()

    def handle(self, data, context):
        out = []
        for row in data:
            raw = row.get("data", row.get("body"))
            try:
                values = json.loads(raw)
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"expected a JSON list of numbers: {exc}") from None
            with torch.inference_mode():
                y = self.model(torch.tensor(values, dtype=torch.float32).reshape(-1, 1))
            out.append(y.reshape(-1).tolist())
        return out
