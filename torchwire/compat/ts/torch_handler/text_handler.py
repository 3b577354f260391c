"""``ts.torch_handler.text_handler``: ``torchwire.handlers.text.TextHandler``.

Imported only when a handler imports this module.
"""

from torchwire.compat.handlers import torchserve_flavour

TextHandler = torchserve_flavour(
    "torchwire.handlers.text", "TextHandler", __name__
)

__all__ = ["TextHandler"]
