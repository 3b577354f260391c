"""WorkflowManager: register, list, describe, unregister and run workflows.

Registration is synchronous, as in TorchServe: the .war is unpacked, its
specification checked, and every node's model built, registered and started;
if any node fails, the nodes already up are taken down again and the answer
lists each failure. Requests run through :func:`torchwire.workflow.dag.run_dag`,
each node answered by its model version's ordinary inference path.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchwire.config import ModelSettings
from torchwire.errors import BadRequest, Conflict, InternalError, ServeError, WorkflowNotFound
from torchwire.model import ModelState, ModelVersion
from torchwire.protocol import Item, Outcome
from torchwire.registry import ModelRegistry
from torchwire.store import ModelStore
from torchwire.workflow.archive import (
    handler_path,
    name_problem,
    open_war,
    read_spec,
    read_war_manifest,
)
from torchwire.workflow.dag import combine_leaves, run_dag
from torchwire.workflow.nodes import NodeBuilder, check_nodes, node_model_name
from torchwire.workflow.spec import Node, WorkflowSpec, parse_spec

log = logging.getLogger(__name__)

MAX_PAGE = 100


@dataclass(frozen=True)
class WorkflowRegistration:
    url: str
    name: str | None = None
    response_timeout: int = 120  # s, for every node's model
    startup_timeout: int = 120  # s


@dataclass
class Workflow:
    name: str
    url: str
    spec: WorkflowSpec
    war_dir: Path
    models: dict[str, ModelVersion] = field(default_factory=dict)  # node name → its model

    def describe(self) -> dict[str, Any]:
        s = self.spec.settings
        return {"workflowName": self.name, "workflowUrl": self.url,
                "minWorkers": s.min_workers, "maxWorkers": s.max_workers,
                "batchSize": s.batch_size, "maxBatchDelay": s.max_batch_delay,
                "workflowDag": self.spec.dag_text}


class WorkflowManager:
    def __init__(self, registry: ModelRegistry, store: ModelStore) -> None:
        self.registry = registry
        self.store = store
        self.settings = store.settings
        self.workflows: dict[str, Workflow] = {}
        self._pending: set[str] = set()  # names being registered now

    # -- list and describe -----------------------------------------------------------
    def get(self, name: str) -> Workflow:
        found = self.workflows.get(name)
        if found is None:
            raise WorkflowNotFound(f"Workflow not found: {name}")
        return found

    def list_page(self, limit: int, token: int) -> dict[str, Any]:
        if limit <= 0 or limit > MAX_PAGE:
            limit = MAX_PAGE
        names = sorted(self.workflows)
        start = max(0, token)
        end = min(len(names), start + limit)
        doc: dict[str, Any] = {}
        if end < len(names):
            doc["nextPageToken"] = str(end)
        doc["workflows"] = [{"workflowName": n, "workflowUrl": self.workflows[n].url}
                            for n in names[start:end]]
        return doc

    def describe(self, name: str) -> list[dict[str, Any]]:
        return [self.get(name).describe()]

    # -- register ----------------------------------------------------------------------
    async def register(self, reg: WorkflowRegistration) -> str:
        if not reg.url.strip():
            raise BadRequest("Parameter url is required.")
        workflow = await self._open(reg)
        if workflow.name in self.workflows or workflow.name in self._pending:
            shutil.rmtree(workflow.war_dir, ignore_errors=True)
            raise Conflict(f"Workflow {workflow.name} is already registered.")
        self._pending.add(workflow.name)
        try:
            await self._start_nodes(workflow, reg)
        finally:
            self._pending.discard(workflow.name)
        self.workflows[workflow.name] = workflow
        log.info("registered workflow %s from %s", workflow.name, reg.url)
        return f"Workflow {workflow.name} has been registered and scaled successfully."

    async def _open(self, reg: WorkflowRegistration) -> Workflow:
        s = self.settings
        async with self.store.fetched(reg.url, s.workflow_store or s.model_store) as path:
            if not path.exists():
                raise WorkflowNotFound(f"Workflow not found in workflow store: {reg.url}")
            war_dir = await asyncio.to_thread(open_war, path, self.store.work_dir / "workflows")
        try:
            return self._read(reg, war_dir)
        except BaseException:
            shutil.rmtree(war_dir, ignore_errors=True)
            raise

    def _read(self, reg: WorkflowRegistration, war_dir: Path) -> Workflow:
        manifest = read_war_manifest(war_dir)
        name = reg.name or manifest.name
        problem = name_problem(name)
        if problem:
            raise BadRequest(problem)
        spec = parse_spec(read_spec(war_dir, manifest))
        check_nodes(name, spec, handler_path(war_dir, manifest))
        return Workflow(name, reg.url, spec, war_dir)

    async def _start_nodes(self, workflow: Workflow, reg: WorkflowRegistration) -> None:
        manifest = read_war_manifest(workflow.war_dir)
        timeouts = ModelSettings(response_timeout=reg.response_timeout,
                                 startup_timeout=reg.startup_timeout)
        builder = NodeBuilder(self.store, workflow.name, workflow.war_dir,
                              handler_path(workflow.war_dir, manifest), timeouts)
        nodes = list(workflow.spec.nodes.values())
        results = await asyncio.gather(*(self._start_node(builder, n, workflow) for n in nodes))
        failures = [r for r in results if r is not None]
        if failures:
            await self._take_down(workflow)
            raise InternalError(f"Workflow {workflow.name} has failed to register. "
                                f"Failures: [{', '.join(failures)}]")

    async def _start_node(self, builder: NodeBuilder, node: Node,
                          workflow: Workflow) -> str | None:
        """Build, add and start one node's model; the failure sentence, or None."""
        model_name = node_model_name(workflow.name, node.name)
        try:
            model = await builder.build(node)
        except ServeError as exc:
            return _node_failure(model_name, exc.message)
        try:
            self.registry.add(model)
        except ServeError as exc:
            self.store.discard(Path(model.model_dir))
            return _node_failure(model_name, exc.message)
        workflow.models[node.name] = model
        await model.start()
        if model.state is ModelState.FAILED:
            return _node_failure(model_name, f"Failed to start workers: {model.load_error}")
        return None

    # -- unregister --------------------------------------------------------------------
    async def unregister(self, name: str) -> str:
        workflow = self.get(name)
        del self.workflows[name]
        await self._take_down(workflow)
        log.info("unregistered workflow %s", name)
        return f'Workflow "{name}" unregistered'

    async def _take_down(self, workflow: Workflow) -> None:
        models = list(workflow.models.values())
        for model in models:
            self.registry.discard(model)
        await asyncio.gather(*(m.stop(m.config.response_timeout) for m in models),
                             return_exceptions=True)
        for model in models:
            self.store.discard(Path(model.model_dir))
        shutil.rmtree(workflow.war_dir, ignore_errors=True)

    async def stop(self) -> None:
        for name in list(self.workflows):
            await self.unregister(name)

    # -- inference -----------------------------------------------------------------------
    async def predict(self, name: str, item: Item) -> bytes:
        workflow = self.get(name)

        async def call(node: Node, node_item: Item) -> Outcome:
            return await workflow.models[node.name].submit(node_item).result()

        return combine_leaves(await run_dag(workflow.spec, item, call))


def _node_failure(model_name: str, details: str) -> str:
    return f"Workflow Node {model_name} failed to register. Details: {details}"
