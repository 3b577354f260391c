"""Token authorization over gRPC: the same keys and rules as the HTTP listeners."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2

from tests.conftest import start_server, stop_server, toy_archive
from torchwire.grpc.generated import inference_pb2 as pb
from torchwire.grpc.generated import inference_pb2_grpc as pb_grpc
from torchwire.grpc.generated import management_pb2 as mpb
from torchwire.grpc.generated import management_pb2_grpc as mpb_grpc


def test_grpc_needs_keys_when_auth_is_forced(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    toy_archive(store, "toy")
    server = start_server(tmp_path, store, ["toy=toy-1.0/toy.mar"],
                          {"enable_token_authorization": "true"})
    keys = json.loads((tmp_path / "key_file.json").read_text())
    try:
        with grpc.insecure_channel(server.grpc_target) as ch, \
                grpc.insecure_channel(server.grpc_management_target) as mch:
            stub = pb_grpc.InferenceAPIsServiceStub(ch)
            mstub = mpb_grpc.ManagementAPIsServiceStub(mch)
            request = pb.PredictionsRequest(model_name="toy", input={"data": b"hi"})
            assert stub.Ping(empty_pb2.Empty()).health  # probes stay open
            with pytest.raises(grpc.RpcError) as refused:
                stub.Predictions(request)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert refused.value.details() == (
                "Token Authorization failed. Token either incorrect, expired, or not provided "
                "correctly")
            wrong = (("authorization", "Bearer not-the-key"),)
            with pytest.raises(grpc.RpcError) as bad:
                stub.Predictions(request, metadata=wrong)
            assert bad.value.code() == grpc.StatusCode.PERMISSION_DENIED
            good = (("authorization", f"Bearer {keys['inference']['key']}"),)
            answer = json.loads(stub.Predictions(request, metadata=good).prediction)
            assert answer["echo"] == "hi"
            for name, expected in (("authorization", None), ("x-trace", "t-1")):
                ask = pb.PredictionsRequest(model_name="toy",
                                            input={"data": f"header:{name}".encode()})
                seen = stub.Predictions(ask, metadata=(*good, ("x-trace", "t-1")))
                assert json.loads(seen.prediction)["value"] == expected, name
            with pytest.raises(grpc.RpcError) as mgmt:
                mstub.ListModels(mpb.ListModelsRequest())
            assert mgmt.value.code() == grpc.StatusCode.PERMISSION_DENIED
            inference_key_for_management = (("authorization",
                                             f"Bearer {keys['inference']['key']}"),)
            with pytest.raises(grpc.RpcError):
                mstub.ListModels(mpb.ListModelsRequest(), metadata=inference_key_for_management)
            mkey = (("authorization", f"Bearer {keys['management']['key']}"),)
            assert "toy" in mstub.ListModels(mpb.ListModelsRequest(), metadata=mkey).msg
    finally:
        stop_server(server)
