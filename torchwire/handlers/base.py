"""BaseHandler: TorchServe's handler contract, with torch imported only in workers.

``BaseHandler.handle`` is the one pipeline every built-in handler runs; subclasses
override hooks, never ``handle``. A handler that defines ``prepare_row`` decodes each
request on its own (a bad one gets its own error), then its inputs are collated,
run, postprocessed and split back per request. A handler that overrides
``preprocess`` instead gets TorchServe's contract: the whole batch in, one model
input out. A handler's ``handle`` may put an ``Exception`` instance at a request's
place in the returned list: that request alone gets the error, the others their
results.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import logging
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from torchwire.errors import ExplanationsNotSupported, HandlerError, InvalidInput
from torchwire.handlers.context import Context
from torchwire.handlers.labels import load_label_mapping
from torchwire.handlers.pt2 import apply_pt2

log = logging.getLogger(__name__)



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


def merge_results(results: list[Any], failures: list[BaseException | None]) -> list[Any]:
    """The good rows' results in order, with each failed row's exception at its place."""
    good = iter(results)
    return [next(good) if err is None else err for err in failures]


@dataclass
class Prepared:
    """A batch after per-request decoding: the model inputs, the request each came from,
    per good request how many inputs it sent (and whether several), per request its failure."""

    inputs: list[Any] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    counts: list[tuple[int, bool]] = field(default_factory=list)
    failures: list[BaseException | None] = field(default_factory=list)

    def add(self, row: dict[str, Any], inputs: list[Any], several: bool) -> None:
        self.inputs += inputs
        self.rows += [row] * len(inputs)
        self.counts.append((len(inputs), several))
        self.failures.append(None)


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
        """The one pipeline: describe, or decode per request, collate, infer, postprocess
        and split back per request (TorchServe's whole-batch ``preprocess`` if overridden)."""
        self.context = context
        if self._is_describe():
            return [self.describe_handle()]
        if not self._per_row():
            return self._whole_batch(data)
        with self.decoding():
            prepared = self.prepare(data)
        flat = self._run_inputs(prepared) if prepared.inputs else []
        return merge_results(regroup(flat, prepared.counts), prepared.failures)

    def _whole_batch(self, data: list[dict[str, Any]]) -> list[Any]:
        """TorchServe's contract: ``preprocess`` turns the whole batch into one model input."""
        self.begin_group([])
        batch = self.preprocess(data)
        if self._is_explain():
            return self.explain_handle(batch, data)
        return self.postprocess(self.inference(batch))

    # -- hooks of the per-request pipeline ---------------------------------------
    input_noun = "inputs"  # what check_count calls the inputs in its message

    def _per_row(self) -> bool:
        """True when the class defines ``prepare_row`` and keeps the ``preprocess`` that
        goes with it; overriding ``preprocess`` takes the batch over (TorchServe's way)."""
        cls = type(self)
        owner: type[BaseHandler] = next(
            (c for c in cls.__mro__ if "prepare_row" in vars(c)), BaseHandler)
        return owner is not BaseHandler and cls.preprocess is owner.preprocess

    def prepare_row(self, row: dict[str, Any]) -> tuple[list[Any], bool]:
        """One request's model inputs, and whether it sent several; InvalidInput if unusable."""
        raise NotImplementedError

    def decoding(self) -> AbstractContextManager[Any]:
        """The context the batch's requests are decoded in."""
        return contextlib.nullcontext()

    def prepare(self, data: list[dict[str, Any]]) -> Prepared:
        """Decode each request on its own; a request that fails keeps its error."""
        out = Prepared()
        for row in data:
            try:
                inputs, several = self.prepare_row(row)
            except InvalidInput as exc:
                out.failures.append(exc)
                continue
            out.add(row, inputs, several)
        return out

    def batches(self, inputs: list[Any]) -> list[tuple[list[int], Any]]:
        """``(positions, model input)`` groups of the decoded inputs; by default one."""
        return [(list(range(len(inputs))), self.collate(inputs))]

    def collate(self, inputs: list[Any]) -> Any:
        """The model input for a group of decoded inputs."""
        return inputs

    def begin_group(self, positions: list[int]) -> None:
        """A group of inputs (their positions among the batch's inputs) is about to run;
        none under TorchServe's contract."""

    def run_group(self, batch: Any, inputs: list[Any], rows: list[dict[str, Any]]) -> list[Any]:
        if self._is_explain():
            return self.explain_inputs(batch, inputs, rows)
        return self.postprocess(self.inference(batch))

    def explain_inputs(self, batch: Any, inputs: list[Any],
                       rows: list[dict[str, Any]]) -> list[Any]:
        return self.explain_handle(batch, rows)

    def _run_inputs(self, prepared: Prepared) -> list[Any]:
        results: list[Any] = [None] * len(prepared.inputs)
        for idx, batch in self.batches(prepared.inputs):
            inputs = [prepared.inputs[i] for i in idx]
            self.begin_group(idx)
            out = self.run_group(batch, inputs, [prepared.rows[i] for i in idx])
            for i, result in zip(idx, check_count(self, out, len(idx), self.input_noun),
                                 strict=True):
                results[i] = result
        return results

    # -- customized describe -----------------------------------------------------
    def _is_describe(self) -> bool:
        """The batch is ``GET /models/{name}?customized=true``'s request."""
        return self.context is not None and self.context.kind == "describe"

    def describe_handle(self) -> Any:
        """Metadata for ``GET /models/{name}?customized=true``; override to provide some."""
        return None

    # -- explanations ------------------------------------------------------------
    def _is_explain(self) -> bool:
        self.explain = self.context is not None and self.context.kind == "explain"
        return self.explain

    def explain_handle(self, data_preprocess: Any, raw_data: list[dict[str, Any]]) -> list[Any]:
        target = 0
        if raw_data and isinstance(raw_data[0], dict):
            target = raw_data[0].get("target", 0)
        return self.get_insights(data_preprocess, raw_data, target)

    def get_insights(self, tensor_data: Any, raw_data: Any, target: Any) -> list[Any]:
        name = type(self).__name__
        raise ExplanationsNotSupported(f"handler {name} does not support explanations")
