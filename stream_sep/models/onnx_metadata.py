"""Reading an ONNX file's ``metadata_props`` without ONNX Runtime or the ``onnx`` package.

Only the top level of the ``ModelProto`` message is walked (the graph, tens of MB, is
skipped by its length), so listing the shelf stays instant. Protobuf wire format: each field
is a varint key ``(number << 3) | wire_type`` followed by a varint (type 0), 8 bytes (1), a
varint length and that many bytes (2) or 4 bytes (5).
"""

from __future__ import annotations

import os
from pathlib import Path

from stream_sep.errors import ModelError

_METADATA_FIELD = 14  # ModelProto.metadata_props: repeated StringStringEntryProto
_FIXED = {1: 8, 5: 4}


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7


def _fields(data: memoryview):
    """Yield (number, wire_type, value) of one message: value is an int for varints, a
    memoryview for length-delimited fields, None for fixed-size ones."""
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = _varint(data, position)
        elif wire_type == 2:
            length, position = _varint(data, position)
            if position + length > len(data):
                raise ValueError("field runs past the end")
            value, position = data[position : position + length], position + length
        elif wire_type in _FIXED:
            value, position = None, position + _FIXED[wire_type]
        else:
            raise ValueError(f"wire type {wire_type}")
        yield number, wire_type, value


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX file at ``path`` as a dict; :class:`ModelError`
    if the file cannot be read or is not a protobuf message."""
    path = Path(path)
    try:
        data = memoryview(path.read_bytes())
    except OSError as error:
        raise ModelError(f"cannot read {str(path)!r}: {error.strerror or error}") from None
    entries: dict[str, str] = {}
    try:
        for number, wire_type, value in _fields(data):
            if number != _METADATA_FIELD or wire_type != 2:
                continue
            pair = {n: bytes(v).decode("utf-8") for n, t, v in _fields(value) if t == 2}
            entries[pair.get(1, "")] = pair.get(2, "")
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelError(f"{path.name} is not an ONNX model ({error})") from None
    return entries
