"""``ts.metrics``: the custom metrics API handlers reach through ``context.metrics``."""
