"""pt2 options as TorchServe 0.12 reads them, and the warm-up key's checks (in-process)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from torchwire.errors import HandlerError
from torchwire.handlers.pt2 import apply_pt2, compile_options
from torchwire.workers.warmup import batch_sizes, check, warmup_param


@pytest.mark.parametrize(("pt2", "options"), [
    (None, None),
    ("inductor", {"backend": "inductor"}),
    ({"backend": "eager", "mode": "default"}, {"backend": "eager", "mode": "default"}),
    ({"compile": {"enable": True, "backend": "eager", "fullgraph": True, "dynamic": False}},
     {"backend": "eager", "fullgraph": True, "dynamic": False}),
    ({"compile": {"enable": False, "backend": "inductor"}}, None),
])
def test_compile_options(pt2: object, options: dict[str, object] | None) -> None:
    assert compile_options(pt2) == options


@pytest.mark.parametrize(("pt2", "why"), [
    (3, "backend name or a mapping"),
    ({"export": {"aot_compile": True}}, "not supported"),
    ({"compile": {"enable": True, "speed": 11}}, "unknown option"),
])
def test_bad_pt2_values(pt2: object, why: str) -> None:
    with pytest.raises(HandlerError, match=why):
        compile_options(pt2)


def test_apply_pt2_wraps_or_explains() -> None:
    model = torch.nn.Linear(2, 2)
    assert apply_pt2(model, {}) is model
    assert type(apply_pt2(model, {"pt2": "eager"})).__name__ == "OptimizedModule"
    with pytest.raises(HandlerError, match="Unrecognized mode=fastest"):
        apply_pt2(model, {"pt2": {"compile": {"enable": True, "mode": "fastest"}}})
    with pytest.raises(HandlerError, match="backend 'nope' is not available"):
        apply_pt2(model, {"pt2": "nope"})


def test_warmup_inputs(tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_bytes(b"\x00\x01")
    assert warmup_param({"file": "x.bin"}, tmp_path).value == b"\x00\x01"
    as_json = warmup_param({"json": {"a": 1}}, tmp_path)
    assert (as_json.value, as_json.content_type) == (b'{"a": 1}', "application/json")
    assert warmup_param({"text": "hi"}, tmp_path).content_type == "text/plain"
    with pytest.raises(HandlerError, match="warmup.file 'missing' is not a file"):
        warmup_param({"file": "missing"}, tmp_path)
    with pytest.raises(HandlerError, match="warmup.file '../x.bin' is not a file"):
        warmup_param({"file": "../x.bin"}, tmp_path / "sub")
    with pytest.raises(HandlerError, match="exactly one of"):
        warmup_param({"json": 1, "text": "a"}, tmp_path)
    with pytest.raises(HandlerError, match="batch_sizes"):
        batch_sizes({"batch_sizes": [0]})
    with pytest.raises(HandlerError, match="unknown key"):
        check({"json": 1, "repeat": 2})
