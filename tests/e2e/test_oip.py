"""The Open Inference Protocol (KServe v2) over REST and gRPC, and Triton's own client."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import RunningServer
from torchwire.grpc.generated import inference_pb2 as ts
from torchwire.grpc.generated import inference_pb2_grpc as ts_grpc
from torchwire.grpc.generated import predict_v2_pb2 as pb
from torchwire.grpc.generated import predict_v2_pb2_grpc as pb_grpc
from torchwire.oip.tensor import join_bytes, split_bytes

NUMERIC = {"UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
           "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
           "FP16": np.float16, "FP32": np.float32, "FP64": np.float64}
CONTENTS = {"UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
            "UINT64": "uint64_contents", "INT8": "int_contents", "INT16": "int_contents",
            "INT32": "int_contents", "INT64": "int64_contents", "FP32": "fp32_contents",
            "FP64": "fp64_contents"}
OIP_DTYPE = {np.dtype(v).str: k for k, v in NUMERIC.items()}


@pytest.fixture(scope="module")
def http(oip_server: RunningServer) -> Iterator[httpx.Client]:
    with oip_server.client() as client:
        yield client


@pytest.fixture(scope="module")
def stub(oip_server: RunningServer) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(oip_server.grpc_target) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def sample(dtype: str) -> np.ndarray:
    values = np.arange(6).reshape(2, 3) * 3 - (0 if dtype.startswith("UINT") else 7)
    return values.astype(NUMERIC[dtype])


def infer_raw(stub: pb_grpc.GRPCInferenceServiceStub, model: str, name: str, dtype: str,
              array: np.ndarray, raw: bytes | None = None, **kw: Any) -> pb.ModelInferResponse:
    request = pb.ModelInferRequest(model_name=model, **kw)
    request.inputs.add(name=name, datatype=dtype, shape=list(array.shape))
    request.raw_input_contents.append(raw if raw is not None else array.astype(
        array.dtype.newbyteorder("<")).tobytes())
    return stub.ModelInfer(request, timeout=60)


def outputs_of(reply: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    arrays = {}
    for out, raw in zip(reply.outputs, reply.raw_output_contents, strict=True):
        dtype = np.dtype(NUMERIC[out.datatype]).newbyteorder("<")
        arrays[out.name] = np.frombuffer(raw, dtype).reshape(list(out.shape))
    return arrays


# -- health and metadata --------------------------------------------------------------------
def test_rest_health_and_server_metadata(http: httpx.Client) -> None:
    assert http.get("/v2/health/live").json() == {"live": True}
    ready = http.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    meta = http.get("/v2").json()
    assert meta["name"] == "torchwire" and "binary_tensor_data" in meta["extensions"]


def test_rest_model_metadata_and_readiness(http: httpx.Client) -> None:
    declared = http.get("/v2/models/declared").json()
    assert declared == {
        "name": "declared", "versions": ["1.0"], "platform": "test_platform",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
        "outputs": [{"name": "doubled", "datatype": "FP32", "shape": [-1, 3]},
                    {"name": "shape", "datatype": "INT64", "shape": [2]}],
    }
    assert http.get("/v2/models/declared/versions/1.0").json() == declared
    assert http.get("/v2/models/tensors/versions/1.0/ready").json() == {"name": "tensors",
                                                                        "ready": True}
    missing = http.get("/v2/models/tensors/versions/3.0/ready")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Model version: 3.0 does not exist for model: tensors"}
    assert http.get("/v2/models/nope").json() == {"error": "Model not found: nope"}


def test_grpc_health_and_metadata(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="tensors", version="1.0")).ready
    meta = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert meta.name == "torchwire"
    model = stub.ModelMetadata(pb.ModelMetadataRequest(name="declared"))
    assert (model.platform, list(model.versions)) == ("test_platform", ["1.0"])
    assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [
        ("x", "FP32", [-1, 3])]
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelReady(pb.ModelReadyRequest(name="nope"))
    assert info.value.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


# -- inference, every datatype, three encodings -------------------------------------------
@pytest.mark.parametrize("dtype", list(NUMERIC))
def test_numeric_tensors_round_trip_over_grpc_raw(stub: pb_grpc.GRPCInferenceServiceStub,
                                                  dtype: str) -> None:
    x = sample(dtype)
    reply = infer_raw(stub, "tensors", "x", dtype, x, id="req-1")
    assert (reply.model_name, reply.model_version, reply.id) == ("tensors", "1.0", "req-1")
    out = outputs_of(reply)
    assert {o.name: o.datatype for o in reply.outputs} == {"doubled": dtype, "shape": "INT64"}
    assert np.array_equal(out["doubled"], x * 2)
    assert out["shape"].tolist() == [2, 3]


@pytest.mark.parametrize("dtype", list(CONTENTS))
def test_numeric_tensors_in_typed_contents(stub: pb_grpc.GRPCInferenceServiceStub,
                                           dtype: str) -> None:
    x = sample(dtype)
    request = pb.ModelInferRequest(model_name="tensors")
    tensor = request.inputs.add(name="x", datatype=dtype, shape=[2, 3])
    getattr(tensor.contents, CONTENTS[dtype]).extend(x.reshape(-1).tolist())
    reply = stub.ModelInfer(request, timeout=60)
    assert not reply.raw_output_contents  # typed in, typed out
    doubled = next(o for o in reply.outputs if o.name == "doubled")
    got = np.asarray(getattr(doubled.contents, CONTENTS[dtype]), dtype=NUMERIC[dtype])
    assert np.array_equal(got.reshape(2, 3), x * 2)


@pytest.mark.parametrize("dtype", ["UINT8", "INT64", "FP16", "FP64"])
def test_numeric_tensors_over_rest_json_and_binary(http: httpx.Client, dtype: str) -> None:
    x = sample(dtype)
    body = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": dtype, "data": x.tolist()}]}
    doc = http.post("/v2/models/tensors/infer", json=body).json()
    doubled = next(o for o in doc["outputs"] if o["name"] == "doubled")
    assert doubled["datatype"] == dtype and doubled["shape"] == [2, 3]
    assert np.array_equal(np.asarray(doubled["data"], NUMERIC[dtype]).reshape(2, 3), x * 2)
    raw = x.astype(x.dtype.newbyteorder("<")).tobytes()
    head = json.dumps({"inputs": [{"name": "x", "shape": [2, 3], "datatype": dtype,
                                   "parameters": {"binary_data_size": len(raw)}}],
                       "outputs": [{"name": "doubled", "parameters": {"binary_data": True}}]})
    r = http.post("/v2/models/tensors/versions/1.0/infer", content=head.encode() + raw,
                  headers={"Inference-Header-Content-Length": str(len(head))})
    size = int(r.headers["inference-header-content-length"])
    meta = json.loads(r.content[:size])
    assert [o["name"] for o in meta["outputs"]] == ["doubled"]
    got = np.frombuffer(r.content[size:], np.dtype(NUMERIC[dtype]).newbyteorder("<"))
    assert np.array_equal(got.reshape(2, 3), x * 2)


def test_bf16_is_raw_only_and_reaches_the_handler_as_float32(
        stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    import torch

    x = torch.tensor([[1.5, -2.0, 3.0]], dtype=torch.bfloat16)
    raw = x.view(torch.int16).numpy().astype("<i2").tobytes()
    reply = infer_raw(stub, "tensors", "x", "BF16", np.zeros((1, 3)), raw=raw)
    doubled = outputs_of(reply)["doubled"]
    assert doubled.dtype == np.float32 and doubled.tolist() == [[3.0, -4.0, 6.0]]
    request = pb.ModelInferRequest(model_name="tensors")
    request.inputs.add(name="x", datatype="BF16", shape=[1])
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request, timeout=60)
    assert "must be sent in raw_input_contents" in info.value.details()  # type: ignore


def test_bytes_inputs_arrive_as_bytes_or_str(stub: pb_grpc.GRPCInferenceServiceStub,
                                             http: httpx.Client) -> None:
    request = pb.ModelInferRequest(model_name="tensors")
    request.inputs.add(name="t", datatype="BYTES", shape=[1]).contents.bytes_contents.append(
        b"abc")
    (answer,) = stub.ModelInfer(request, timeout=60).outputs[0].contents.bytes_contents
    assert json.loads(answer) == {"type": "bytes", "upper": "ABC", "inputs": ["data", "t"]}
    request.inputs[0].parameters["content_type"].string_param = "str"
    reply = stub.ModelInfer(request, timeout=60)
    assert json.loads(reply.outputs[0].contents.bytes_contents[0])["type"] == "str"
    body = {"inputs": [{"name": "words", "shape": [2, 1], "datatype": "BYTES",
                        "data": [["tiny"], ["text"]]}]}
    out = http.post("/v2/models/tensors/infer", json=body).json()["outputs"][0]
    assert (out["datatype"], out["shape"], out["data"]) == ("BYTES", [2, 1], ["TINY", "TEXT"])


# -- errors -----------------------------------------------------------------------------
@pytest.mark.parametrize(("model", "body", "status", "message"), [
    ("nope", {"inputs": []}, 404, "Model not found: nope"),
    ("tensors", {"inputs": []}, 400, "the request has no inputs"),
    ("tensors", {"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2]}]},
     400, "input 'x': shape [3] holds 3 element(s), data has 2"),
    ("tensors", {"inputs": [{"name": "x", "shape": [1], "datatype": "FLOAT", "data": [1]}]},
     400, "input 'x': unknown datatype 'FLOAT'"),
    ("declared", {"inputs": [{"name": "y", "shape": [1, 3], "datatype": "FP32",
                              "data": [1, 2, 3]}]}, 400, "unexpected input 'y'"),
    ("declared", {"inputs": [{"name": "x", "shape": [3, 1], "datatype": "FP32",
                              "data": [1, 2, 3]}]}, 400, "the model expects [-1, 3]"),
    ("tensors", {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],
                 "outputs": [{"name": "nah"}]}, 400, "unknown output(s) nah"),
    ("digits", {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]},
     400, "expected an 8x8 image"),
])
def test_rest_errors_are_error_objects_and_grpc_gets_the_same_message(
        http: httpx.Client, stub: pb_grpc.GRPCInferenceServiceStub, model: str,
        body: dict[str, Any], status: int, message: str) -> None:
    r = http.post(f"/v2/models/{model}/infer", json=body)
    assert r.status_code == status
    assert list(r.json()) == ["error"] and message in r.json()["error"]
    request = pb.ModelInferRequest(model_name=model)
    for entry in body["inputs"]:
        tensor = request.inputs.add(name=entry["name"], datatype=entry["datatype"],
                                    shape=entry["shape"])
        tensor.contents.fp32_contents.extend(np.asarray(entry["data"]).reshape(-1).tolist())
    for entry in body.get("outputs", []):
        request.outputs.add(name=entry["name"])
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request, timeout=60)
    want = grpc.StatusCode.NOT_FOUND if status == 404 else grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.code() is want  # type: ignore[attr-defined]
    if "contents" not in info.value.details():  # type: ignore[attr-defined]
        assert info.value.details() == r.json()["error"]  # type: ignore[attr-defined]


def test_malformed_bodies_are_400s(http: httpx.Client) -> None:
    for content in [b"", b"{nope", b"[]"]:
        r = http.post("/v2/models/tensors/infer", content=content)
        assert r.status_code == 400 and "error" in r.json()
    r = http.post("/v2/models/tensors/infer", content=b"{}",
                  headers={"Inference-Header-Content-Length": "99"})
    assert r.status_code == 400 and "inference-header-content-length" in r.json()["error"]


def test_explain_without_support_is_a_501(http: httpx.Client) -> None:
    body = {"inputs": [{"name": "x", "shape": [64], "datatype": "FP32", "data": [0.0] * 64}]}
    r = http.post("/v2/models/digits/explain", json=body)
    assert r.status_code == 501 and "does not support explanations" in r.json()["error"]


def test_full_queue_is_unavailable_with_the_rest_message(oip_server: RunningServer) -> None:
    with grpc.insecure_channel(oip_server.grpc_target) as channel:
        stub = ts_grpc.InferenceAPIsServiceStub(channel)
        request = ts.PredictionsRequest(model_name="queue1", input={"data": b"sleep:0.5"})

        def call(_: int) -> tuple[grpc.StatusCode, str]:
            try:
                stub.Predictions(request, timeout=60)
                return grpc.StatusCode.OK, ""
            except grpc.RpcError as err:
                return err.code(), err.details()  # type: ignore[attr-defined]

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(call, range(6)))
    codes = [code for code, _ in results]
    assert grpc.StatusCode.OK in codes and grpc.StatusCode.UNAVAILABLE in codes
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
    full = next(msg for code, msg in results if code is grpc.StatusCode.UNAVAILABLE)
    assert full == "job queue is full (1 requests waiting); retry later"


# -- images through the default image_classifier handler -------------------------------------
def test_an_image_as_png_uint8_tensor_or_bytes_gets_the_same_answer(
        http: httpx.Client, stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    png = buf.getvalue()
    rest = http.post("/predictions/tiny", content=png).json()
    assert len(rest) == 3
    as_tensor = infer_raw(stub, "tiny", "image", "UINT8", pixels)
    as_bytes = pb.ModelInferRequest(model_name="tiny", raw_input_contents=[join_bytes([png])])
    as_bytes.inputs.add(name="image", datatype="BYTES", shape=[1])
    for reply in (as_tensor, stub.ModelInfer(as_bytes, timeout=60)):
        assert [o.name for o in reply.outputs] == ["image"]  # named after the input
        (text,) = split_bytes(reply.raw_output_contents[0], "image")
        assert json.loads(text) == rest


def test_a_float_tensor_is_the_model_input_as_in_torchserve(
        http: httpx.Client, stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    """TorchServe's VisionHandler takes a KServe v2 tensor as the model input itself, with
    no image transform: FP32 over gRPC and REST v2 answer what the same numbers sent as a
    JSON list to /predictions answer."""
    x = np.random.default_rng(1).random((3, 28, 28), dtype=np.float32)
    rest = http.post("/predictions/tiny", json=x.tolist())
    assert rest.status_code == 200, rest.text
    (text,) = split_bytes(infer_raw(stub, "tiny", "input-0", "FP32", x).raw_output_contents[0],
                          "input-0")
    v2 = http.post("/v2/models/tiny/infer", json={"inputs": [
        {"name": "input-0", "shape": [3, 28, 28], "datatype": "FP32",
         "data": x.ravel().tolist()}]})
    assert v2.status_code == 200, v2.text
    (output,) = v2.json()["outputs"]
    assert output["name"] == "input-0"
    for answer in (json.loads(text), json.loads(output["data"][0])):
        assert answer.keys() == rest.json().keys()
        assert list(answer.values()) == pytest.approx(list(rest.json().values()), rel=1e-6)


def test_a_tensor_the_model_cannot_take_fails_alone(
        http: httpx.Client, stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    """A tensor of the wrong shape fails in the model, as in TorchServe (whose answer is a
    503), with the model's own message; text where numbers belong is refused up front."""
    with pytest.raises(grpc.RpcError) as info:
        infer_raw(stub, "tiny", "image", "FP32", np.zeros((4, 4, 3), np.float32))
    assert info.value.code() is grpc.StatusCode.INTERNAL  # type: ignore[attr-defined]
    assert "expected input[1, 4, 4, 3] to have 3 channels" in info.value.details()  # type: ignore[attr-defined]
    words = pb.ModelInferRequest(model_name="tiny", raw_input_contents=[join_bytes([b"a", b"b"])])
    words.inputs.add(name="image", datatype="BYTES", shape=[2])
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(words, timeout=60)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "numeric tensor" in info.value.details()  # type: ignore[attr-defined]
    assert http.post("/predictions/tiny", json=np.zeros((3, 28, 28)).tolist()).status_code == 200


# -- tritonclient: a real third-party client ------------------------------------------------
def test_tritonclient_grpc_infer(oip_server: RunningServer) -> None:
    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(oip_server.grpc_target)
    assert client.is_server_live() and client.is_model_ready("declared")
    x = np.asarray([[0.5, 1.5, -2.0], [4.0, 5.0, 6.0]], dtype=np.float32)
    tensor = triton.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer("declared", [tensor], request_id="t1")
    assert np.array_equal(result.as_numpy("doubled"), x * 2)
    assert result.as_numpy("shape").tolist() == [2, 3]
    assert result.get_response().id == "t1"
    words = np.asarray([["tiny"], ["text"]], dtype=object)
    text = triton.InferInput("words", [2, 1], "BYTES")
    text.set_data_from_numpy(words)
    upper = client.infer("tensors", [text]).as_numpy("words")
    assert upper.tolist() == [[b"TINY"], [b"TEXT"]]


def test_tritonclient_http_infer_binary_and_json(oip_server: RunningServer,
                                                 digit_samples: list[tuple[bytes, int]]) -> None:
    import tritonclient.http as triton
    from sklearn.datasets import load_digits

    client = triton.InferenceServerClient(oip_server.url.removeprefix("http://"))
    assert client.is_server_ready() and client.is_model_ready("digits")
    x = np.asarray([[1.0, 2.0, 3.0]], dtype=np.float32)
    for binary in (True, False):
        tensor = triton.InferInput("x", [1, 3], "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        outputs = [triton.InferRequestedOutput("doubled", binary_data=binary)]
        result = client.infer("declared", [tensor], outputs=outputs)
        assert np.array_equal(result.as_numpy("doubled"), x * 2)
    digits = load_digits()
    pixels = triton.InferInput("pixels", [1, 64], "FP32")
    pixels.set_data_from_numpy(digits.data[7:8].astype(np.float32))
    (answer,) = client.infer("digits", [pixels]).as_numpy("pixels")
    scores = json.loads(answer)
    assert int(max(scores, key=scores.__getitem__)) == digits.target[7]
    with pytest.raises(Exception, match="Model not found: nope"):
        client.infer("nope", [pixels])


def test_rest_v2_output_is_named_after_the_input(http: httpx.Client) -> None:
    """TorchServe's kservev2 envelope: no declared outputs → the output takes the input's name."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    body = {"id": "d3b15cad", "inputs": [{"name": "input-0", "shape": [1, 64],
                                          "datatype": "FP32", "data": digits.data[3].tolist()}]}
    doc = http.post("/v2/models/digits/infer", json=body).json()
    assert (doc["id"], doc["model_name"], doc["model_version"]) == ("d3b15cad", "digits", "1.0")
    (out,) = doc["outputs"]
    assert out["name"] == "input-0" and out["shape"] == [1]
    scores = json.loads(out["data"][0])
    assert int(max(scores, key=scores.__getitem__)) == digits.target[3]
