"""``ts.torch_handler.base_handler``."""

from torchwire.compat.handlers import BaseHandler

__all__ = ["BaseHandler"]
