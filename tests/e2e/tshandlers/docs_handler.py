"""A custom handler shaped like the one in TorchServe's "custom service" docs.

Its __init__ does not call BaseHandler's, it loads the TorchScript file itself, and
it answers bad input with ts.utils.util.PredictionException and an HTTP status.
"""

import json
import os

import torch
from ts.context import Context
from ts.torch_handler.base_handler import BaseHandler
from ts.utils.util import PredictionException


class ModelHandler(BaseHandler):
    def __init__(self):
        self._context = None
        self.initialized = False
        self.explain = False
        self.target = 0

    def initialize(self, context):
        self._context = context
        properties = context.system_properties
        model_dir = properties.get("model_dir")
        gpu_id = properties.get("gpu_id")
        use_gpu = torch.cuda.is_available() and gpu_id is not None
        self.device = torch.device(f"cuda:{gpu_id}" if use_gpu else "cpu")
        serialized_file = context.manifest["model"]["serializedFile"]
        model_pt_path = os.path.join(model_dir, serialized_file)
        if not os.path.isfile(model_pt_path):
            raise RuntimeError("Missing the model.pt file")
        self.model = torch.jit.load(model_pt_path, map_location=self.device)
        self.batch_size = properties.get("batch_size")
        self.greeting = context.model_yaml_config.get("greeting")
        self.initialized = True

    def preprocess(self, data):
        rows = []
        for row in data:
            value = row.get("data") or row.get("body")
            if isinstance(value, (bytes, bytearray)):
                value = json.loads(value)
            if not isinstance(value, list):
                raise PredictionException("send a JSON list of numbers", 422)
            rows.append(torch.tensor(value, dtype=torch.float32, device=self.device))
        return rows

    def inference(self, model_input):
        with torch.no_grad():
            return [self.model(row) for row in model_input]

    def postprocess(self, inference_output):
        return [
            {"output": out.tolist(), "batch_size": self.batch_size, "greeting": self.greeting}
            for out in inference_output
        ]

    def handle(self, data, context):
        if not isinstance(context, Context):
            raise PredictionException("not a ts.context.Context", 500)
        return self.postprocess(self.inference(self.preprocess(data)))
