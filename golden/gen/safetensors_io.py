"""Minimal safetensors writer and reader (no third-party package).

Layout: an 8-byte little-endian header length, a JSON header padded with
spaces to a multiple of 8, then the tensor bytes back to back in the order
given. Only F32 and I64 are needed by the golden format.
"""

import json
import struct
import sys

import torch

DTYPES = {torch.float32: "F32", torch.int64: "I64"}
TORCH_DTYPES = {v: k for k, v in DTYPES.items()}


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
        if t.dtype not in DTYPES:
            raise ValueError("%s: dtype %s is not F32 or I64" % (name, t.dtype))
        data = t.detach().contiguous().numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    for key, value in header["__metadata__"].items():
        if not isinstance(value, str):
            raise ValueError("metadata %s: expected a string, got %r" % (key, type(value)))
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def read(path):
    """Returns (metadata, {name: tensor}) for a file with F32 and I64 tensors."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        body = f.read()
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        dtype = TORCH_DTYPES[info["dtype"]]
        flat = torch.frombuffer(bytearray(body[start:end]), dtype=dtype)
        tensors[name] = flat.reshape(info["shape"]).clone()
    return metadata, tensors
