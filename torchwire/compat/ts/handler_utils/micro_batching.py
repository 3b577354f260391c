"""``ts.handler_utils.micro_batching``."""

from torchwire.compat.micro_batching import MicroBatching

__all__ = ["MicroBatching"]
