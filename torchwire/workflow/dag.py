"""Running one request through a workflow's DAG.

Each node runs as soon as all its parents have answered; independent branches run
at once. What a node receives is TorchServe's: the start node gets the request's
own inputs; a node with one parent gets that parent's answer as ``body``; a node
with several parents gets one input per parent, named after it. Every value
passed between nodes is the answer's bytes (handlers see ``bytes``). The first
node to fail ends the request; its error names the node.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from torchwire.errors import ServeError, error_for_status
from torchwire.protocol import Item, Outcome, Param
from torchwire.workflow.spec import Node, WorkflowSpec

log = logging.getLogger(__name__)

Call = Callable[[Node, Item], Awaitable[Outcome]]
"""Sends one item to a node's model; its answer, or a failed Outcome / a ServeError."""


def node_item(spec: WorkflowSpec, node: str, request: Item, answers: dict[str, bytes]) -> Item:
    parents = spec.parents[node]
    if not parents:
        params = request.params
    elif len(parents) == 1:
        params = (Param("body", answers[parents[0]]),)
    else:
        params = tuple(Param(p, answers[p]) for p in parents)
    return Item(uuid.uuid4().hex, params, request.headers)


def _retryable(err: ServeError) -> bool:
    return err.status >= 500 or err.status == 408


async def _attempt(call: Call, node: Node, item: Item) -> Outcome:
    limit = node.settings.timeout_ms / 1000
    try:
        async with asyncio.timeout(limit):
            return await call(node, item)
    except TimeoutError:
        raise error_for_status(504, f"workflow node {node.name} did not answer within "
                               f"timeout-ms {node.settings.timeout_ms}",
                               "RequestTimeoutException") from None


async def run_node(call: Call, node: Node, item: Item) -> bytes:
    """The node's answer; retried (``retry-attempts`` more times) unless it was bad input."""
    tries = node.settings.retry_attempts + 1
    for attempt in range(1, tries + 1):
        try:
            return (await _attempt(call, node, item)).check().body
        except ServeError as exc:
            err = exc
        if not _retryable(err) or attempt == tries:
            raise _node_failed(node, err, attempt)
        log.warning("workflow node %s failed (try %d of %d): %s", node.name, attempt, tries,
                    err.message)
    raise AssertionError("unreachable")


def _node_failed(node: Node, err: ServeError, attempts: int) -> ServeError:
    """The node's own status and error type, with the node named in the message."""
    kind = "function" if node.is_function else "model"
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    message = f"Workflow node {node.name} ({kind}) failed{tries}: {err.message}"
    return error_for_status(err.status, message, err.type_name)


async def run_dag(spec: WorkflowSpec, request: Item, call: Call) -> dict[str, bytes]:
    """Every leaf's answer, by leaf name."""
    answers: dict[str, bytes] = {}
    done = {name: asyncio.Event() for name in spec.order}

    async def visit(name: str) -> None:
        for parent in spec.parents[name]:
            await done[parent].wait()
        item = node_item(spec, name, request, answers)
        answers[name] = await run_node(call, spec.nodes[name], item)
        done[name].set()

    try:
        async with asyncio.TaskGroup() as group:
            for name in spec.order:
                group.create_task(visit(name))
    except* ServeError as failures:
        raise failures.exceptions[0] from None
    return {leaf: answers[leaf] for leaf in spec.leaves}


def combine_leaves(leaves: dict[str, bytes]) -> bytes:
    """One leaf: its bytes. Several: a JSON object of each leaf's (JSON) answer by name."""
    if len(leaves) == 1:
        return next(iter(leaves.values()))
    return json.dumps({name: _as_json(body) for name, body in leaves.items()}).encode()


def _as_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return body.decode("utf-8", "replace")
