"""The process environment, read here and nowhere else in torchwire."""

from __future__ import annotations

import os

WORKER_LOG_LEVEL = "TORCHWIRE_WORKER_LOG_LEVEL"


def environment() -> dict[str, str]:
    """A copy of this process's environment (what a worker process inherits, GPU variables)."""
    return dict(os.environ)


def worker_log_level() -> str:
    """A worker's log level: ``TORCHWIRE_WORKER_LOG_LEVEL``, default ``INFO``."""
    return os.environ.get(WORKER_LOG_LEVEL, "").strip() or "INFO"
