"""A model-free handler whose behaviour the tests steer with the request text."""

import os
import time

from torchwire.errors import InvalidInput


def _wait_for(path, limit=60.0):
    """The model's own behaviour: stay busy until the test creates ``path``."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.path.exists(path)


def _text(row):
    value = row.get("data", row.get("body"))
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)


class ToyHandler:
    def initialize(self, context):
        self.context = context
        if os.environ.get("TOY_FAIL_LOAD") or context.model_yaml_config.get("fail_load"):
            raise RuntimeError("toy model refuses to load")
        gate = context.model_yaml_config.get("load_gate")
        if gate:  # a slow-loading model: initialize lasts until the test creates ``gate``
            _wait_for(gate, limit=120.0)

    def handle(self, data, context):
        if context.get_request_header(0, "describe") == "True":
            return [self.describe_handle()]
        texts = [_text(row) for row in data]
        if "wrong-count" in texts:
            return []
        return [self._header(i, t[len("header:"):], context) if t.startswith("header:")
                else self._one(t, len(texts)) for i, t in enumerate(texts)]

    def _header(self, index, name, context):
        return {"header": name, "value": context.get_request_header(index, name)}

    def _one(self, text, batch):
        if text == "pid":
            return {"pid": os.getpid(), "gpu_id": self.context.system_properties["gpu_id"]}
        if text == "model_dir":
            return {"model_dir": self.context.system_properties["model_dir"]}
        if text.startswith("sleep:"):
            time.sleep(float(text.split(":")[1]))
            return {"slept": True, "pid": os.getpid()}
        if text.startswith("block:"):
            return self._block(text.split(":", 1)[1])
        if text.startswith("metric:"):
            return self._record(float(text.split(":")[1]))
        if text == "crash":
            os._exit(3)
        if text == "boom":
            raise ValueError("toy exploded")
        if text == "bad":
            raise InvalidInput("toy cannot read 'bad'")
        return {"echo": text, "batch": batch}

    def _block(self, path):
        open(path + ".started", "w").close()  # a test may wait for this (no sleeps)
        return {"released": _wait_for(path)}

    def _record(self, value):
        metrics = self.context.metrics
        metrics.add_counter("toy_calls", 1)
        metrics.add_time("toy_last_ms", value)
        sizes = metrics.add_metric_to_cache("toy_size", "count", ["kind"], "histogram")
        sizes.add_or_update(value, ["demo"])
        return {"recorded": value}

    def describe_handle(self):
        return {"toy": "metadata"}
