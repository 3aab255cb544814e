"""Check a model folder without loading it: its ``model.json`` and the header of its
``model.safetensors``, read with the standard library only (no tensor is read, nothing is
unpickled, PyTorch is not needed).

A front end calls :func:`check_model` when the user chooses a model, so that a broken folder (an
edited ``model.json`` that is no JSON, weights cut short by a full disk or an interrupted copy, a
pickle renamed to ``.safetensors``) is reported at once, in one line, instead of when the model is
first run.  The header check follows the safetensors format: an 8-byte little-endian header length,
a JSON header naming each tensor's dtype, shape and byte range, then the tensor data, which the byte
ranges must cover exactly.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

from ..errors import CheckpointError
from .checkpoint import checkpoint_files, read_metadata

__all__ = ["MAX_HEADER_BYTES", "check_model", "check_weights_file"]

#: the largest header safetensors itself accepts (100 MB)
MAX_HEADER_BYTES = 100_000_000
#: bytes per element of the safetensors dtypes (sub-byte types are left out of the size check)
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
                "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "C64": 8, "I64": 8, "U64": 8, "F64": 8}


def _corrupt(weights: Path, detail: str) -> CheckpointError:
    return CheckpointError(f"{weights}: corrupt weights file ({detail})")


def _tensor_range(weights: Path, name: str, info: object) -> tuple[int, int]:
    """The byte range of tensor ``name`` in the data part, checked against its dtype and shape."""
    if not isinstance(info, dict):
        raise _corrupt(weights, f"tensor {name!r} has no description")
    offsets, shape, dtype = info.get("data_offsets"), info.get("shape"), info.get("dtype")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(v) is int for v in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        raise _corrupt(weights, f"tensor {name!r} has no valid byte range")
    if not isinstance(shape, list) or not all(type(v) is int and v >= 0 for v in shape):
        raise _corrupt(weights, f"tensor {name!r} has no valid shape")
    size = _DTYPE_BYTES.get(dtype) if isinstance(dtype, str) else None
    if size is not None and math.prod(shape) * size != offsets[1] - offsets[0]:
        raise _corrupt(weights, f"tensor {name!r} of shape {tuple(shape)} does not fit its byte range")
    return offsets[0], offsets[1]


def check_weights_file(weights: str | os.PathLike) -> int:
    """Check that ``weights`` is a complete safetensors file; returns its number of tensors.

    Reads the header only.  Raises :class:`CheckpointError` naming the file and what is wrong:
    empty, truncated, not a safetensors file, or a header that does not describe the data.
    """
    weights = Path(weights)
    try:
        total = weights.stat().st_size
        with open(weights, "rb") as fh:
            head = fh.read(8)
            if not head:
                raise CheckpointError(f"{weights}: the weights file is empty")
            if len(head) < 8:
                raise _corrupt(weights, f"truncated: {total} bytes")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES or n < 2:
                raise _corrupt(weights, "not a safetensors file")
            if 8 + n > total:
                raise _corrupt(weights, f"truncated: {total:,} bytes, its header alone needs {8 + n:,}")
            raw = fh.read(n)
    except OSError as exc:
        raise CheckpointError(f"{weights}: cannot read the weights file ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _corrupt(weights, "not a safetensors file") from None
    if not isinstance(header, dict):
        raise _corrupt(weights, "not a safetensors file")
    ranges = sorted(_tensor_range(weights, name, info) for name, info in header.items() if name != "__metadata__")
    if not ranges:
        raise _corrupt(weights, "it holds no tensor")
    end = 0
    for start, stop in ranges:
        if start != end:
            raise _corrupt(weights, "the tensors' byte ranges overlap or leave gaps")
        end = stop
    data = total - 8 - n
    if data < end:
        raise _corrupt(weights, f"truncated: {total:,} of {8 + n + end:,} bytes")
    if data > end:
        raise _corrupt(weights, f"{data - end:,} bytes after the last tensor")
    return len(ranges)


def check_model(path: str | os.PathLike) -> dict:
    """Check the model at ``path`` (a model folder, a run folder, its ``model.json`` or
    ``model.safetensors``) without loading it; returns its description (``model.json``).

    Raises :class:`CheckpointError` (one line naming the file) when a file is missing, the
    description is unreadable or not a napari-grainlab model's, or the weights file is not a
    complete safetensors file.  Whether the weights fit the described network is known only once
    the network is built (:func:`~napari_grainlab.core.models.checkpoint.load_checkpoint`).
    """
    weights, _ = checkpoint_files(path)
    meta = read_metadata(path)
    check_weights_file(weights)
    return meta
