"""run_dag: TorchServe's inputs per node, parallel branches, retries, timeouts, errors."""

from __future__ import annotations

import asyncio
import json

import pytest

from torchwire.errors import InternalError, InvalidInput, ServeError
from torchwire.handlers.outcome import error_outcome
from torchwire.protocol import Item, Outcome, Param
from torchwire.workflow.dag import run_dag
from torchwire.workflow.spec import Node, parse_spec

SPEC = parse_spec({"models": {"timeout-ms": 200, "retry-attempts": 1,
                              "a": {"url": "a.mar"}, "b": {"url": "b.mar"}},
                   "dag": {"pre": ["a", "b"], "a": ["post"], "b": ["post"]}})
REQUEST = Item("r1", (Param("body", b"in", "text/plain"),), {"x-h": "1"})


def ok(body: object) -> Outcome:
    return Outcome(200, json.dumps(body).encode(), "application/json")


def test_inputs_follow_torchserve_and_branches_overlap() -> None:
    seen: dict[str, Item] = {}
    running: set[str] = set()
    overlapped: list[bool] = []

    async def call(node: Node, item: Item) -> Outcome:
        seen[node.name] = item
        running.add(node.name)
        await asyncio.sleep(0.01)
        overlapped.append({"a", "b"} <= running)
        running.discard(node.name)
        return ok(node.name)

    leaves = asyncio.run(run_dag(SPEC, REQUEST, call))
    assert leaves == {"post": b'"post"'}
    assert seen["pre"].params == REQUEST.params and seen["pre"].headers == {"x-h": "1"}
    assert seen["a"].params == (Param("body", b'"pre"'),)
    assert seen["post"].params == (Param("a", b'"a"'), Param("b", b'"b"'))
    assert any(overlapped)  # a and b ran at the same time


def test_a_5xx_is_retried() -> None:
    tries: dict[str, int] = {}

    async def call(node: Node, item: Item) -> Outcome:
        tries[node.name] = tries.get(node.name, 0) + 1
        if node.name == "a" and tries["a"] == 1:
            return error_outcome(InternalError("flaky"))
        return ok(node.name)

    assert asyncio.run(run_dag(SPEC, REQUEST, call)) == {"post": b'"post"'}
    assert tries == {"pre": 1, "a": 2, "b": 1, "post": 1}


def test_a_4xx_is_not_retried_and_names_the_node() -> None:
    tries: dict[str, int] = {}

    async def call(node: Node, item: Item) -> Outcome:
        tries[node.name] = tries.get(node.name, 0) + 1
        if node.name == "b":
            return error_outcome(InvalidInput("b cannot read it"))
        return ok(1)

    with pytest.raises(ServeError) as caught:
        asyncio.run(run_dag(SPEC, REQUEST, call))
    err = caught.value
    assert (err.status, err.type_name) == (400, "InvalidInputException")
    assert err.message == "Workflow node b (model) failed: b cannot read it"
    assert tries["b"] == 1


def test_a_slow_node_times_out_after_its_retries() -> None:
    async def call(node: Node, item: Item) -> Outcome:
        if node.name == "a":
            await asyncio.sleep(5)
        return ok(1)

    with pytest.raises(ServeError) as caught:
        asyncio.run(run_dag(SPEC, REQUEST, call))
    assert caught.value.status == 504
    assert "Workflow node a (model) failed after 2 attempts" in caught.value.message
