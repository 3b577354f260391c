"""A handler that wraps itself in TorchServe's request envelopes (JSON and KServe v2)."""

from ts.torch_handler.base_handler import BaseHandler
from ts.torch_handler.request_envelope.json import JSONEnvelope
from ts.torch_handler.request_envelope.kservev2 import KServev2Envelope


class EnvelopeAffine(BaseHandler):
    def initialize(self, context):
        self.context = context  # no weights: the "model" is the affine map below
        self.initialized = True
        self.json = JSONEnvelope(self._rows)
        self.v2 = KServev2Envelope(self._rows)

    def _rows(self, values, context):
        rows = [v["data"] if isinstance(v, dict) else v for v in values]
        return [[x * 2.0 + 1.0 for x in row] for row in rows]

    def handle(self, data, context):
        body = data[0].get("body")
        if isinstance(body, dict) and "inputs" in body:
            return self.v2.handle(data, context)
        return self.json.handle(data, context)
