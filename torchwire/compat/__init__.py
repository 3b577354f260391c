"""TorchServe compatibility: custom handlers that import ``ts.*`` run unchanged.

``torchwire/compat/ts`` is a ``ts`` package of thin modules re-exporting torchwire's
classes under TorchServe's names. Workers call :func:`enable_ts_compat` before
loading a handler: it appends this folder to ``sys.path`` only when no real ``ts``
(TorchServe) is importable, so an installed TorchServe always wins. Nothing puts a
top-level ``ts`` into site-packages, and the front process never imports it.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def ts_root() -> Path:
    """The folder that holds the stand-in ``ts`` package."""
    return Path(__file__).resolve().parent


def real_torchserve_installed() -> bool:
    """True when ``import ts`` finds a regular package or module (not our stand-in)."""
    spec = importlib.util.find_spec("ts")
    if spec is None or spec.origin in (None, "namespace"):
        return False
    return not Path(spec.origin).resolve().is_relative_to(ts_root())


def enable_ts_compat() -> bool:
    """Make ``import ts`` resolve to the stand-in unless TorchServe is installed."""
    root = str(ts_root())
    if root in sys.path:
        return True
    if real_torchserve_installed():
        log.info("TorchServe's own ts package is installed; handlers import it")
        return False
    sys.path.append(root)
    return True
