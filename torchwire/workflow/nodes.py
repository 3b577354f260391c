"""A workflow's nodes as served models, named ``<workflow>__<node>`` as in TorchServe.

A model node is its .mar, registered like ``POST /models`` would (the url is looked
up in the model store under ``allowed_urls``), with the node's batch settings and
``max-workers`` workers (TorchServe starts that many). A function node is a model
too: a worker process whose handler is ``<handler file>:<function>`` from the
unpacked .war, with one worker, batch size 1 and no batch delay. So every node's
code runs in a worker process, never in the front, and a node's model is batched
with all other traffic to it (``/predictions/<workflow>__<node>`` included).
"""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

from torchwire.archive import Manifest
from torchwire.archive.manifest import model_name_problem
from torchwire.config import ModelSettings
from torchwire.errors import ConfigError, InvalidWorkflow
from torchwire.model import ModelVersion
from torchwire.store import ModelSpec, ModelStore
from torchwire.workflow.spec import Node, WorkflowSpec


def node_model_name(workflow: str, node: str) -> str:
    return f"{workflow}__{node}"


def defined_functions(handler: Path | None) -> set[str]:
    """Top-level function names of the handler file (read, never imported, in the front)."""
    if handler is None:
        return set()
    try:
        tree = ast.parse(handler.read_text(encoding="utf-8"), filename=handler.name)
    except (SyntaxError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidWorkflow(f"the workflow handler {handler.name} cannot be read: "
                              f"{exc}") from None
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef)
    return {n.name for n in tree.body if isinstance(n, kinds)}


def check_nodes(name: str, spec: WorkflowSpec, handler: Path | None) -> None:
    """Every node has a usable model name and every function node exists in the handler."""
    functions = defined_functions(handler)
    for node in spec.nodes.values():
        problem = model_name_problem(node_model_name(name, node.name))
        if problem is not None:
            raise InvalidWorkflow(f"Invalid workflow specification: node {node.name!r}: "
                                  f"{problem}")
        if node.is_function and node.name not in functions:
            where = handler.name if handler else "the archive (it has no handler file)"
            raise InvalidWorkflow(f"Invalid workflow specification: DAG node {node.name!r} is "
                                  f"neither a model under 'models' nor a function in {where}")


class NodeBuilder:
    """Builds (not starts) the model version that serves one node."""

    def __init__(self, store: ModelStore, workflow: str, war_dir: Path, handler: Path | None,
                 timeouts: ModelSettings) -> None:
        self.store = store
        self.workflow = workflow
        self.war_dir = war_dir
        self.handler = handler
        self.timeouts = timeouts  # response_timeout and startup_timeout of the registration

    async def build(self, node: Node) -> ModelVersion:
        model = self._function(node) if node.is_function else await self._model(node)
        model.workflow = self.workflow
        return model

    def _overrides(self, node: Node) -> ModelSettings:
        s = node.settings
        workers = max(s.min_workers, s.max_workers)
        return replace(self.timeouts, min_workers=workers, max_workers=workers,
                       batch_size=s.batch_size, max_batch_delay=s.max_batch_delay)

    async def _model(self, node: Node) -> ModelVersion:
        assert node.url is not None
        spec = ModelSpec(node.url, node_model_name(self.workflow, node.name))
        try:
            return await self.store.fetch_build(spec, self._overrides(node))
        except ConfigError as exc:
            raise InvalidWorkflow(str(exc)) from None

    def _function(self, node: Node) -> ModelVersion:
        assert self.handler is not None
        manifest = Manifest(model_name=node_model_name(self.workflow, node.name),
                            handler=f"{self.handler.name}:{node.name}")
        config = self.store.serving_config(manifest, {}, self._overrides(node))
        st = self.store.settings
        return ModelVersion(
            manifest, self.war_dir, {}, replace(config, device_type="cpu"), self.store.gpus,
            model_url=f"{self.workflow}.war:{node.name}", log_dir=st.log_location,
            observer=self.store.observer, torch_threads=1,
        )
