"""Streamed answers: a handler's intermediate responses over REST (chunked) and gRPC."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest

from tests.conftest import TOY, RunningServer, handler_archive, start_server, stop_server
from torchwire.grpc.generated import inference_pb2 as pb
from torchwire.grpc.generated import inference_pb2_grpc as pb_grpc

TSHANDLERS = Path(__file__).resolve().parent / "tshandlers"
READ_TIMEOUT = httpx.Timeout(30.0)  # a chunk that never comes fails the test, not hangs it


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("streaming")
    store = tmp / "store"
    store.mkdir()
    handler_archive(store, "stream", TOY / "stream_handler.py", store / "stream")
    handler_archive(store, "tsstream", TSHANDLERS / "streaming_ts.py", store / "tsstream")
    models = {
        # TorchServe's batch rule: two requests sent together always share one batch
        "stream": {"1.0": {"batchSize": 2, "maxBatchDelay": 5000, "batchPolicy": "torchserve"}},
        "stream1": {"1.0": {"batchSize": 1, "maxBatchDelay": 0}},
        "ticker": {"1.0": {"batchSize": 1, "maxBatchDelay": 0, "responseTimeout": 2}},
    }
    archives = ["stream=stream/stream.mar", "stream1=stream/stream.mar",
                "ticker=stream/stream.mar", "tsstream=tsstream/tsstream.mar"]
    running = start_server(tmp, store, archives, {"models": json.dumps(models)})
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def stub(server: RunningServer) -> Iterator[pb_grpc.InferenceAPIsServiceStub]:
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield pb_grpc.InferenceAPIsServiceStub(channel)


def tokens(text: str, batch: int = 1) -> list[str]:
    return [f"{text}{i}|" for i in range(3)] + [f"{text}-end/{batch}"]


def stream_post(server: RunningServer, model: str, text: str) -> tuple[httpx.Response, list[bytes]]:
    with httpx.Client(base_url=server.url, timeout=READ_TIMEOUT) as client:
        with client.stream("POST", f"/predictions/{model}", content=text.encode()) as reply:
            return reply, list(reply.iter_raw())


def request(model: str, text: str) -> pb.PredictionsRequest:
    return pb.PredictionsRequest(model_name=model, input={"data": text.encode()})


# -- REST -------------------------------------------------------------------------------
def test_chunks_reach_the_client_while_the_handler_still_runs(server: RunningServer,
                                                              tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    text = f"gate:{gate}"
    with httpx.Client(base_url=server.url, timeout=READ_TIMEOUT) as client:
        with client.stream("POST", "/predictions/stream1", content=text.encode()) as reply:
            assert reply.status_code == 200
            assert reply.headers["transfer-encoding"] == "chunked"
            assert "content-length" not in reply.headers
            assert reply.headers["content-type"] == "text/plain; charset=utf-8"
            assert reply.headers["x-request-id"]
            chunks = reply.iter_raw()
            first = next(chunks)
            assert first == tokens(text)[0].encode()
            assert not gate.exists()  # the handler is still blocked after its first token
            gate.touch()
            rest = b"".join(chunks)
    assert (first + rest).decode() == "".join(tokens(text))


def test_each_request_of_a_batch_gets_its_own_chunks_in_order(server: RunningServer) -> None:
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda t: stream_post(server, "stream", t), ["a", "b"]))
    for text, (reply, chunks) in zip(["a", "b"], answers, strict=True):
        assert reply.status_code == 200
        assert b"".join(chunks).decode() == "".join(tokens(text, batch=2))


def test_a_failing_request_fails_alone_and_its_neighbour_streams_on(
        server: RunningServer) -> None:
    with ThreadPoolExecutor(2) as pool:
        good = pool.submit(stream_post, server, "stream", "a")
        bad = pool.submit(stream_post, server, "stream", "boom")
        reply, chunks = good.result()
        # The batch failed after its first tokens; each request was run again alone and
        # the tokens its client already had were not sent twice.
        assert b"".join(chunks).decode() == "a0|a1|a2|a-end/1"
        with pytest.raises(httpx.RemoteProtocolError):
            bad.result()


def test_a_failure_after_the_first_chunk_cuts_the_body_short(server: RunningServer) -> None:
    received = b""
    with httpx.Client(base_url=server.url, timeout=READ_TIMEOUT) as client:
        with client.stream("POST", "/predictions/stream1", content=b"boom") as reply:
            assert reply.status_code == 200  # sent with the first chunk, before the failure
            with pytest.raises(httpx.RemoteProtocolError):
                for chunk in reply.iter_raw():
                    received += chunk
    first, _, error = received.partition(b"|")
    assert first == b"boom0"
    assert json.loads(error) == {"code": 500, "type": "PredictionException",
                                 "message": "handler stream_handler.py failed: ValueError: "
                                            "the stream exploded"}


def test_a_client_that_reads_the_whole_body_gets_all_chunks(server: RunningServer) -> None:
    reply = httpx.post(f"{server.url}/predictions/stream1", content=b"whole", timeout=30)
    assert reply.status_code == 200
    assert reply.text == "".join(tokens("whole"))


def test_an_answer_without_intermediates_keeps_its_content_length(
        server: RunningServer) -> None:
    reply = httpx.post(f"{server.url}/predictions/stream1", content=b"plain", timeout=30)
    assert reply.status_code == 200
    assert "transfer-encoding" not in reply.headers
    assert reply.headers["content-length"] == str(len(reply.content))
    assert reply.json() == {"plain": True, "batch": 1}


def test_a_client_gone_mid_stream_does_not_hold_the_worker(server: RunningServer,
                                                           tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with httpx.Client(base_url=server.url, timeout=READ_TIMEOUT) as client:
        with client.stream("POST", "/predictions/stream1",
                           content=f"gate:{gate}".encode()) as reply:
            next(reply.iter_raw())
        # leaving the block closed the connection with the body unread
    gate.touch()
    after = httpx.post(f"{server.url}/predictions/stream1", content=b"next", timeout=30)
    assert after.text == "".join(tokens("next"))


def test_each_chunk_restarts_the_response_timeout(server: RunningServer) -> None:
    # 6 tokens 0.5 s apart: 3 s in all, over the model's responseTimeout of 2 s.
    reply, chunks = stream_post(server, "ticker", "tick:0.5:6")
    assert b"".join(chunks).decode() == "".join(f"t{i}|" for i in range(6)) + "t-end"


def test_silence_past_the_response_timeout_ends_the_stream(server: RunningServer) -> None:
    received = b""
    with httpx.Client(base_url=server.url, timeout=READ_TIMEOUT) as client:
        with client.stream("POST", "/predictions/ticker", content=b"tick:4:2") as reply:
            with pytest.raises(httpx.RemoteProtocolError):
                for chunk in reply.iter_raw():
                    received += chunk
    assert received.startswith(b"t0|")
    error = json.loads(received[3:])
    assert (error["code"], error["type"]) == (408, "RequestTimeoutException")


def test_a_torchserve_style_handler_streams(server: RunningServer) -> None:
    reply, chunks = stream_post(server, "tsstream", "x")
    assert reply.status_code == 200
    assert reply.headers["transfer-encoding"] == "chunked"
    assert b"".join(chunks).decode() == 'x: hello {"word": "world", "for": "x"} x: done'


# -- gRPC -------------------------------------------------------------------------------
def test_stream_predictions_sends_one_message_per_chunk(
        stub: pb_grpc.InferenceAPIsServiceStub, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    text = f"gate:{gate}"
    call = stub.StreamPredictions(request("stream1", text), timeout=30)
    first = next(call)
    assert first.prediction.decode() == tokens(text)[0]
    assert not gate.exists()
    gate.touch()
    rest = [r.prediction.decode() for r in call]
    assert [first.prediction.decode(), *rest] == tokens(text)


def test_stream_predictions_ends_with_the_error_status(
        stub: pb_grpc.InferenceAPIsServiceStub) -> None:
    call = stub.StreamPredictions(request("stream1", "boom"), timeout=30)
    assert next(call).prediction == b"boom0|"
    with pytest.raises(grpc.RpcError) as info:
        next(call)
    assert info.value.code() is grpc.StatusCode.INTERNAL  # type: ignore[attr-defined]
    assert "the stream exploded" in info.value.details()  # type: ignore[attr-defined]


def test_stream_predictions2_answers_each_request_in_order(
        stub: pb_grpc.InferenceAPIsServiceStub) -> None:
    texts = ["x", "boom", "y"]
    requests = [pb.PredictionsRequest(model_name="stream1", input={"data": t.encode()},
                                      sequenceId=f"s-{t}") for t in texts]
    replies = list(stub.StreamPredictions2(iter(requests), timeout=30))
    got = [(r.sequenceId, r.prediction.decode(), r.status.code) for r in replies]
    internal = grpc.StatusCode.INTERNAL.value[0]
    assert got == ([("s-x", t, 0) for t in tokens("x")] + [("s-boom", "boom0|", 0),
                   ("s-boom", "", internal)] + [("s-y", t, 0) for t in tokens("y")])


def test_unary_predictions_joins_the_chunks(stub: pb_grpc.InferenceAPIsServiceStub) -> None:
    reply = stub.Predictions(request("stream1", "u"), timeout=30)
    assert reply.prediction.decode() == "".join(tokens("u"))
    with pytest.raises(grpc.RpcError) as info:
        stub.Predictions(request("stream1", "boom"), timeout=30)
    assert info.value.code() is grpc.StatusCode.INTERNAL  # type: ignore[attr-defined]


def test_a_cancelled_grpc_stream_does_not_hold_the_worker(
        stub: pb_grpc.InferenceAPIsServiceStub, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    call = stub.StreamPredictions(request("stream1", f"gate:{gate}"), timeout=30)
    next(call)
    call.cancel()
    gate.touch()
    reply = stub.Predictions(request("stream1", "next"), timeout=30)
    assert reply.prediction.decode() == "".join(tokens("next"))


# -- the Open Inference Protocol --------------------------------------------------------
def test_oip_answers_with_the_final_answer_only(server: RunningServer) -> None:
    body = {"inputs": [{"name": "data", "datatype": "BYTES", "shape": [1], "data": ["v"]}]}
    reply = httpx.post(f"{server.url}/v2/models/stream1/infer", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"][0]["data"] == ["v-end/1"]
