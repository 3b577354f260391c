"""The request kind is a protocol field: only the handler Context turns it into
TorchServe's ``explain``/``describe`` headers, and a client's own are dropped."""

from __future__ import annotations

import pytest

from torchwire.handlers.base import BaseHandler
from torchwire.handlers.context import Context

SNEAKY = {"explain": "True", "Describe": "True", "x-trace": "7"}


def context(kind: str) -> Context:
    ctx = Context("m", "/nowhere", {}, 1, None)
    ctx.start_batch(["r"], [dict(SNEAKY)], kind=kind)
    return ctx


def test_a_prediction_never_sees_a_clients_explain_or_describe_header() -> None:
    ctx = context("predict")
    assert ctx.get_all_request_header(0) == {"x-trace": "7"}
    handler = BaseHandler()
    handler.context = ctx
    assert handler._is_explain() is False and handler._is_describe() is False


@pytest.mark.parametrize("kind", ["explain", "describe"])
def test_the_batch_kind_sets_torchserves_header_for_ts_handlers(kind: str) -> None:
    ctx = context(kind)
    assert ctx.get_request_header(0, kind) == "True"
    other = "describe" if kind == "explain" else "explain"
    assert ctx.get_request_header(0, other) is None
    assert ctx.get_request_header(0, "x-trace") == "7"
    handler = BaseHandler()
    handler.context = ctx
    assert handler._is_explain() is (kind == "explain")
    assert handler._is_describe() is (kind == "describe")
