"""The expected PyTorch layout of a TF tensor, written out independently of the converter
(plain numpy, one line per transform), for tests that check converted weights bit for bit."""
import numpy as np


def to_torch_layout(transform, array):
    """``array`` (TF layout) as the converter must store it under ``transform``."""
    if transform == "none":
        out = array
    elif transform == "transpose":           # Dense kernel [in, out] -> Linear weight [out, in]
        out = array.T
    elif transform == "reshape":             # EinsumDense bias [heads, head_dim] -> [hidden]
        out = array.reshape(-1)
    elif transform == "reshape_out+transpose":  # [in, heads, head_dim] -> [heads*head_dim, in]
        out = array.reshape(array.shape[0], -1).T
    elif transform == "reshape_in+transpose":   # [heads, head_dim, out] -> [out, heads*head_dim]
        out = array.reshape(-1, array.shape[-1]).T
    else:
        raise ValueError(f"no reference layout for transform {transform!r}")
    return np.ascontiguousarray(out)
