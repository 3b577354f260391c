"""``ts.handler_utils.timer``: the ``@timed`` decorator."""

from torchwire.compat.util import timed

__all__ = ["timed"]
