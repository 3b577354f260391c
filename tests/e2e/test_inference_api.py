"""The inference API over real HTTP against a real server process."""

from __future__ import annotations

import asyncio
import io
import json

import httpx
import pytest
from openapi_spec_validator import validate
from PIL import Image

from tests.conftest import RunningServer


def top(prediction: dict[str, float]) -> int:
    return int(max(prediction, key=prediction.__getitem__))


def test_ping_is_healthy(server: RunningServer) -> None:
    r = httpx.get(f"{server.url}/ping")
    assert r.status_code == 200
    assert r.json() == {"status": "Healthy"}  # what TorchServe's own tests compare to


@pytest.mark.parametrize("how", ["options", "api-description"])
def test_openapi_document_validates(server: RunningServer, how: str) -> None:
    with server.client() as c:
        r = c.request("OPTIONS", "/") if how == "options" else c.get("/api-description")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"] == "3.0.1"
    validate(doc)
    assert "/predictions/{model_name}/{model_version}" in doc["paths"]


def test_raw_body_prediction_is_right(server: RunningServer,
                                      digit_samples: list[tuple[bytes, int]]) -> None:
    with server.client() as c:
        answers = [c.post("/predictions/digits", content=png) for png, _ in digit_samples[:60]]
    assert all(r.status_code == 200 for r in answers)
    labels = [label for _, label in digit_samples[:60]]
    hits = sum(top(r.json()) == label for r, label in zip(answers, labels, strict=True))
    assert hits / 60 >= 0.9
    first = answers[0].json()
    assert len(first) == 3 and abs(sum(first.values()) - 1) < 0.05


def test_put_multipart_and_versions_agree(server: RunningServer,
                                          digit_samples: list[tuple[bytes, int]]) -> None:
    png = digit_samples[0][0]
    with server.client() as c:
        raw = c.post("/predictions/digits", content=png).json()
        form = c.post("/predictions/digits", files={"data": ("d.png", png, "image/png")}).json()
        put = c.put("/predictions/digits/1.0", content=png).json()
        v2 = c.post("/predictions/digits/2.0", content=png).json()
    assert raw == form == put
    assert top(v2) == top(raw)


def test_json_input_is_parsed_for_the_handler(server: RunningServer) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    with server.client() as c:
        r = c.post("/predictions/digits", json=digits.data[5].tolist())
    assert r.status_code == 200
    assert top(r.json()) == digits.target[5]


def test_kserve_v1_predict_batches_instances(server: RunningServer) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    body = {"instances": [digits.data[i].tolist() for i in range(6)]}
    with server.client() as c:
        r = c.post("/v1/models/digits:predict", json=body)
    assert r.status_code == 200
    predictions = r.json()["predictions"]
    assert len(predictions) == 6
    assert sum(top(p) == digits.target[i] for i, p in enumerate(predictions)) >= 5


def test_explanations_without_support_say_so(server: RunningServer,
                                             digit_samples: list[tuple[bytes, int]]) -> None:
    with server.client() as c:
        r = c.post("/explanations/digits", content=digit_samples[0][0])
        k = c.post("/v1/models/digits:explain", json={"instances": [[0] * 64]})
    for resp in (r, k):
        assert resp.status_code == 501
        assert "does not support explanations" in resp.json()["message"]


def error_of(r: httpx.Response, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"code", "type", "message"} and body["code"] == status
    return body


def test_bad_inputs_get_clear_errors(server: RunningServer) -> None:
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(jpeg, "JPEG")
    corrupt = jpeg.getvalue()[:20] + b"\x00garbage" * 10
    with server.client() as c:
        assert "not an image" in str(error_of(c.post("/predictions/digits", content=corrupt),
                                          400)["message"])
        assert "empty" in str(error_of(c.post("/predictions/digits", content=b""), 400)["message"])
        bad_json = c.post("/predictions/digits", content=b"{nope",
                          headers={"content-type": "application/json"})
        assert "not valid JSON" in str(error_of(bad_json, 400)["message"])
        assert "instances" in str(error_of(c.post("/v1/models/digits:predict", json={"x": 1}),
                                           400)["message"])
        kserve_bad = c.post("/v1/models/digits:predict", content=b"[",
                            headers={"content-type": "application/json"})
        error_of(kserve_bad, 400)
        big = c.post("/predictions/digits", content=b"x" * 300000)
        assert "max_request_size" in str(error_of(big, 413)["message"])


def test_unknown_things_are_404_and_wrong_methods_405(server: RunningServer) -> None:
    with server.client() as c:
        assert error_of(c.post("/predictions/nope", content=b"1"), 404)["type"] == \
            "ModelNotFoundException"
        assert error_of(c.post("/predictions/digits/9.9", content=b"1"), 404)["type"] == \
            "ModelVersionNotFoundException"
        error_of(c.post("/v1/models/nope:predict", json={"instances": [1]}), 404)
        error_of(c.get("/no/such/path"), 404)
        error_of(c.get("/predictions/digits"), 405)
        error_of(c.delete("/ping"), 405)


def test_handler_errors_are_500_naming_the_handler(server: RunningServer) -> None:
    with server.client() as c:
        boom = error_of(c.post("/predictions/toy", content=b"boom"), 500)
        count = error_of(c.post("/predictions/toy", content=b"wrong-count"), 500)
    assert "toy exploded" in str(boom["message"]) and "toy_handler" in str(boom["message"])
    assert "returned 0 results for a batch of 1" in str(count["message"])


async def _post_many(url: str, bodies: list[bytes]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
        return await asyncio.gather(*(c.post("/predictions/" + b.split(b"|")[0].decode(),
                                             content=b.split(b"|", 1)[1]) for b in bodies))


def test_requests_arriving_together_are_batched(server: RunningServer) -> None:
    bodies = [f"toy|hello{i}".encode() for i in range(8)]
    answers = asyncio.run(_post_many(server.url, bodies))
    assert [r.status_code for r in answers] == [200] * 8
    assert [r.json()["echo"] for r in answers] == [f"hello{i}" for i in range(8)]
    assert max(r.json()["batch"] for r in answers) > 1


def test_one_bad_input_fails_only_itself(server: RunningServer,
                                         digit_samples: list[tuple[bytes, int]]) -> None:
    good = digit_samples[:7]
    with server.client() as c:
        expected = [c.post("/predictions/digits", content=png).json() for png, _ in good]
    bodies = [b"digits|" + png for png, _ in good]
    bodies.insert(3, b"digits|this is not a png")
    answers = asyncio.run(_post_many(server.url, bodies))
    statuses = [r.status_code for r in answers]
    assert statuses == [200, 200, 200, 400, 200, 200, 200, 200]
    got = [r.json() for r in answers[:3] + answers[4:]]
    assert [top(g) for g in got] == [top(e) for e in expected]
    toy = asyncio.run(_post_many(server.url, [b"toy|a", b"toy|bad", b"toy|b", b"toy|boom"]))
    assert [r.status_code for r in toy] == [200, 400, 200, 500]


def test_200_concurrent_requests_all_answered_correctly(
        server: RunningServer, digit_samples: list[tuple[bytes, int]]) -> None:
    samples = digit_samples[:40]
    with server.client() as c:
        expected = {png: top(c.post("/predictions/digits/2.0", content=png).json())
                    for png, _ in samples}
    bodies = [b"digits|" + samples[i % len(samples)][0] for i in range(200)]
    answers = asyncio.run(_post_many(server.url, bodies))
    assert [r.status_code for r in answers] == [200] * 200
    for body, r in zip(bodies, answers, strict=True):
        assert top(r.json()) == expected[body.split(b"|", 1)[1]]


def test_request_id_is_returned(server: RunningServer) -> None:
    with server.client() as c:
        r = c.post("/predictions/toy", content=b"x", headers={"x-request-id": "abc123"})
    assert r.headers["x-request-id"] == "abc123"
    assert json.loads(r.text)["echo"] == "x"
