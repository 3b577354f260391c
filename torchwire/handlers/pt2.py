"""``pt2:`` in model-config.yaml: torch.compile options, read as TorchServe 0.12 reads them.

The current form::

    pt2:
      compile:
        enable: true
        backend: inductor       # optional (torch's default)
        mode: reduce-overhead   # optional; also fullgraph, dynamic, options

and the older ones: ``pt2: inductor`` (a backend name) or ``pt2: {backend: ...,
mode: ...}`` (torch.compile's keyword arguments). ``enable: false`` or no ``pt2``
leaves the model as it is. Unlike TorchServe, which logs a warning and serves the
model uncompiled, a bad option or a failed compile is a load error that says why.

torch.compile is lazy: the graph is compiled on the first call. Give the model a
``warmup`` input (see :mod:`torchwire.workers.warmup`) to compile at load.
"""

from __future__ import annotations

import logging
from typing import Any

from torchwire.errors import HandlerError

log = logging.getLogger(__name__)

COMPILE_KEYS = ("backend", "mode", "fullgraph", "dynamic", "options")


def compile_options(pt2: Any) -> dict[str, Any] | None:
    """torch.compile's keyword arguments for a ``pt2`` value; None: do not compile."""
    if pt2 is None:
        return None
    if isinstance(pt2, str):
        return {"backend": pt2}
    if not isinstance(pt2, dict):
        raise HandlerError(f"model-config.yaml pt2 must be a backend name or a mapping, got "
                           f"{type(pt2).__name__}")
    if "export" in pt2 and "compile" not in pt2:
        raise HandlerError("model-config.yaml pt2.export (AOTInductor packages) is not "
                           "supported; use pt2.compile")
    options = pt2.get("compile", pt2)
    if not isinstance(options, dict):
        raise HandlerError("model-config.yaml pt2.compile must be a mapping")
    if "compile" in pt2 and not options.get("enable", False):
        return None
    unknown = sorted(set(options) - {"enable", *COMPILE_KEYS})
    if unknown:
        raise HandlerError(f"model-config.yaml pt2.compile: unknown option(s) "
                           f"{', '.join(unknown)}; expected {', '.join(COMPILE_KEYS)}")
    return {k: v for k, v in options.items() if k != "enable"}


def _check_backend(backend: Any) -> None:
    import torch

    known = torch._dynamo.list_backends(exclude_tags=())
    if not isinstance(backend, str) or backend not in known:
        raise HandlerError(f"model-config.yaml pt2: backend {backend!r} is not available; "
                           f"torch {torch.__version__} has {', '.join(known)}")


def apply_pt2(model: Any, yaml_config: dict[str, Any]) -> Any:
    """``model`` wrapped by torch.compile as ``pt2`` asks, else ``model`` itself."""
    options = compile_options(yaml_config.get("pt2"))
    if options is None:
        return model
    import torch

    if "backend" in options:
        _check_backend(options["backend"])
    try:
        compiled = torch.compile(model, **options)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad options
        raise HandlerError(f"torch.compile({options}) failed: {type(exc).__name__}: "
                           f"{exc}") from exc
    log.info("model wrapped by torch.compile(%s)", options)
    return compiled
