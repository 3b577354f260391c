"""``ts.torch_handler.text_classifier``: ``torchwire.handlers.text_classifier.TextClassifier``.

Imported only when a handler imports this module.
"""

from torchwire.compat.handlers import torchserve_flavour

TextClassifier = torchserve_flavour(
    "torchwire.handlers.text_classifier", "TextClassifier", __name__
)

__all__ = ["TextClassifier"]
