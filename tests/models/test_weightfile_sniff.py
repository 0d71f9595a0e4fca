"""Telling a safetensors file from a legacy ``torch.save`` pickle by its first bytes."""
import json
import struct

import torch

from bertconvert.models.weightfiles import load_state_dict


def test_safetensors_header_length_ending_in_0x80_is_not_a_pickle(tmp_path):
    """A header of 384 bytes (0x180) starts the file with 0x80, the pickle protocol byte:
    ``convert --dtype bfloat16`` of a tiny model writes such a file, which was then read as
    a pickle and refused."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})
    header = header.encode("utf-8").ljust(0x180, b" ")  # safetensors pads with spaces
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + struct.pack("<2f", 1.5, -2.0))
    assert path.read_bytes()[0] == 0x80
    state = load_state_dict(path)
    assert torch.equal(state["w"], torch.tensor([1.5, -2.0]))
