"""TorchServe's gRPC management API: every RPC against a running server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.conftest import (
    RunningServer,
    second_version,
    serving_archive,
    toy_archive,
    wait_until,
)
from torchwire.grpc.generated import inference_pb2 as ts
from torchwire.grpc.generated import inference_pb2_grpc as ts_grpc
from torchwire.grpc.generated import management_pb2 as pb
from torchwire.grpc.generated import management_pb2_grpc as pb_grpc


class WithKey(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Send the management key with every call, as an operator's client would."""

    def __init__(self, key: str) -> None:
        self.metadata = (("authorization", f"Bearer {key}"),)

    def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        details = details._replace(metadata=self.metadata)
        return continuation(details, request)


@pytest.fixture(scope="module")
def mgmt(oip_server: RunningServer) -> Iterator[pb_grpc.ManagementAPIsServiceStub]:
    with grpc.insecure_channel(oip_server.grpc_management_target) as channel:
        keyed = grpc.intercept_channel(channel, WithKey(oip_server.key("management")))
        yield pb_grpc.ManagementAPIsServiceStub(keyed)


@pytest.fixture(scope="module")
def infer(oip_server: RunningServer) -> Iterator[ts_grpc.InferenceAPIsServiceStub]:
    with grpc.insecure_channel(oip_server.grpc_target) as channel:
        yield ts_grpc.InferenceAPIsServiceStub(channel)


def describe(mgmt: pb_grpc.ManagementAPIsServiceStub, name: str,
             version: str = "") -> list[dict[str, object]]:
    reply = mgmt.DescribeModel(pb.DescribeModelRequest(model_name=name, model_version=version),
                               timeout=60)
    return json.loads(reply.msg)


def echo(infer: ts_grpc.InferenceAPIsServiceStub, name: str, version: str = "",
         data: bytes = b"pid") -> object:
    request = ts.PredictionsRequest(model_name=name, model_version=version,
                                    input={"data": data})
    return json.loads(infer.Predictions(request, timeout=60).prediction)


def error_of(call: object, request: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=120)  # type: ignore[operator]
    return info.value


def test_list_models_pages(mgmt: pb_grpc.ManagementAPIsServiceStub) -> None:
    everything = json.loads(mgmt.ListModels(pb.ListModelsRequest(), timeout=60).msg)
    names = [m["modelName"] for m in everything["models"]]
    assert {"declared", "digits", "queue1", "tensors", "tiny"} <= set(names)
    assert names == sorted(names) and "nextPageToken" not in everything
    first = json.loads(mgmt.ListModels(pb.ListModelsRequest(limit=2), timeout=60).msg)
    assert [m["modelName"] for m in first["models"]] == names[:2]
    token = int(first["nextPageToken"])
    rest = json.loads(mgmt.ListModels(pb.ListModelsRequest(limit=2, next_page_token=token),
                                      timeout=60).msg)
    assert [m["modelName"] for m in rest["models"]] == names[2:4]
    digits = next(m for m in everything["models"] if m["modelName"] == "digits")
    assert digits["modelUrl"] == "digits.mar"


def test_describe_model(mgmt: pb_grpc.ManagementAPIsServiceStub) -> None:
    (tensors,) = describe(mgmt, "tensors")
    assert tensors["modelName"] == "tensors" and tensors["modelVersion"] == "1.0"
    assert tensors["batchSize"] == 4 and tensors["maxBatchDelay"] == 5
    workers = tensors["workers"]
    assert isinstance(workers, list) and len(workers) == 1
    assert workers[0]["status"] == "READY" and workers[0]["pid"] > 0
    err = error_of(mgmt.DescribeModel, pb.DescribeModelRequest(model_name="nope"))
    assert err.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    assert err.details() == "Model not found: nope"  # type: ignore[attr-defined]


def test_register_scale_set_default_unregister(
        mgmt: pb_grpc.ManagementAPIsServiceStub, infer: ts_grpc.InferenceAPIsServiceStub,
        example_store: Path, tmp_path: Path) -> None:
    v2 = second_version(example_store / "toy-1.0" / "toy.mar", example_store / "toy-2.0",
                        tmp_path)
    reply = mgmt.RegisterModel(pb.RegisterModelRequest(
        url="toy-1.0/toy.mar", model_name="reg", initial_workers=1, batch_size=2,
        max_batch_delay=7, synchronous=True), timeout=120)
    assert reply.msg == 'Model "reg" Version: 1.0 registered with 1 initial workers'
    (described,) = describe(mgmt, "reg")
    assert described["batchSize"] == 2 and described["maxBatchDelay"] == 7
    assert "pid" in echo(infer, "reg")  # type: ignore[operator]

    dup = error_of(mgmt.RegisterModel, pb.RegisterModelRequest(url="toy-1.0/toy.mar",
                                                               model_name="reg"))
    assert dup.code() is grpc.StatusCode.ALREADY_EXISTS  # type: ignore[attr-defined]

    reply = mgmt.ScaleWorker(pb.ScaleWorkerRequest(model_name="reg", min_worker=2,
                                                   max_worker=2, synchronous=True), timeout=120)
    assert reply.msg == "Workers scaled to 2 for model: reg"
    (described,) = describe(mgmt, "reg")
    assert [w["status"] for w in described["workers"]] == ["READY", "READY"]  # type: ignore

    reply = mgmt.ScaleWorker(pb.ScaleWorkerRequest(model_name="reg", model_version="1.0",
                                                   min_worker=1), timeout=60)
    assert reply.msg == "Processing worker updates..."
    wait_until(lambda: len(describe(mgmt, "reg")[0]["workers"]) == 1,  # type: ignore[arg-type]
               60, "the asynchronous scale-down")

    reply = mgmt.RegisterModel(pb.RegisterModelRequest(
        url=str(v2), model_name="reg", initial_workers=1, synchronous=True), timeout=120)
    assert "Version: 2.0 registered" in reply.msg
    assert [d["modelVersion"] for d in describe(mgmt, "reg", "all")] == ["1.0", "2.0"]
    assert describe(mgmt, "reg", "2.0")[0]["modelVersion"] == "2.0"
    v1_pid = echo(infer, "reg")["pid"]  # type: ignore[index]
    v2_pid = echo(infer, "reg", "2.0")["pid"]  # type: ignore[index]
    assert v1_pid != v2_pid

    forbidden = error_of(mgmt.UnregisterModel, pb.UnregisterModelRequest(model_name="reg"))
    assert forbidden.code() is grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    assert "Cannot remove default version" in forbidden.details()  # type: ignore[attr-defined]

    reply = mgmt.SetDefault(pb.SetDefaultRequest(model_name="reg", model_version="2.0"),
                            timeout=60)
    assert reply.msg == 'Default version successfully updated for model "reg" to "2.0"'
    assert echo(infer, "reg")["pid"] == v2_pid  # type: ignore[index]
    missing = error_of(mgmt.SetDefault, pb.SetDefaultRequest(model_name="reg",
                                                             model_version="7.0"))
    assert missing.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]

    reply = mgmt.UnregisterModel(pb.UnregisterModelRequest(model_name="reg",
                                                           model_version="1.0"), timeout=120)
    assert reply.msg == 'Model "reg" unregistered'
    reply = mgmt.UnregisterModel(pb.UnregisterModelRequest(model_name="reg"), timeout=120)
    assert reply.msg == 'Model "reg" unregistered'
    gone = error_of(infer.Predictions, ts.PredictionsRequest(model_name="reg",
                                                             input={"data": b"x"}))
    assert gone.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


@pytest.mark.parametrize(("request_", "code", "message"), [
    (pb.RegisterModelRequest(), grpc.StatusCode.INVALID_ARGUMENT, "Parameter url is required."),
    (pb.RegisterModelRequest(url="missing.mar"), grpc.StatusCode.NOT_FOUND,
     "Model archive not found: "),
    (pb.RegisterModelRequest(url="../toy-1.0/toy.mar"), grpc.StatusCode.NOT_FOUND,
     "Relative path is not allowed in url: ../toy-1.0/toy.mar"),
    (pb.RegisterModelRequest(url="s3://bucket/m.mar"), grpc.StatusCode.INVALID_ARGUMENT,
     "url scheme s3:// is not supported"),
    (pb.RegisterModelRequest(url="https://example.com/m.mar"), grpc.StatusCode.NOT_FOUND,
     "Given URL https://example.com/m.mar does not match any allowed URL(s)"),
    (pb.RegisterModelRequest(url="toy-1.0/toy.mar", runtime="java"),
     grpc.StatusCode.INVALID_ARGUMENT, "Invalid RuntimeType value: java"),
])
def test_register_errors(mgmt: pb_grpc.ManagementAPIsServiceStub, request_: object,
                         code: grpc.StatusCode, message: str) -> None:
    err = error_of(mgmt.RegisterModel, request_)
    assert err.code() is code  # type: ignore[attr-defined]
    assert message in err.details()  # type: ignore[attr-defined]


def test_describe_customized_asks_the_handler(mgmt: pb_grpc.ManagementAPIsServiceStub) -> None:
    # queue1 serves the toy archive, whose handler answers describe requests
    reply = mgmt.DescribeModel(pb.DescribeModelRequest(model_name="queue1", customized=True),
                               timeout=60)
    (doc,) = json.loads(reply.msg)
    assert doc["modelName"] == "queue1" and doc["workers"][0]["status"] == "READY"
    assert json.loads(doc["customizedMetadata"]) == {"toy": "metadata"}
    (plain,) = describe(mgmt, "queue1")
    assert "customizedMetadata" not in plain


def test_failed_registers_leave_no_unpacked_archive(
        mgmt: pb_grpc.ManagementAPIsServiceStub, infer: ts_grpc.InferenceAPIsServiceStub,
        example_store: Path) -> None:
    toy_archive(example_store, "noload", yaml_config="fail_load: true\n")
    model_dir = Path(echo(infer, "queue1", data=b"model_dir")["model_dir"])  # type: ignore[index]
    work_dir = model_dir.parent  # where the server unpacks archives
    before = sorted(work_dir.iterdir())
    assert model_dir in before

    failed = error_of(mgmt.RegisterModel, pb.RegisterModelRequest(
        url="noload-1.0/noload.mar", initial_workers=1, synchronous=True))
    assert failed.code() is grpc.StatusCode.INTERNAL  # type: ignore[attr-defined]
    assert failed.details().startswith(  # type: ignore[attr-defined]
        "Failed to start workers for model noload version 1.0:")
    assert "toy model refuses to load" in failed.details()  # type: ignore[attr-defined]
    taken = error_of(mgmt.RegisterModel, pb.RegisterModelRequest(url="toy-1.0/toy.mar",
                                                                 model_name="queue1"))
    assert taken.code() is grpc.StatusCode.ALREADY_EXISTS  # type: ignore[attr-defined]
    bad_name = error_of(mgmt.RegisterModel, pb.RegisterModelRequest(url="toy-1.0/toy.mar",
                                                                    model_name="two words"))
    assert bad_name.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "invalid model name 'two words'" in bad_name.details()  # type: ignore[attr-defined]

    assert sorted(work_dir.iterdir()) == before
    gone = error_of(mgmt.DescribeModel, pb.DescribeModelRequest(model_name="noload"))
    assert gone.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


@pytest.fixture()
def web(example_store: Path) -> Iterator[str]:
    with serving_archive((example_store / "toy-1.0" / "toy.mar").read_bytes()) as url:
        yield url


def test_register_from_urls_obeys_allowed_urls(mgmt: pb_grpc.ManagementAPIsServiceStub,
                                               infer: ts_grpc.InferenceAPIsServiceStub,
                                               web: str) -> None:
    url = f"{web}/allowed/web.mar"
    reply = mgmt.RegisterModel(pb.RegisterModelRequest(url=url, model_name="web",
                                                       initial_workers=1), timeout=120)
    assert reply.msg == "Processing worker updates..."  # not synchronous: loads in background
    wait_until(lambda: describe(mgmt, "web")[0]["status"] == "Ready", 60,
               "the downloaded model becoming ready")
    assert describe(mgmt, "web")[0]["modelUrl"] == url
    assert echo(infer, "web", data=b"net") == {"echo": "net", "batch": 1}

    elsewhere = url.replace("/allowed/", "/elsewhere/")
    refused = error_of(mgmt.RegisterModel, pb.RegisterModelRequest(url=elsewhere))
    assert refused.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    assert refused.details() == (  # type: ignore[attr-defined]
        f"Given URL {elsewhere} does not match any allowed URL(s)")
    missing = error_of(mgmt.RegisterModel, pb.RegisterModelRequest(url=f"{web}/allowed/no.mar"))
    assert missing.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "HTTP 404" in missing.details()  # type: ignore[attr-defined]
    reply = mgmt.UnregisterModel(pb.UnregisterModelRequest(model_name="web"), timeout=120)
    assert reply.msg == 'Model "web" unregistered'


def test_scale_errors(mgmt: pb_grpc.ManagementAPIsServiceStub) -> None:
    err = error_of(mgmt.ScaleWorker, pb.ScaleWorkerRequest(model_name="nope", min_worker=1))
    assert err.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    err = error_of(mgmt.ScaleWorker, pb.ScaleWorkerRequest(model_name="tensors", min_worker=3,
                                                           max_worker=2))
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]


def test_register_needs_the_model_api(server: RunningServer) -> None:
    with grpc.insecure_channel(server.grpc_management_target) as channel:
        keyed = grpc.intercept_channel(channel, WithKey(server.key("management")))
        mgmt = pb_grpc.ManagementAPIsServiceStub(keyed)
        err = error_of(mgmt.RegisterModel, pb.RegisterModelRequest(url="toy-1.0/toy.mar"))
        assert err.code() is grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
        assert err.details() == "Model API disabled"  # TorchServe's, word for word
        err = error_of(mgmt.UnregisterModel, pb.UnregisterModelRequest(model_name="toy"))
        assert err.code() is grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
