"""``ts.torch_handler.request_envelope.body``."""

from torchwire.compat.envelopes import BodyEnvelope

__all__ = ["BodyEnvelope"]
