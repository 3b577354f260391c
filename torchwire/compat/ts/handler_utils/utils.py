"""``ts.handler_utils.utils``: newer TorchServe's home of ``send_intermediate_predict_response``."""

from torchwire.compat.streaming import send_intermediate_predict_response

__all__ = ["send_intermediate_predict_response"]
