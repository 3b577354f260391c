"""Warm-up: run a sample input through the whole handler before the worker is ready.

A torchwire key of model-config.yaml (TorchServe has none)::

    warmup:
      file: kitten.jpg           # a file in the archive, sent as the request body
      content_type: image/jpeg   # optional: decoded as a request with this Content-Type
      batch_sizes: [1, 8]        # optional (default [1]): one warm-up batch of each size

or ``json: <any value>`` (a JSON body) or ``text: "..."`` (a text body) instead of
``file``. The worker reports ready only after every warm-up batch answered; a
warm-up that fails is a load error. Lazy work (torch.compile's compilation,
cuDNN autotuning, allocator growth, imports inside the handler) so happens at load
instead of in the first client request.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchwire.errors import HandlerError
from torchwire.protocol import Batch, Item, Outcome, Param

log = logging.getLogger(__name__)

KEYS = ("file", "json", "text", "content_type", "batch_sizes")
Run = Callable[[Batch], list[Outcome]]


def _file_param(name: Any, model_dir: Path, content_type: str) -> Param:
    path = (model_dir / str(name)).resolve()
    if not path.is_relative_to(model_dir.resolve()) or not path.is_file():
        raise HandlerError(f"model-config.yaml warmup.file {name!r} is not a file in the "
                           "archive (add it with --extra-files)")
    return Param("body", path.read_bytes(), content_type)


def warmup_param(conf: dict[str, Any], model_dir: Path) -> Param:
    """The warm-up request's body, as a client's request would carry it."""
    given = [k for k in ("file", "json", "text") if k in conf]
    if len(given) != 1:
        raise HandlerError("model-config.yaml warmup needs exactly one of file, json, text")
    ctype = conf.get("content_type")
    if given == ["file"]:
        return _file_param(conf["file"], model_dir, str(ctype or ""))
    if given == ["json"]:
        return Param("body", json.dumps(conf["json"]).encode(), str(ctype or "application/json"))
    return Param("body", str(conf["text"]).encode(), str(ctype or "text/plain"))


def batch_sizes(conf: dict[str, Any]) -> list[int]:
    sizes = conf.get("batch_sizes", [1])
    if (not isinstance(sizes, list) or not sizes
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes)):
        raise HandlerError(f"model-config.yaml warmup.batch_sizes must be a list of positive "
                           f"integers, got {sizes!r}")
    return sizes


def check(conf: Any) -> dict[str, Any]:
    if not isinstance(conf, dict):
        raise HandlerError("model-config.yaml warmup must be a mapping (file, json or text)")
    unknown = sorted(set(conf) - set(KEYS))
    if unknown:
        raise HandlerError(f"model-config.yaml warmup: unknown key(s) {', '.join(unknown)}; "
                           f"expected {', '.join(KEYS)}")
    return conf


def warm_up(run: Run, yaml_config: dict[str, Any], model_dir: Path) -> None:
    """Run the configured warm-up batches through ``run``; HandlerError if one fails."""
    if yaml_config.get("warmup") is None:
        return
    conf = check(yaml_config["warmup"])
    param = warmup_param(conf, model_dir)
    for size in batch_sizes(conf):
        start = time.perf_counter()
        items = tuple(Item(f"warmup-{size}-{i}", (param,), {}) for i in range(size))
        for outcome in run(Batch(-1, items)):
            if outcome.error is not None:
                raise HandlerError(f"warm-up (batch of {size}) failed: "
                                   f"{outcome.error.message}")
        log.info("warm-up batch of %d took %.0f ms", size, (time.perf_counter() - start) * 1e3)
