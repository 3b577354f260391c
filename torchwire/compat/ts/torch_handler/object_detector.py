"""``ts.torch_handler.object_detector``: ``torchwire.handlers.object_detector.ObjectDetector``.

Imported only when a handler imports this module.
"""

from torchwire.compat.handlers import torchserve_flavour

ObjectDetector = torchserve_flavour(
    "torchwire.handlers.object_detector", "ObjectDetector", __name__
)

__all__ = ["ObjectDetector"]
