"""``ts.torch_handler.request_envelope.json``."""

from torchwire.compat.envelopes import JSONEnvelope

__all__ = ["JSONEnvelope"]
