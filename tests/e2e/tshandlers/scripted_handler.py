"""A handler that keeps TorchServe's BaseHandler loading (model_pt_path, TorchScript)."""

from ts.torch_handler.base_handler import BaseHandler


class Scripted(BaseHandler):
    def preprocess(self, data):
        import torch

        return torch.tensor([row.get("data") or row.get("body") for row in data])

    def postprocess(self, data):
        return [{"output": row, "model_pt_path": self.model_pt_path} for row in data.tolist()]
