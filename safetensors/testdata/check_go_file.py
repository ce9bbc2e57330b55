#!/usr/bin/env python3
"""Reads a strand-written safetensors file from the spec (struct + json + torch)
and checks it against the values the Go test wrote. Exits non-zero on mismatch.

Run: /usr/bin/python3 check_go_file.py FILE
"""
import json
import struct
import sys

import torch

DT = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
      "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8}

data = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<Q", data[:8])
assert (8 + n) % 8 == 0, "data buffer is not 8-byte aligned"
header = json.loads(data[8:8 + n])
buf = data[8 + n:]
meta = header.pop("__metadata__")
assert meta == {"producer": "strand", "step": "7"}, meta
end = 0
out = {}
for name, e in header.items():
    b, t_end = e["data_offsets"]
    end = max(end, t_end)
    dt = DT[e["dtype"]]
    if dt == torch.bfloat16:
        t = torch.frombuffer(bytearray(buf[b:t_end]), dtype=torch.int16).view(torch.bfloat16)
    else:
        t = torch.frombuffer(bytearray(buf[b:t_end]), dtype=dt)
    out[name] = t.reshape(e["shape"])
assert end == len(buf), (end, len(buf))

expect = {
    "w.f32": torch.tensor([[1.5, -2.0, 3.25], [0.0, 1e-3, -7.0]], dtype=torch.float32),
    "w.f16": torch.tensor([0.1, -65504.0, 3.0], dtype=torch.float16),
    "w.bf16": torch.tensor([0.1, -1e20, 3.0], dtype=torch.bfloat16),
    "scalar": torch.tensor(5.0),
}
assert set(out) == set(expect), sorted(out)
for k, v in expect.items():
    assert out[k].dtype == v.dtype, (k, out[k].dtype, v.dtype)
    assert list(out[k].shape) == list(v.shape), (k, out[k].shape, v.shape)
    assert torch.equal(out[k], v), (k, out[k], v)
print("ok")
