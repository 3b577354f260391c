"""OIP tensors: raw packing against numpy, the REST codec, metadata checks, worker conversions."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

from torchwire.errors import BadRequest, InternalError
from torchwire.handlers.context import Context
from torchwire.oip import json_codec
from torchwire.oip.arrays import result_tensors, tensor_outcome, tensor_row, tensor_value
from torchwire.oip.metadata import check_inputs, read_metadata
from torchwire.oip.request import InferRequest, RequestedOutput, select_outputs
from torchwire.oip.tensor import (
    Tensor,
    decode_tensors,
    encode_tensors,
    flatten,
    join_bytes,
    make_tensor,
    pack,
    split_bytes,
    unpack,
)
from torchwire.protocol import Item, Param

NUMPY = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
         "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
         "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64}


def sample(dtype: str) -> list[Any]:
    if dtype == "BOOL":
        return [True, False, True]
    if dtype.startswith("UINT"):
        return [0, 7, int(np.iinfo(NUMPY[dtype]).max)]
    if dtype.startswith("INT"):
        info = np.iinfo(NUMPY[dtype])
        return [int(info.min), -3, int(info.max)]
    return [0.5, -2.25, 1024.0]


@pytest.mark.parametrize("dtype", list(NUMPY))
def test_pack_matches_numpy_little_endian_bytes(dtype: str) -> None:
    values = sample(dtype)
    expected = np.asarray(values, dtype=np.dtype(NUMPY[dtype]).newbyteorder("<")).tobytes()
    raw = pack(dtype, values, "x")
    assert raw == expected
    assert unpack(dtype, raw) == values
    tensor = make_tensor("x", dtype, (3,), raw)
    assert np.array_equal(tensor_value(tensor), np.asarray(values, dtype=NUMPY[dtype]))


def test_bf16_rounds_to_nearest_and_arrives_as_float32() -> None:
    raw = pack("BF16", [1.0, -2.5, 3.14159], "x")
    assert len(raw) == 6
    want = torch.tensor([1.0, -2.5, 3.14159], dtype=torch.bfloat16)
    assert raw == want.view(torch.int16).numpy().astype("<i2").tobytes()
    value = tensor_value(make_tensor("x", "BF16", (3,), raw))
    assert value.dtype == np.float32
    assert np.array_equal(value, want.float().numpy())


def test_bytes_elements_round_trip_and_truncation_is_a_400() -> None:
    raw = join_bytes([b"a", b"", b"\x00\xff"])
    assert split_bytes(raw, "x") == [b"a", b"", b"\x00\xff"]
    with pytest.raises(BadRequest, match="runs past"):
        split_bytes(raw[:-1], "x")
    with pytest.raises(BadRequest, match="4-byte length"):
        split_bytes(raw + b"\x01", "x")


@pytest.mark.parametrize(("dtype", "values", "message"), [
    ("INT32", [1.5], "INT32 data must be integers"),
    ("FP32", ["a"], "FP32 data must be numbers"),
    ("BOOL", [1], "BOOL data must be true/false"),
    ("INT8", [300], "does not fit INT8"),
    ("BYTES", [3], "BYTES data must be strings"),
    ("FP99", [1], "unknown datatype 'FP99'"),
])
def test_values_of_the_wrong_type_are_400s(dtype: str, values: list[Any], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        pack(dtype, values, "input 'x'")


def test_raw_size_must_match_the_shape() -> None:
    with pytest.raises(BadRequest, match=r"shape \[2, 2\] of FP32 needs 16 bytes, got 12"):
        make_tensor("x", "FP32", (2, 2), b"\0" * 12)
    with pytest.raises(BadRequest, match="holds 3 element"):
        make_tensor("x", "BYTES", (3,), join_bytes([b"a"]))


def test_flatten_is_row_major() -> None:
    nested = np.arange(24).reshape(2, 3, 4)
    assert flatten(nested.tolist()) == list(range(24))
    assert flatten(5) == [5]


def test_tensors_survive_the_worker_encoding() -> None:
    tensors = [Tensor("a", "FP32", (2,), pack("FP32", [1.0, 2.0], "a"), {"k": 1}),
               Tensor("b", "BYTES", (1,), join_bytes([b"hi"]))]
    assert decode_tensors(encode_tensors(tensors)) == tensors


# -- the REST codec ---------------------------------------------------------------------
def test_json_request_with_nested_data_and_binary_input() -> None:
    binary = np.asarray([[1, 2], [3, 4]], dtype="<i8").tobytes()
    doc = {"id": "r", "inputs": [
        {"name": "a", "shape": [2, 2], "datatype": "FP64", "data": [[1, 2], [3, 4.5]]},
        {"name": "b", "shape": [2, 2], "datatype": "INT64",
         "parameters": {"binary_data_size": len(binary)}},
        {"name": "c", "shape": [1], "datatype": "BYTES", "data": ["héllo"]},
    ], "outputs": [{"name": "o", "parameters": {"binary_data": True}}]}
    head = json.dumps(doc).encode()
    json_part, rest = json_codec.split_body(head + binary, str(len(head)))
    req = json_codec.parse_request(json.loads(json_part), rest)
    a, b, c = req.inputs
    assert a.values() == [1.0, 2.0, 3.0, 4.5] and a.shape == (2, 2)
    assert b.raw == binary and b.parameters == {}
    assert tensor_value(c) == "héllo"  # JSON strings reach the handler as str
    assert req.outputs == (RequestedOutput("o", {"binary_data": True}),)


@pytest.mark.parametrize(("doc", "binary", "message"), [
    ({"inputs": {}}, b"", '"inputs" list'),
    ({"inputs": [{"name": "a", "shape": [2], "datatype": "FP32", "data": [1]}]}, b"",
     r"shape \[2\] holds 2 element\(s\), data has 1"),
    ({"inputs": [{"name": "a", "shape": [-1], "datatype": "FP32", "data": [1]}]}, b"",
     "shape must be a list of integers >= 0"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32"}]}, b"", "no data"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32",
                  "parameters": {"binary_data_size": 8}}]}, b"\0" * 4, "runs past"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}]}, b"xx",
     "2 bytes of binary data"),
])
def test_bad_json_requests_say_what_is_wrong(doc: dict[str, Any], binary: bytes,
                                             message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        json_codec.parse_request(doc, binary)


def test_response_is_json_unless_binary_is_asked_for() -> None:
    out = Tensor("o", "INT32", (2,), pack("INT32", [5, 6], "o"))
    plain = InferRequest("", ())
    body, head = json_codec.response_body(plain, "m", "1.0", [out])
    assert head is None
    assert json.loads(body)["outputs"] == [
        {"name": "o", "datatype": "INT32", "shape": [2], "data": [5, 6]}]
    binary = InferRequest("id7", (), (), {"binary_data_output": True})
    body, head = json_codec.response_body(binary, "m", "1.0", [out])
    assert head is not None
    doc = json.loads(body[:head])
    assert doc["id"] == "id7"
    assert doc["outputs"][0]["parameters"] == {"binary_data_size": 8}
    assert body[head:] == out.raw


def test_requested_outputs_are_selected_in_order_and_unknown_ones_are_400() -> None:
    a, b = Tensor("a", "BOOL", (1,), b"\1"), Tensor("b", "BOOL", (1,), b"\0")
    assert select_outputs([a, b], [RequestedOutput("b"), RequestedOutput("a")], "m") == [b, a]
    with pytest.raises(BadRequest, match="unknown output.*zz.*produced: a, b"):
        select_outputs([a, b], [RequestedOutput("zz")], "m")


# -- metadata ----------------------------------------------------------------------------
def test_declared_inputs_are_enforced() -> None:
    meta = read_metadata({"oip": {"inputs": [{"name": "x", "datatype": "FP32",
                                              "shape": [-1, 3]}]}})
    ok = Tensor("x", "FP32", (5, 3), b"")
    check_inputs(meta, "m", [ok])
    for bad, message in [
        (Tensor("y", "FP32", (5, 3), b""), "unexpected input 'y'"),
        (Tensor("x", "FP64", (5, 3), b""), "must be FP32, got FP64"),
        (Tensor("x", "FP32", (5, 4), b""), r"expects \[-1, 3\]"),
    ]:
        with pytest.raises(BadRequest, match=message):
            check_inputs(meta, "m", [bad])
    two = read_metadata({"oip": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]},
                                            {"name": "z", "datatype": "FP32", "shape": [1]}]}})
    with pytest.raises(BadRequest, match="expects input"):
        check_inputs(two, "m", [Tensor("x", "FP32", (1,), b"")])


@pytest.mark.parametrize("section", [
    [], {"platform": 3}, {"inputs": [{"name": "x", "datatype": "FLOAT"}]},
    {"outputs": [{"name": "x", "datatype": "FP32", "shape": [-2]}]},
])
def test_bad_metadata_config_is_named(section: Any) -> None:
    with pytest.raises(InternalError, match="model-config.yaml oip"):
        read_metadata({"oip": section})


# -- the worker side ------------------------------------------------------------------------
def test_row_maps_names_and_data_to_the_first_input() -> None:
    x = Tensor("x", "INT16", (2, 1), pack("INT16", [1, 2], "x"))
    t = Tensor("t", "BYTES", (2,), join_bytes([b"a", b"b"]))
    row = tensor_row(Item("r", (Param("x", x), Param("t", t)), {}))
    assert row["x"].shape == (2, 1) and row["x"].dtype == np.int16
    assert row["data"] is row["x"]
    assert list(row["t"]) == [b"a", b"b"]
    assert row["x"].flags.writeable


def test_results_become_tensors() -> None:
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    (one,) = result_tensors(arr, [])
    assert (one.name, one.datatype, one.shape, one.raw) == ("output0", "FP32", (2, 3),
                                                            arr.tobytes())
    many = result_tensors({"p": torch.ones(2, dtype=torch.bfloat16), "q": np.int8([3])}, [])
    assert [(t.name, t.datatype, t.shape) for t in many] == [("p", "BF16", (2,)),
                                                             ("q", "INT8", (1,))]
    (named,) = result_tensors([[1, 2], [3, 4]], ["scores"])
    assert (named.name, named.datatype, named.values()) == ("scores", "INT64", [1, 2, 3, 4])
    (text,) = result_tensors(["a", "bc"], [])
    assert (text.datatype, text.values()) == ("BYTES", [b"a", b"bc"])
    (doc,) = result_tensors({"cat": 0.75}, [])
    assert doc.datatype == "BYTES" and json.loads(doc.values()[0]) == {"cat": 0.75}
    assert doc.parameters == {"content_type": "application/json"}


def test_outcome_of_a_failing_or_odd_result() -> None:
    ctx = Context("m", "/tmp", {}, 1, None)
    ctx.start_batch(["r"], [{}])
    item = Item("r", (Param("input-0", Tensor("input-0", "INT64", (1,), b"\0" * 8)),), {})
    failed = tensor_outcome(BadRequest("nope"), ctx, 0, "h", item)
    assert failed.status == 400 and json.loads(failed.body)["message"] == "nope"
    odd = tensor_outcome(np.asarray([1 + 2j]), ctx, 0, "h", item)
    assert odd.status == 500 and b"complex128" in odd.body


def test_a_single_output_is_named_after_the_first_input() -> None:
    ctx = Context("m", "/tmp", {}, 1, None)
    ctx.start_batch(["r"], [{}])
    item = Item("r", (Param("input-0", Tensor("input-0", "INT64", (1,), b"\0" * 8)),), {})
    outcome = tensor_outcome(np.asarray([1]), ctx, 0, "h", item)
    (out,) = decode_tensors(outcome.body)
    assert (out.name, out.datatype, out.shape) == ("input-0", "INT64", (1,))
    bare = tensor_outcome(np.asarray([1]), ctx, 0, "h", Item("r", (), {}))
    assert [t.name for t in decode_tensors(bare.body)] == ["output0"]
