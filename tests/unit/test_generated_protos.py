"""The checked-in generated gRPC code is what scripts/gen_protos.sh makes from the protos."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "torchwire" / "grpc" / "generated"


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the test extra) is not installed")
    out = tmp_path / "generated"
    subprocess.run(["bash", str(ROOT / "scripts" / "gen_protos.sh")], cwd=ROOT, check=True,
                   env={**os.environ, "PYTHON": sys.executable, "OUT": str(out)},
                   capture_output=True)
    fresh = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    checked_in = {p.relative_to(GENERATED): p.read_bytes() for p in GENERATED.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts}
    assert sorted(fresh) == sorted(checked_in)
    stale = [str(name) for name, data in fresh.items() if checked_in[name] != data]
    assert not stale, f"regenerate with scripts/gen_protos.sh: {stale}"


def test_services_and_fields_match_torchserve_and_kserve() -> None:
    from torchwire.grpc.generated import inference_pb2, management_pb2, predict_v2_pb2

    ts = inference_pb2.DESCRIPTOR.services_by_name["InferenceAPIsService"]
    assert ts.full_name == "org.pytorch.serve.grpc.inference.InferenceAPIsService"
    assert [m.name for m in ts.methods] == ["Ping", "Predictions", "StreamPredictions",
                                            "StreamPredictions2"]
    fields = {f.name: f.number for f in inference_pb2.PredictionsRequest.DESCRIPTOR.fields}
    assert fields == {"model_name": 1, "model_version": 2, "input": 3, "sequenceId": 4}
    mgmt = management_pb2.DESCRIPTOR.services_by_name["ManagementAPIsService"]
    assert mgmt.full_name == "org.pytorch.serve.grpc.management.ManagementAPIsService"
    scale = {f.name: f.number for f in management_pb2.ScaleWorkerRequest.DESCRIPTOR.fields}
    assert scale == {"model_name": 1, "model_version": 2, "max_worker": 3, "min_worker": 4,
                     "number_gpu": 5, "synchronous": 6, "timeout": 7}
    oip = predict_v2_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert oip.full_name == "inference.GRPCInferenceService"
    infer = {f.name: f.number for f in predict_v2_pb2.ModelInferRequest.DESCRIPTOR.fields}
    assert infer == {"model_name": 1, "model_version": 2, "id": 3, "parameters": 4,
                     "inputs": 5, "outputs": 6, "raw_input_contents": 7}


def test_tritonclient_messages_decode_ours() -> None:
    service_pb2 = pytest.importorskip("tritonclient.grpc.service_pb2")
    from torchwire.grpc.generated import predict_v2_pb2

    ours = predict_v2_pb2.ModelInferRequest(model_name="m", id="7",
                                            raw_input_contents=[b"\x01\x02"])
    tensor = ours.inputs.add(name="x", datatype="UINT8", shape=[2])
    tensor.parameters["content_type"].string_param = "str"
    theirs = service_pb2.ModelInferRequest.FromString(ours.SerializeToString())
    assert (theirs.model_name, theirs.id, list(theirs.raw_input_contents)) == (
        "m", "7", [b"\x01\x02"])
    assert theirs.inputs[0].parameters["content_type"].string_param == "str"
