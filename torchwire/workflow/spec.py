"""A workflow specification (the .war's YAML): node settings and the DAG.

TorchServe's format: ``models:`` holds the global properties (``min-workers``,
``max-workers``, ``batch-size``, ``max-batch-delay``, ``retry-attempts``,
``timeout-ms``) and one mapping per model (``url:`` plus overrides); ``dag:`` maps
each node to the nodes it feeds. A DAG node that is not a model is a function of
the workflow's handler file. Only nodes named in the DAG are served.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from torchwire.errors import InvalidWorkflow

PROPERTIES = {
    "min-workers": "min_workers",
    "max-workers": "max_workers",
    "batch-size": "batch_size",
    "max-batch-delay": "max_batch_delay",
    "retry-attempts": "retry_attempts",
    "timeout-ms": "timeout_ms",
}


@dataclass(frozen=True)
class NodeSettings:
    """A node's properties (TorchServe's defaults)."""

    min_workers: int = 1
    max_workers: int = 1
    batch_size: int = 1
    max_batch_delay: int = 50  # ms
    retry_attempts: int = 1  # further tries after a failed or timed-out one
    timeout_ms: int = 10000  # per try


FUNCTION_SETTINGS = {"min_workers": 1, "max_workers": 1, "batch_size": 1, "max_batch_delay": 0}


@dataclass(frozen=True)
class Node:
    name: str
    url: str | None  # None: a function of the handler file
    settings: NodeSettings

    @property
    def is_function(self) -> bool:
        return self.url is None


@dataclass(frozen=True)
class WorkflowSpec:
    settings: NodeSettings  # the global properties
    nodes: dict[str, Node]  # in DAG order
    children: dict[str, tuple[str, ...]]
    parents: dict[str, tuple[str, ...]]
    order: tuple[str, ...]  # topological
    dag_text: str  # the dag as TorchServe's describe prints it (a Java map's toString)

    @property
    def start(self) -> str:
        return self.order[0]

    @property
    def leaves(self) -> list[str]:
        return [n for n in self.order if not self.children[n]]

def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidWorkflow(f"Invalid workflow specification: {where} must be an integer "
                              f">= 0, got {value!r}")
    return value


def _properties(entries: dict[str, Any], base: NodeSettings, where: str) -> NodeSettings:
    given = {PROPERTIES[k]: _int(v, f"{where}{k}") for k, v in entries.items() if k in PROPERTIES}
    return replace(base, **given)


def _models(section: Any) -> tuple[NodeSettings, dict[str, Node]]:
    if not isinstance(section, dict):
        raise InvalidWorkflow("Invalid workflow specification: 'models' must be a mapping")
    settings = _properties(section, NodeSettings(), "models.")
    models: dict[str, Node] = {}
    for name, entry in section.items():
        if name in PROPERTIES:
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise InvalidWorkflow(f"Invalid workflow specification: model {name!r} needs a "
                                  "mapping with a 'url' (its .mar in the model store)")
        node_settings = _properties(entry, settings, f"models.{name}.")
        models[str(name)] = Node(str(name), entry["url"], node_settings)
    return settings, models


def _edges(section: Any) -> dict[str, list[str]]:
    if not isinstance(section, dict) or not section:
        raise InvalidWorkflow("Invalid workflow specification: 'dag' must map each node to "
                              "the list of nodes it feeds")
    edges: dict[str, list[str]] = {}
    for name, targets in section.items():
        if not isinstance(targets, list):
            raise InvalidWorkflow(f"Invalid workflow specification: dag.{name} must be a list")
        edges.setdefault(str(name), [])
        for target in targets:
            if target is None or not str(target).strip():
                continue
            if str(target) == str(name):
                raise InvalidWorkflow(f"Invalid workflow specification: node {name!r} feeds "
                                      "itself (Self loop exception)")
            edges[str(name)].append(str(target))
            edges.setdefault(str(target), [])
    return edges


def _topological(edges: dict[str, list[str]], parents: dict[str, list[str]]) -> list[str]:
    starts = [n for n in edges if not parents[n]]
    if len(starts) != 1:
        raise InvalidWorkflow("Invalid workflow specification: DAG should have only one start "
                              f"node (found {len(starts)}: {', '.join(starts) or 'none'})")
    waiting = {n: len(parents[n]) for n in edges}
    order, ready = [], list(starts)
    while ready:
        node = ready.pop(0)
        order.append(node)
        for child in edges[node]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    if len(order) != len(edges):
        stuck = ", ".join(n for n in edges if n not in order)
        raise InvalidWorkflow(f"Invalid workflow specification: Not a valid DAG (a cycle "
                              f"through {stuck})")
    return order


def parse_spec(data: Any) -> WorkflowSpec:
    """Validate a decoded specification; :class:`InvalidWorkflow` says what is wrong."""
    if not isinstance(data, dict):
        raise InvalidWorkflow("Invalid workflow specification: expected a mapping with "
                              "'models' and 'dag'")
    settings, models = _models(data.get("models", {}))
    edges = _edges(data.get("dag"))
    parents: dict[str, list[str]] = {n: [] for n in edges}
    for name, targets in edges.items():
        for target in dict.fromkeys(targets):
            parents[target].append(name)
    order = _topological({n: list(dict.fromkeys(t)) for n, t in edges.items()}, parents)
    function = replace(settings, **FUNCTION_SETTINGS)
    nodes = {n: models.get(n) or Node(n, None, function) for n in edges}
    return WorkflowSpec(settings, nodes, {n: tuple(dict.fromkeys(t)) for n, t in edges.items()},
                        {n: tuple(p) for n, p in parents.items()}, tuple(order),
                        _java_map(data["dag"]))


def _java_map(dag: dict[Any, Any]) -> str:
    def items(targets: list[Any]) -> str:
        return "[" + ", ".join(str(t) for t in targets) + "]"

    return "{" + ", ".join(f"{k}={items(v)}" for k, v in dag.items()) + "}"

