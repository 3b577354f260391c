"""Schemathesis against the inference and management OpenAPI documents (issue 15).

Bounded and deterministic in the default run (hypothesis derandomized: the same cases
every time, a few per operation); ``--fuzz-long`` runs many more. Every generated
request goes to a real server (its own, so nothing a case registers, scales or deletes
touches another test); the checks are: no 5xx, and every response matches the document.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer, start_server, stop_server, toy_archive

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")

from schemathesis.checks import FailureGroup, not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

DEFAULT_EXAMPLES = 6
LONG_EXAMPLES = 200
BUDGET_S = 60.0  # the default run stops generating after this, whatever is left


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    store = tmp / "store"
    store.mkdir()
    toy_archive(store, "toy")
    models = {"toy": {"1.0": {"batchSize": 1, "maxBatchDelay": 0, "responseTimeout": 5}},
              "spare": {"1.0": {"minWorkers": 0, "maxWorkers": 0}}}
    config = {"enable_model_api": "true", "disable_token_authorization": "true",
              "models": json.dumps(models),
              "allowed_urls": "file:///nowhere/.*", "max_workers_per_model": 1}
    server = start_server(tmp / "run", store, ["toy=toy-1.0/toy.mar",
                                               "spare=toy-1.0/toy.mar"], config)
    yield server, server.management_url
    stop_server(server)


def aimed_at(model: str) -> Callable[[tuple[Any, bool]], Any]:
    """Half the cases name a model that exists (random names only ever find a 404)."""

    def aim(drawn: tuple[Any, bool]) -> Any:
        case, hit = drawn
        params = case.path_parameters or {}
        if hit and "model_name" in params:
            params["model_name"] = model
            if "model_version" in params:
                params["model_version"] = "1.0"
        return case

    return aim


def fuzz(base_url: str, model: str, examples: int, deadline: float,
         sent: list[str]) -> list[str]:
    """Every failure (one line each) of every operation in ``base_url``'s document."""
    schema = schemathesis.openapi.from_url(f"{base_url}/api-description")
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if time.monotonic() > deadline:
            break
        strategy = st.tuples(operation.as_strategy(), st.booleans()).map(aimed_at(model))
        failures += fuzz_operation(strategy, base_url, examples, deadline, sent)
    return failures


def fuzz_operation(strategy: Any, base_url: str, examples: int, deadline: float,
                   sent: list[str]) -> list[str]:
    found: list[str] = []
    settings = hypothesis.settings(
        max_examples=examples, derandomize=True, deadline=None, database=None,
        suppress_health_check=list(hypothesis.HealthCheck), report_multiple_bugs=False,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])

    @settings
    @hypothesis.given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        if time.monotonic() > deadline:
            return
        response = case.call(base_url=base_url, timeout=30)
        sent.append(f"{case.method} {case.formatted_path} -> {response.status_code}")
        try:
            case.validate_response(response, checks=[not_a_server_error,
                                                     response_schema_conformance])
        except (AssertionError, FailureGroup) as exc:
            found.append(f"{case.method} {case.formatted_path}: {str(exc).splitlines()[0]}")

    run()
    return found


def test_fuzz_inference_and_management_documents(fuzzed: tuple[RunningServer, str],
                                                 request: pytest.FixtureRequest) -> None:
    server, management = fuzzed
    long = bool(request.config.getoption("--fuzz-long"))
    examples = LONG_EXAMPLES if long else DEFAULT_EXAMPLES
    deadline = time.monotonic() + (float("inf") if long else BUDGET_S)
    sent: list[str] = []
    failures = fuzz(server.url, "toy", examples, deadline, sent)
    # management cases aim at "spare": scaling, describing or deleting it leaves toy alone
    failures += fuzz(management, "spare", examples, deadline, sent)
    assert failures == []
    assert len(sent) >= 40, sent  # every operation got cases, within the budget
    r = httpx.post(f"{server.url}/predictions/toy", content=b"after", timeout=30)
    assert r.status_code == 200 and r.json()["echo"] == "after"
