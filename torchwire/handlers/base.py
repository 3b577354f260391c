"""BaseHandler: TorchServe's handler contract, with torch imported only in workers.

A handler's ``handle`` may put an ``Exception`` instance at a request's place in
the returned list: that request alone gets the error, the others their results.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from torchwire.errors import ExplanationsNotSupported, HandlerError, InvalidInput
from torchwire.handlers.context import Context
from torchwire.handlers.pt2 import apply_pt2

log = logging.getLogger(__name__)

EXPLAIN_HEADER = "explain"
DESCRIBE_HEADER = "describe"  # set on the request behind GET /models/{m}?customized=true


def import_file(path: Path) -> ModuleType:
    """Import ``path`` as a module named after its stem (as TorchServe does)."""
    name = path.stem
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise HandlerError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_label_mapping(path: Path) -> dict[str, Any] | None:
    """Read ``index_to_name.json`` if present: ``{"0": "cat", ...}``."""
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as fh:
        mapping = json.load(fh)
    if not isinstance(mapping, dict):
        raise HandlerError(f"{path.name} must hold a JSON object mapping class index to name")
    return mapping


def label_of(mapping: dict[str, Any] | None, index: int) -> str:
    """The class name for ``index``; the index as a string when there is none.

    A mapping value may be a name or a list whose last element is the name, as in
    ImageNet's ``["n02123045", "tabby"]``.
    """
    name = mapping.get(str(index)) if mapping else None
    if isinstance(name, list | tuple):
        name = name[-1] if name else None
    return str(index) if name is None else str(name)


def merge_results(results: list[Any], failures: list[BaseException | None]) -> list[Any]:
    """The good rows' results in order, with each failed row's exception at its place."""
    good = iter(results)
    return [next(good) if err is None else err for err in failures]


def regroup(flat: list[Any], counts: list[tuple[int, bool]]) -> list[Any]:
    """Per-input results back to per-request answers: a list where a request sent several."""
    results = iter(flat)
    answers = []
    for count, several in counts:
        mine = [next(results) for _ in range(count)]
        answers.append(mine if several else mine[0])
    return answers


def check_count(handler: object, results: Any, expected: int, what: str) -> list[Any]:
    """``results`` if it is a list of ``expected`` items; a HandlerError saying so if not."""
    if not isinstance(results, list) or len(results) != expected:
        got = len(results) if isinstance(results, list) else type(results).__name__
        raise HandlerError(f"{type(handler).__name__} returned {got} results for {expected} {what}")
    return results


OPTION_FIELDS = frozenset({"target"})


def input_fields(
    row: Any, single: tuple[str, ...], what: str
) -> tuple[list[tuple[str, Any]], bool]:
    """A request's inputs as ``(field, value)`` pairs, and whether it sent several.

    The first of the ``single`` fields present (``data``, ``body``) is the one input,
    TorchServe's rule; without any, every field except options such as ``target`` is
    an input (a multipart form of several files), answered in the order sent.
    """
    if isinstance(row, dict):
        for key in single:
            if row.get(key) is not None:
                return [(key, row[key])], False
        fields = [(k, v) for k, v in row.items() if k not in OPTION_FIELDS and v is not None]
        if fields:
            return fields, len(fields) > 1
    raise InvalidInput(f"the request has no {what}: send it as the body or as the multipart "
                       f"field 'data'")


def row_target(row: Any) -> int | None:
    """The ``target`` class a request asks an explanation for (JSON, form field or query)."""
    value = row.get("target") if isinstance(row, dict) else None
    if isinstance(value, bytes | bytearray):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise InvalidInput(f"'target' must be a class index (an integer), not {value!r}")


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch ops on one intra-op thread, as per-image transforms should.

    Small tensor ops (ToTensor, Normalize on one image) gain nothing from the worker's
    thread pool and lose much when the cores are busy: the pool's threads wait for
    each other on every op. Inference, on whole batches, keeps all the threads.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def pick_device(gpu_id: int | None) -> Any:
    import torch

    if gpu_id is not None and torch.cuda.is_available():
        torch.cuda.set_device(gpu_id)
        return torch.device(f"cuda:{gpu_id}")
    return torch.device("cpu")


def single_module_class(module: ModuleType, base: type) -> type:
    """The one subclass of ``base`` defined in ``module``; a clear error otherwise."""
    found = [
        obj
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if obj.__module__ == module.__name__ and issubclass(obj, base)
    ]
    if len(found) != 1:
        names = ", ".join(c.__name__ for c in found) or "none"
        raise HandlerError(
            f"{module.__name__} must define exactly one {base.__name__} subclass, found {names}"
        )
    return found[0]


class BaseHandler:
    """Loads the archive's model and runs preprocess → inference → postprocess."""

    def __init__(self) -> None:
        self.model: Any = None
        self.mapping: dict[str, Any] | None = None
        self.device: Any = None
        self.initialized = False
        self.context: Context | None = None
        self.manifest: dict[str, Any] = {}
        self.model_yaml_config: dict[str, Any] = {}
        self.explain = False

    # -- loading ---------------------------------------------------------------
    def initialize(self, context: Context) -> None:
        self.context = context
        self.manifest = context.manifest
        self.model_yaml_config = context.model_yaml_config
        props = context.system_properties
        model_dir = Path(props["model_dir"])
        self.device = pick_device(props.get("gpu_id"))
        self.model = apply_pt2(self.load_model(model_dir), self.model_yaml_config)
        self.mapping = load_label_mapping(model_dir / "index_to_name.json")
        self.initialized = True
        log.info("model %s loaded on %s", context.model_name, self.device)

    def load_model(self, model_dir: Path) -> Any:
        import torch

        model_info = self.manifest.get("model", {})
        serialized = model_info.get("serializedFile")
        weights = model_dir / serialized if serialized else None
        model_file = model_info.get("modelFile")
        if model_file:
            model = self._load_eager(model_dir / model_file, weights)
        elif weights is not None:
            model = torch.jit.load(str(weights), map_location=self.device)
        else:
            raise HandlerError("the manifest names neither a modelFile nor a serializedFile")
        model.eval()
        return model

    def _load_eager(self, model_file: Path, weights: Path | None) -> Any:
        import torch

        cls = single_module_class(import_file(model_file), torch.nn.Module)
        model = cls()
        if weights is not None:
            state = torch.load(str(weights), map_location=self.device, weights_only=True)
            model.load_state_dict(state)
        return model.to(self.device)

    # -- the pipeline ------------------------------------------------------------
    def preprocess(self, data: list[dict[str, Any]]) -> Any:
        import torch

        rows = [row.get("data", row.get("body")) for row in data]
        return torch.as_tensor(rows, device=self.device)

    def inference(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.inference_mode():
            return self.model(data.to(self.device, non_blocking=True), *args, **kwargs)

    def postprocess(self, data: Any) -> list[Any]:
        return data.tolist()

    def handle(self, data: list[dict[str, Any]], context: Context) -> list[Any]:
        self.context = context
        if self._is_describe():
            return [self.describe_handle()]
        batch = self.preprocess(data)
        if self._is_explain():
            return self.explain_handle(batch, data)
        return self.postprocess(self.inference(batch))

    # -- customized describe -----------------------------------------------------
    def _is_describe(self) -> bool:
        ctx = self.context
        return bool(
            ctx and ctx.request_processor and ctx.get_request_header(0, DESCRIBE_HEADER) == "True"
        )

    def describe_handle(self) -> Any:
        """Metadata for ``GET /models/{name}?customized=true``; override to provide some."""
        return None

    # -- explanations ------------------------------------------------------------
    def _is_explain(self) -> bool:
        ctx = self.context
        self.explain = bool(
            ctx and ctx.request_processor and ctx.get_request_header(0, EXPLAIN_HEADER) == "True"
        )
        return self.explain

    def explain_handle(self, data_preprocess: Any, raw_data: list[dict[str, Any]]) -> list[Any]:
        target = 0
        if raw_data and isinstance(raw_data[0], dict):
            target = raw_data[0].get("target", 0)
        return self.get_insights(data_preprocess, raw_data, target)

    def get_insights(self, tensor_data: Any, raw_data: Any, target: Any) -> list[Any]:
        name = type(self).__name__
        raise ExplanationsNotSupported(f"handler {name} does not support explanations")
