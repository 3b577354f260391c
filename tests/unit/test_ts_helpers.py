"""TorchServe's handler helpers in torchwire's ts layer: MicroBatching, request envelopes,
MockContext and metrics_config's model_metrics in context.metrics."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from torchwire.compat.envelopes import BodyEnvelope, JSONEnvelope, KServeEnvelope
from torchwire.compat.micro_batching import MicroBatching
from torchwire.compat.mock_context import MockContext
from torchwire.errors import InvalidInput
from torchwire.handlers.metrics import MetricsCache, MetricsCacheKeyError, MetricTypes
from torchwire.metrics_yaml import MetricSpec


class Steps:
    """A handler whose steps record which thread ran them and can fail on request."""

    def __init__(self) -> None:
        self.threads: set[str] = set()
        self.context: Any = None

    def _is_describe(self) -> bool:
        return False

    def _is_explain(self) -> bool:
        return False

    def preprocess(self, rows: list[int]) -> list[int]:
        self.threads.add(threading.current_thread().name)
        if 13 in rows:
            raise ValueError("unlucky row")
        return rows

    def inference(self, rows: list[int]) -> list[int]:
        return [r * 10 for r in rows]

    def postprocess(self, rows: list[int]) -> list[int]:
        return [r + 1 for r in rows]


@pytest.fixture
def steps() -> Steps:
    return Steps()


def test_micro_batching_keeps_request_order(steps: Steps) -> None:
    mb = MicroBatching(steps, micro_batch_size=3, parallelism={"preprocess": 3})
    try:
        assert mb.handle(list(range(10))) == [r * 10 + 1 for r in range(10)]
        context = MockContext(model_pt_file=None, model_file=None)
        assert mb(list(range(4)), context) == [1, 11, 21, 31]
        assert context.metrics.get_metric("HandlerTime", MetricTypes.GAUGE)
        assert all(name.startswith("micro-batch-preprocess") for name in steps.threads)
        assert mb.parallelism == {"preprocess": 3}
    finally:
        mb.shutdown()


def test_a_failing_step_raises_instead_of_hanging(steps: Steps) -> None:
    mb = MicroBatching(steps, micro_batch_size=2)
    try:
        with pytest.raises(ValueError, match="unlucky"):
            mb.handle([1, 13, 5, 7])
        assert mb.handle([1, 2]) == [11, 21]  # the pipeline is still whole
    finally:
        mb.shutdown()


@pytest.mark.parametrize("parallelism", [{"tokenize": 1}, {"inference": 0}])
def test_micro_batching_refuses_bad_parallelism(steps: Steps, parallelism: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="parallelism"):
        MicroBatching(steps, parallelism=parallelism)


def test_json_envelope_splits_and_joins_per_request() -> None:
    env = JSONEnvelope(lambda rows, ctx: [str(r) for r in rows])
    data = [{"body": {"instances": [1, {"b64": "aGk="}]}},
            {"body": json.dumps({"instances": [{"x": {"b64": "aGk="}}]}).encode()}]
    out = env.handle(data, MockContext(model_pt_file=None, model_file=None))
    assert [json.loads(o) for o in out] == [{"predictions": ["1", "b'hi'"]},
                                            {"predictions": ["{'x': b'hi'}"]}]
    with pytest.raises(InvalidInput, match="instances"):
        env.handle([{"body": {"rows": []}}], None)


def test_kserve_and_body_envelopes() -> None:
    ctx = MockContext(model_pt_file=None, model_file=None)
    v1 = KServeEnvelope(lambda rows, c: [r * 2 for r in rows])
    assert v1.handle([{"data": b'{"instances": [1, 2]}'}], ctx) == [{"predictions": [2, 4]}]
    ctx.explain = True
    assert v1.handle([{"body": {"instances": [3]}}], ctx) == [{"explanations": [6]}]
    body = BodyEnvelope(lambda rows, c: rows)
    assert body.handle([{"data": b"a"}, {"body": "b"}], ctx) == [b"a", "b"]


def test_mock_context_reads_the_model_yaml(tmp_path: Path) -> None:
    (tmp_path / "model-config.yaml").write_text("handler:\n  topk: 2\n")
    ctx = MockContext(model_dir=str(tmp_path), model_name="m",
                      model_yaml_config_file="model-config.yaml")
    assert ctx.manifest == {"model": {"serializedFile": "model.pt", "modelFile": "model.py"}}
    assert ctx.system_properties["model_dir"] == str(tmp_path)
    assert ctx.model_yaml_config == {"handler": {"topk": 2}}
    assert ctx.get_request_header(0, "explain") is None
    ctx.metrics.add_counter("Calls", 1)
    assert ctx.metrics.drain()[0].labels == (("ModelName", "m"), ("Level", "Model"))


def test_declared_model_metrics_are_in_the_cache() -> None:
    declared = (MetricSpec("Calls", "counter", "count", ("ModelName",)),
                MetricSpec("Size", "gauge", "kB", ()))
    cache = MetricsCache("m", declared)
    cache.get_metric("Size", MetricTypes.GAUGE).add_or_update(3, [])
    cache.get_metric("Calls").add_or_update(1, ["m"])
    assert [r.name for r in cache.drain()] == ["Size", "Calls"]
    with pytest.raises(MetricsCacheKeyError):
        cache.get_metric("Size", MetricTypes.COUNTER)
