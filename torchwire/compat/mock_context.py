"""``MockContext``: a handler's context without a server, for unit tests of handlers.

TorchServe's examples test their handlers with
``ts.torch_handler.unit_tests.test_utils.mock_context.MockContext``; this is the same
constructor over torchwire's :class:`~torchwire.handlers.context.Context`, so a handler
tested with it sees what it sees in a worker (``context.metrics`` included).
"""

from __future__ import annotations

import os

from torchwire.compat.util import get_yaml_config
from torchwire.handlers.context import Context
from torchwire.handlers.metrics import MetricsCache


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


class MockContext(Context):
    """A context for ``model_dir`` with the manifest naming ``model_pt_file``/``model_file``."""

    def __init__(self, model_pt_file: str | None = "model.pt",
                 model_dir: str = "ts/torch_handler/unit_tests/models/tmp",
                 model_file: str | None = "model.py", gpu_id: str | int | None = "0",
                 model_name: str = "mnist", model_yaml_config_file: str | None = None) -> None:
        model: dict[str, str] = {}
        if model_pt_file:
            model["serializedFile"] = model_pt_file
        if model_file:
            model["modelFile"] = model_file
        gpu = int(gpu_id) if gpu_id not in (None, "") and _cuda_available() else None
        yaml_config = (get_yaml_config(os.path.join(model_dir, model_yaml_config_file))
                       if model_yaml_config_file else {})
        super().__init__(model_name, model_dir, {"model": model}, 1, gpu,
                         model_yaml_config=yaml_config, metrics=MetricsCache(model_name))
        if gpu is None:
            self.system_properties.pop("gpu_id")
        self.explain = False
        self.start_batch(["mock-request-0"], [{}])

    def get_request_header(self, idx: int, key: str) -> str | None:
        """``"True"`` for ``explain`` when ``self.explain`` is set; else the header."""
        if key == "explain" and self.explain:
            return "True"
        if idx >= len(self.request_processor):
            return None
        return super().get_request_header(idx, key)


__all__ = ["MockContext"]
