"""``ts.metrics.metric_type_enum``."""

from torchwire.handlers.metrics import MetricTypes

__all__ = ["MetricTypes"]
