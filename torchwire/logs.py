"""The server's log files, configured once at start.

Under the log folder (``log_location``, default ``./logs``), as TorchServe lays them out:

- ``ts_log.log``: the server's own messages (TorchServe's name for it);
- ``access_log.log``: one line per HTTP request (method, path, status, model, version,
  latency), from the ``torchwire.access`` logger;
- ``model_log.log``: every line the worker processes print or log, each prefixed with
  its worker's id, from the ``torchwire.model`` logger;
- ``ts_metrics.log`` and ``model_metrics.log``: TorchServe's metric lines in the ``log``
  and ``legacy`` metrics modes (created at the first line; not on the console).

Each also goes to the console (stderr), which is the terminal in ``--foreground``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

ACCESS_LOG = "torchwire.access"
TS_METRICS_LOG = "torchwire.ts_metrics"
MODEL_METRICS_LOG = "torchwire.model_metrics"
MODEL_LOG = "torchwire.model"

SERVER_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS_FORMAT = "%(asctime)s ACCESS %(message)s"
MODEL_FORMAT = "%(message)s"  # worker lines carry their own time stamps
METRICS_FORMAT = "%(asctime)s,%(msecs)03d - %(message)s"  # log4j's "%d{ISO8601} - %m"
METRICS_DATES = "%Y-%m-%dT%H:%M:%S"


def _handlers(path: Path, fmt: str, console: bool,
              dates: str | None = None) -> list[logging.Handler]:
    handlers: list[logging.Handler] = [logging.FileHandler(path, delay=dates is not None)]
    if console:
        handlers.append(logging.StreamHandler(sys.stderr))
    formatter = logging.Formatter(fmt, dates)
    for handler in handlers:
        handler.setFormatter(formatter)
    return handlers


def _own_file(name: str, path: Path, fmt: str, console: bool,
              dates: str | None = None) -> None:
    logger = logging.getLogger(name)
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    for handler in _handlers(path, fmt, console, dates):
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def configure_logging(log_dir: Path, console: bool = True) -> None:
    """Send the server, access and model logs to their files under ``log_dir``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO, handlers=_handlers(log_dir / "ts_log.log", SERVER_FORMAT, console),
        force=True,
    )
    _own_file(ACCESS_LOG, log_dir / "access_log.log", ACCESS_FORMAT, console)
    _own_file(MODEL_LOG, log_dir / "model_log.log", MODEL_FORMAT, console)
    for name, file in ((TS_METRICS_LOG, "ts_metrics.log"), (MODEL_METRICS_LOG,
                                                             "model_metrics.log")):
        _own_file(name, log_dir / file, METRICS_FORMAT, False, METRICS_DATES)
