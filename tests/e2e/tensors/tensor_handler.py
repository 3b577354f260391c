"""A model-free handler for OIP tests: it reports what it received as tensors.

For a numeric input ``data`` it answers two outputs: ``doubled`` (the input
times two, same dtype and shape) and ``shape`` (the shape it saw, INT64).
For a single BYTES element it answers JSON naming the Python type it got and
the text upper-cased; for several BYTES elements, the elements upper-cased.
"""

import numpy as np


def _upper(value):
    return value.upper() if isinstance(value, (str, bytes)) else value


class TensorHandler:
    def initialize(self, context):
        self.context = context

    def handle(self, data, context):
        return [self._one(row) for row in data]

    def _one(self, row):
        value = row["data"]
        if isinstance(value, (str, bytes)):
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            return {"type": type(value).__name__, "upper": text.upper(), "inputs": sorted(row)}
        if value.dtype == object:
            return np.vectorize(_upper, otypes=[object])(value)
        return {"doubled": value * 2, "shape": np.asarray(value.shape, dtype=np.int64)}
