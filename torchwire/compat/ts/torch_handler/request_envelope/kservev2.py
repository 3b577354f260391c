"""``ts.torch_handler.request_envelope.kservev2``."""

from torchwire.compat.envelopes import KServev2Envelope

__all__ = ["KServev2Envelope"]
