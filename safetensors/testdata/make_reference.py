#!/usr/bin/env python3
"""Writes reference.safetensors from the format spec, independently of strand.

The `safetensors` Python package is not installed on the project machine, so
the bytes are produced by hand (struct + json) the way that package does:
8-byte little-endian header length, compact JSON header padded with spaces to
an 8-byte boundary, tensors ordered by dtype alignment (largest first) then by
name. Tensor bytes come from torch, so float16/bfloat16 encodings are torch's.

Run: /usr/bin/python3 make_reference.py reference.safetensors
"""
import json
import struct
import sys

import torch

tensors = {
    "a.f32": torch.arange(6, dtype=torch.float32).reshape(2, 3) * 0.5 - 1.0,
    "b.f16": torch.tensor([1.0, -2.5, 65504.0, 2.0**-14, 2.0**-24], dtype=torch.float16),
    "c.bf16": torch.tensor([[1.0, -3.140625], [2.0**100, 0.0078125]], dtype=torch.bfloat16),
    "d.i64": torch.tensor([1, -2, 1 << 40], dtype=torch.int64),
    "e.scalar": torch.tensor(42.0, dtype=torch.float32),
    "f.u8": torch.tensor([0, 7, 255], dtype=torch.uint8),
    "g.i32": torch.tensor([[-7, 1 << 30]], dtype=torch.int32),
}
DTYPE = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8",
}


def raw_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
header = {"__metadata__": {"format": "pt", "producer": "python-by-hand"}}
blobs, off = [], 0
for name in order:
    b = raw_bytes(tensors[name])
    header[name] = {"dtype": DTYPE[tensors[name].dtype], "shape": list(tensors[name].shape),
                    "data_offsets": [off, off + len(b)]}
    blobs.append(b)
    off += len(b)
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * ((8 - (8 + len(h)) % 8) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
