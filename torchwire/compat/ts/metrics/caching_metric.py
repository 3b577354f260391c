"""``ts.metrics.caching_metric``: the metric objects ``context.metrics`` hands out."""

from torchwire.handlers.metrics import Metric as CachingMetric

__all__ = ["CachingMetric"]
