"""``ts.protocol.otf_message_handler``: what handlers import from it (streamed answers)."""

from torchwire.compat.streaming import send_intermediate_predict_response

__all__ = ["send_intermediate_predict_response"]
