"""``ts.metrics.dimension``."""

from torchwire.handlers.metrics import Dimension

__all__ = ["Dimension"]
