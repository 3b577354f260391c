"""``ts.metrics.metric_cache_abstract``: the class of ``context.metrics``."""

from torchwire.handlers.metrics import MetricsCache as MetricCacheAbstract

__all__ = ["MetricCacheAbstract"]
