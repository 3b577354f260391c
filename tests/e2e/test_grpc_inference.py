"""TorchServe's gRPC inference API, called with stubs generated from our protos."""

from __future__ import annotations

import base64
import io
import json
import random
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest
from google.protobuf import empty_pb2
from PIL import Image

from tests.conftest import RunningServer
from torchwire.grpc.generated import inference_pb2 as pb
from torchwire.grpc.generated import inference_pb2_grpc as pb_grpc
from torchwire.grpc.generated import predict_v2_pb2 as oip
from torchwire.grpc.generated import predict_v2_pb2_grpc as oip_grpc
from torchwire.oip.tensor import join_bytes, split_bytes

MB = 1024 * 1024


def top(prediction: dict[str, float]) -> int:
    return int(max(prediction, key=prediction.__getitem__))


@pytest.fixture(scope="module")
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    options = [("grpc.max_send_message_length", 64 * MB),
               ("grpc.max_receive_message_length", 64 * MB)]
    with grpc.insecure_channel(server.grpc_target, options=options) as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> pb_grpc.InferenceAPIsServiceStub:
    return pb_grpc.InferenceAPIsServiceStub(channel)


def predict(stub: pb_grpc.InferenceAPIsServiceStub, model: str, data: bytes,
            version: str = "") -> dict[str, float]:
    request = pb.PredictionsRequest(model_name=model, model_version=version, input={"data": data})
    return json.loads(stub.Predictions(request, timeout=60).prediction)


def rpc_error(call: object, *args: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, timeout=60)  # type: ignore[operator]
    return info.value


def test_ping(stub: pb_grpc.InferenceAPIsServiceStub) -> None:
    reply = stub.Ping(empty_pb2.Empty(), timeout=10)
    assert json.loads(reply.health) == {"status": "Healthy"}


def test_predictions_on_digits_are_right(stub: pb_grpc.InferenceAPIsServiceStub,
                                         digit_samples: list[tuple[bytes, int]]) -> None:
    answers = [predict(stub, "digits", png) for png, _ in digit_samples[:40]]
    hits = sum(top(a) == label for a, (_, label) in zip(answers, digit_samples, strict=False))
    assert hits / 40 >= 0.9
    assert len(answers[0]) == 3 and abs(sum(answers[0].values()) - 1) < 0.05


def test_versions_and_the_toy_model(stub: pb_grpc.InferenceAPIsServiceStub,
                                    digit_samples: list[tuple[bytes, int]]) -> None:
    png = digit_samples[0][0]
    assert top(predict(stub, "digits", png, "2.0")) == top(predict(stub, "digits", png))
    assert predict(stub, "toy", b"hello") == {"echo": "hello", "batch": 1}


def test_several_inputs_reach_the_handler_as_one_row(
        stub: pb_grpc.InferenceAPIsServiceStub) -> None:
    # The toy handler reads "data", falling back to "body"; both keys arrive.
    request = pb.PredictionsRequest(model_name="toy", input={"body": b"b", "data": b"d"})
    assert json.loads(stub.Predictions(request, timeout=60).prediction)["echo"] == "d"


def test_same_answer_over_rest_torchserve_grpc_and_oip(
        server: RunningServer, channel: grpc.Channel, stub: pb_grpc.InferenceAPIsServiceStub,
        digit_samples: list[tuple[bytes, int]]) -> None:
    png = digit_samples[3][0]
    rest = httpx.post(f"{server.url}/predictions/digits", content=png, timeout=60).json()
    ts_grpc = predict(stub, "digits", png)
    request = oip.ModelInferRequest(model_name="digits", raw_input_contents=[join_bytes([png])])
    request.inputs.add(name="image", datatype="BYTES", shape=[1])
    reply = oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
    (oip_grpc_answer,) = split_bytes(reply.raw_output_contents[0], "output")
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                        "data": [base64.b64encode(png).decode()]}]}
    oip_rest = httpx.post(f"{server.url}/v2/models/digits/infer", json=body, timeout=60).json()
    assert rest == ts_grpc == json.loads(oip_grpc_answer) == json.loads(
        oip_rest["outputs"][0]["data"][0])
    assert top(rest) == digit_samples[3][1]


def test_stream_predictions_answers_the_prediction(
        stub: pb_grpc.InferenceAPIsServiceStub, digit_samples: list[tuple[bytes, int]]) -> None:
    png = digit_samples[1][0]
    request = pb.PredictionsRequest(model_name="digits", input={"data": png})
    replies = list(stub.StreamPredictions(request, timeout=60))
    assert [json.loads(r.prediction) for r in replies] == [predict(stub, "digits", png)]


def test_stream_predictions2_answers_in_order_and_survives_a_bad_request(
        stub: pb_grpc.InferenceAPIsServiceStub) -> None:
    texts = [b"one", b"bad", b"three"]
    requests = [pb.PredictionsRequest(model_name="toy", input={"data": t}, sequenceId="seq-1")
                for t in texts]
    requests.insert(1, pb.PredictionsRequest(model_name="nope", input={"data": b"x"}))
    replies = list(stub.StreamPredictions2(iter(requests), timeout=60))
    assert len(replies) == 4
    assert json.loads(replies[0].prediction)["echo"] == "one"
    assert replies[0].sequenceId == "seq-1"
    assert replies[1].status.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert replies[1].status.message == "Model not found: nope"
    assert replies[2].status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert replies[2].status.message == "toy cannot read 'bad'"
    assert json.loads(replies[3].prediction)["echo"] == "three"


@pytest.mark.parametrize(("request_", "code", "message"), [
    (pb.PredictionsRequest(model_name="nope", input={"data": b"x"}),
     grpc.StatusCode.NOT_FOUND, "Model not found: nope"),
    (pb.PredictionsRequest(model_name="digits", model_version="9.9", input={"data": b"x"}),
     grpc.StatusCode.NOT_FOUND, "Model version: 9.9 does not exist for model: digits"),
    (pb.PredictionsRequest(model_name="digits", input={"data": b"not an image"}),
     grpc.StatusCode.INVALID_ARGUMENT, "the input is not an image"),
    (pb.PredictionsRequest(input={"data": b"x"}),
     grpc.StatusCode.INVALID_ARGUMENT, "Parameter model_name is required."),
    (pb.PredictionsRequest(model_name="digits"),
     grpc.StatusCode.INVALID_ARGUMENT, "the request has no input"),
    (pb.PredictionsRequest(model_name="toy", input={"data": b"boom"}),
     grpc.StatusCode.INTERNAL, "toy exploded"),
], ids=["model", "version", "input", "no-name", "no-input", "handler"])
def test_errors_have_proper_codes_and_the_rest_message(
        server: RunningServer, stub: pb_grpc.InferenceAPIsServiceStub,
        request_: pb.PredictionsRequest, code: grpc.StatusCode, message: str) -> None:
    err = rpc_error(stub.Predictions, request_)
    assert err.code() is code  # type: ignore[attr-defined]
    assert message in err.details()  # type: ignore[attr-defined]
    if request_.model_name and request_.input:
        path = "/predictions/" + request_.model_name
        path += f"/{request_.model_version}" if request_.model_version else ""
        rest = httpx.post(server.url + path, content=request_.input["data"], timeout=60)
        assert rest.json()["message"] == err.details()  # type: ignore[attr-defined]
        trailers = dict(err.trailing_metadata())  # type: ignore[attr-defined]
        assert trailers["error-type"] == rest.json()["type"]


def test_a_20_mb_image_is_accepted(stub: pb_grpc.InferenceAPIsServiceStub) -> None:
    rng = random.Random(0)
    side = 2700  # 2700 x 2700 RGB noise, stored uncompressed: over 20 MiB
    noise = np.frombuffer(rng.randbytes(side * side * 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise.reshape(side, side, 3)).save(buf, "PNG", compress_level=0)
    png = buf.getvalue()
    assert len(png) > 20 * MB
    answer = predict(stub, "digits", png)
    assert len(answer) == 3
