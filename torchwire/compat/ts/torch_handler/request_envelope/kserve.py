"""``ts.torch_handler.request_envelope.kserve``."""

from torchwire.compat.envelopes import KServeEnvelope

__all__ = ["KServeEnvelope"]
