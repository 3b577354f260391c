"""``ts.torch_handler.image_classifier``."""

from torchwire.compat.handlers import ImageClassifier

__all__ = ["ImageClassifier"]
