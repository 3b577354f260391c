"""OIP tensors as raw bytes: datatypes, packing typed values, and their checks.

Raw contents follow the protocol: the elements flattened in row-major order,
little-endian, without padding; a BYTES element is a 4-byte little-endian
length followed by that many bytes. Everything here is pure Python (``array``
and ``struct``), so the front process never imports numpy.
"""

from __future__ import annotations

import array
import json
import math
import struct
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torchwire.errors import BadRequest
from torchwire.protocol import Item

BYTES = "BYTES"
_BIG_ENDIAN = sys.byteorder == "big"
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class DataType:
    name: str
    itemsize: int  # 0 for BYTES (variable length)
    code: str  # array/struct type code; "" for BYTES and BF16
    kind: str  # "bool", "int", "float" or "bytes"


DATATYPES: dict[str, DataType] = {
    d.name: d
    for d in (
        DataType("BOOL", 1, "B", "bool"),
        DataType("UINT8", 1, "B", "int"),
        DataType("UINT16", 2, "H", "int"),
        DataType("UINT32", 4, "I", "int"),
        DataType("UINT64", 8, "Q", "int"),
        DataType("INT8", 1, "b", "int"),
        DataType("INT16", 2, "h", "int"),
        DataType("INT32", 4, "i", "int"),
        DataType("INT64", 8, "q", "int"),
        DataType("FP16", 2, "e", "float"),
        DataType("BF16", 2, "", "float"),
        DataType("FP32", 4, "f", "float"),
        DataType("FP64", 8, "d", "float"),
        DataType(BYTES, 0, "", "bytes"),
    )
}


@dataclass(frozen=True)
class Tensor:
    """One named tensor: its datatype, shape and raw contents."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    raw: bytes
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return element_count(self.shape)

    def values(self) -> list[Any]:
        """The elements as a flat list of Python values (BYTES as ``bytes``)."""
        return unpack(self.datatype, self.raw)


def is_tensor_item(item: Item) -> bool:
    """True for an OIP request: its params carry tensors (and its answer must be tensors)."""
    return bool(item.params) and isinstance(item.params[0].value, Tensor)


def datatype(name: str, where: str) -> DataType:
    found = DATATYPES.get(name)
    if found is None:
        known = ", ".join(DATATYPES)
        raise BadRequest(f"{where}: unknown datatype {name!r}; expected one of {known}")
    return found


def element_count(shape: Sequence[int]) -> int:
    return math.prod(shape)


def check_shape(shape: Iterable[Any], where: str) -> tuple[int, ...]:
    """A request tensor's shape: integers >= 1 (an empty tensor holds nothing to infer)."""
    dims = tuple(shape)
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims):
        raise BadRequest(f"{where}: shape must be a list of integers >= 0, got {list(dims)}")
    if 0 in dims:
        raise BadRequest(f"{where}: shape {list(dims)} holds no elements; every dimension "
                         "must be at least 1")
    return dims


def make_tensor(name: str, dtype: str, shape: tuple[int, ...], raw: bytes,
                parameters: dict[str, Any] | None = None, kind: str = "input") -> Tensor:
    """A tensor whose raw size has been checked against its shape and datatype."""
    where = f"{kind} {name!r}"
    dt = datatype(dtype, where)
    count = element_count(shape)
    if dt.kind == "bytes":
        got = len(split_bytes(raw, where))
        if got != count:
            raise BadRequest(f"{where}: shape {list(shape)} holds {count} element(s), "
                             f"the BYTES contents hold {got}")
    elif len(raw) != count * dt.itemsize:
        raise BadRequest(f"{where}: shape {list(shape)} of {dtype} needs "
                         f"{count * dt.itemsize} bytes, got {len(raw)}")
    return Tensor(name, dtype, shape, raw, dict(parameters or {}))


# -- packing -----------------------------------------------------------------------
def pack(dtype: str, values: Sequence[Any], where: str) -> bytes:
    """Typed values (already flat) to raw contents; BadRequest for a value of the wrong type."""
    dt = datatype(dtype, where)
    try:
        if dt.kind == "bytes":
            return join_bytes(_as_bytes(v, where) for v in values)
        _check_kind(dt, values, where)
        if dt.name == "BF16":
            return _pack_bf16(values)
        if dt.code == "e":
            return struct.pack(f"<{len(values)}e", *values)
        packed = array.array(dt.code, values)
    except (OverflowError, struct.error) as exc:
        raise BadRequest(f"{where}: a value does not fit {dtype}: {exc}") from None
    if _BIG_ENDIAN:
        packed.byteswap()
    return packed.tobytes()


def _check_kind(dt: DataType, values: Sequence[Any], where: str) -> None:
    def fits(v: Any) -> bool:
        if dt.kind == "bool":
            return isinstance(v, bool)
        if dt.kind == "int":
            return isinstance(v, int) and not isinstance(v, bool)
        return isinstance(v, int | float) and not isinstance(v, bool)

    bad = next((v for v in values if not fits(v)), _FITS)
    if bad is not _FITS or (dt.kind != "bool" and any(isinstance(v, bool) for v in values)):
        raise BadRequest(f"{where}: {dt.name} data must be {_KIND_NAMES[dt.kind]}, "
                         f"got {json.dumps(bad) if _jsonable(bad) else type(bad).__name__}")


_FITS = object()  # no misfit found (None itself may be the misfit: null in FP32 data)
_KIND_NAMES = {"bool": "true/false", "int": "integers", "float": "numbers"}


def _jsonable(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | list | dict) or value is None


def _as_bytes(value: Any, where: str) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise BadRequest(f"{where}: BYTES data must be strings, got {type(value).__name__}")


def _pack_bf16(values: Sequence[Any]) -> bytes:
    words = array.array("I", array.array("f", values).tobytes())
    rounded = array.array("H", (((w + 0x7FFF + ((w >> 16) & 1)) >> 16) & 0xFFFF for w in words))
    if _BIG_ENDIAN:
        rounded.byteswap()
    return rounded.tobytes()


def unpack(dtype: str, raw: bytes) -> list[Any]:
    """Raw contents to a flat list of Python values (BOOL as bool, BYTES as bytes)."""
    dt = datatype(dtype, "tensor")
    if dt.kind == "bytes":
        return split_bytes(raw, "tensor")
    if dt.name == "BF16":
        halves = array.array("H", raw)
        if _BIG_ENDIAN:
            halves.byteswap()
        return array.array("f", array.array("I", (h << 16 for h in halves)).tobytes()).tolist()
    if dt.code == "e":
        return list(struct.unpack(f"<{len(raw) // 2}e", raw))
    values = array.array(dt.code, raw)
    if _BIG_ENDIAN:
        values.byteswap()
    if dt.kind == "bool":
        return [bool(v) for v in values]
    return values.tolist()


# -- BYTES elements ------------------------------------------------------------------
def join_bytes(elements: Iterable[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(e)) + e for e in elements)


def split_bytes(raw: bytes, where: str) -> list[bytes]:
    out: list[bytes] = []
    pos, end = 0, len(raw)
    while pos < end:
        if pos + 4 > end:
            raise BadRequest(f"{where}: BYTES contents end inside an element's 4-byte length")
        (size,) = _LENGTH.unpack_from(raw, pos)
        pos += 4
        if pos + size > end:
            raise BadRequest(f"{where}: a BYTES element of {size} bytes runs past the contents")
        out.append(raw[pos:pos + size])
        pos += size
    return out


def flatten(data: Any) -> list[Any]:
    """Nested lists (row-major) to one flat list; a scalar is a list of one."""
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(d, list) for d in data):
        return data
    flat: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


# -- worker → front ------------------------------------------------------------------
TENSORS_CONTENT_TYPE = "application/x-torchwire-tensors"


def encode_tensors(tensors: Sequence[Tensor]) -> bytes:
    """Several tensors in one body: a 4-byte header length, a JSON header, the raw contents."""
    header = json.dumps([
        {"name": t.name, "datatype": t.datatype, "shape": list(t.shape),
         "parameters": t.parameters, "size": len(t.raw)}
        for t in tensors
    ]).encode()
    return b"".join([_LENGTH.pack(len(header)), header, *(t.raw for t in tensors)])


def decode_tensors(body: bytes) -> list[Tensor]:
    (size,) = _LENGTH.unpack_from(body, 0)
    pos = 4 + size
    tensors: list[Tensor] = []
    for entry in json.loads(body[4:pos]):
        end = pos + entry["size"]
        tensors.append(Tensor(entry["name"], entry["datatype"], tuple(entry["shape"]),
                              body[pos:end], entry["parameters"]))
        pos = end
    return tensors
