"""``ts.torch_handler.image_segmenter``: ``torchwire.handlers.image_segmenter.ImageSegmenter``.

Imported only when a handler imports this module.
"""

from torchwire.compat.handlers import torchserve_flavour

ImageSegmenter = torchserve_flavour(
    "torchwire.handlers.image_segmenter", "ImageSegmenter", __name__
)

__all__ = ["ImageSegmenter"]
