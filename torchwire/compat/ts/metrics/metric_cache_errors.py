"""``ts.metrics.metric_cache_errors``: what ``context.metrics`` raises."""

from torchwire.handlers.metrics import MetricsCacheKeyError, MetricsCacheValueError

__all__ = ["MetricsCacheKeyError", "MetricsCacheValueError"]
