"""``ts.torch_handler.request_envelope.base``."""

from torchwire.compat.envelopes import BaseEnvelope

__all__ = ["BaseEnvelope"]
