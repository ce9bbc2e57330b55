#!/usr/bin/env python3
"""Writes an llm.c token shard the way llm.c's dev/data/data_common.py
write_datafile does (numpy int32 header of 256 words, then uint16 tokens),
independently of strand, and checks one written by strand.

Run: /usr/bin/python3 make_llmc_shard.py write llmc_reference.bin
     /usr/bin/python3 make_llmc_shard.py check FILE
"""
import sys

import numpy as np

TOKENS = [50256, 0, 1, 2, 65535, 12345, 50256, 7]


def write(path, toks):
    header = np.zeros(256, dtype=np.int32)
    header[0] = 20240520  # magic
    header[1] = 1  # version: uint16 tokens
    header[2] = len(toks)
    toks_np = np.array(toks, dtype=np.uint16)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(toks_np.tobytes())


def check(path):
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(256 * 4), dtype=np.int32)
        assert header[0] == 20240520, header[0]
        assert header[1] == 1, header[1]
        assert not header[3:].any(), "header words 3..255 must be zero"
        toks = np.frombuffer(f.read(), dtype=np.uint16)
    assert len(toks) == header[2], (len(toks), header[2])
    assert toks.tolist() == list(reversed(TOKENS)), toks.tolist()
    print("ok")


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], TOKENS)
    else:
        check(sys.argv[2])
