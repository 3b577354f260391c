"""``ts.torch_handler.vision_handler``."""

from torchwire.compat.handlers import VisionHandler

__all__ = ["VisionHandler"]
