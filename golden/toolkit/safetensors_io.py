"""The toolkit's one safetensors reader and writer (no third-party package).

Layout: an 8-byte little-endian header length, a JSON header padded with
spaces to a multiple of 8, then the tensor bytes back to back in the order
given. The writer writes F32 and I64, all the golden format needs, and
BF16 and U8 for checkpoints (checkpoints.py); the reader reads every common
dtype.
"""

import json
import struct
import sys

import torch

DTYPE_NAMES = {torch.float32: "F32", torch.int64: "I64", torch.bfloat16: "BF16", torch.uint8: "U8"}  # what write() writes
READ_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
               "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
               "BOOL": torch.bool}


def write(path, tensors, metadata):
    """Writes tensors (a list of (name, tensor) pairs, in file order).

    Every metadata value must be a string. Tensors are written little-endian
    and row-major; the output depends only on the inputs, byte for byte.
    """
    if sys.byteorder != "little":
        raise RuntimeError("safetensors is little-endian; this writer copies native bytes")
    header = {"__metadata__": dict(metadata)}
    blobs = []
    offset = 0
    for name, t in tensors:
        if t.dtype not in DTYPE_NAMES:
            raise ValueError("%s: tensor %s has dtype %s, expected one of %s" % (
                path, name, t.dtype, ", ".join(str(d) for d in DTYPE_NAMES)))
        data = t.detach().contiguous()
        if data.dtype == torch.bfloat16:  # numpy has no bfloat16: the same 2 bytes as int16
            data = data.view(torch.int16)
        data = data.numpy().tobytes()
        header[name] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    for key, value in header["__metadata__"].items():
        if not isinstance(value, str):
            raise ValueError("%s: metadata %s: expected a string, got %s" % (path, key, type(value).__name__))
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def read_header(path):
    """Returns (metadata, [(name, {"dtype", "shape", "data_offsets"})]) in file order."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError("%s: %d bytes, shorter than the 8-byte safetensors header length" % (path, len(head)))
        (n,) = struct.unpack("<Q", head)
        text = f.read(n)
    if len(text) != n:
        raise ValueError("%s: header length %d, but only %d bytes follow" % (path, n, len(text)))
    header = json.loads(text)
    metadata = header.pop("__metadata__", {})
    entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    return metadata, entries


def read(path):
    """Returns (metadata, {name: tensor}) with the tensors in file order."""
    metadata, entries = read_header(path)
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        f.seek(8 + n)
        body = f.read()
    tensors = {}
    for name, info in entries:
        dtype = READ_DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError("%s: tensor %s has dtype %s, not one of %s" % (path, name, info["dtype"], ", ".join(READ_DTYPES)))
        start, end = info["data_offsets"]
        buf = bytearray(body[start:end])
        flat = torch.frombuffer(buf, dtype=dtype) if buf else torch.empty(0, dtype=dtype)
        tensors[name] = flat.reshape(info["shape"]).clone()
    return metadata, tensors
