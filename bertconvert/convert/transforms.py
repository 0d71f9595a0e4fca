"""Tensor transforms from TensorFlow's layout to PyTorch's (numpy; exact: only moves bytes).

The rule tables (:mod:`bertconvert.convert.rules`) name one of these per variable.
"""
import numpy as np

NONE = "none"
TRANSPOSE = "transpose"
RESHAPE = "reshape"                            # [heads, head_dim] -> [hidden]
RESHAPE_OUT_TRANSPOSE = "reshape_out+transpose"  # [in, heads, head_dim] -> [heads*head_dim, in]
RESHAPE_IN_TRANSPOSE = "reshape_in+transpose"    # [heads, head_dim, out] -> [out, heads*head_dim]


def _transform_shape(transform, shape):
    shape = tuple(int(d) for d in shape)
    if transform == NONE:
        return shape
    if transform == TRANSPOSE and len(shape) == 2:
        return shape[::-1]
    if transform == RESHAPE and len(shape) == 2:
        return (shape[0] * shape[1],)
    if transform == RESHAPE_OUT_TRANSPOSE and len(shape) == 3:
        return (shape[1] * shape[2], shape[0])
    if transform == RESHAPE_IN_TRANSPOSE and len(shape) == 3:
        return (shape[2], shape[0] * shape[1])
    return None


def transformed_shape(transform, shape):
    """Shape after ``transform``, or None when the rank does not fit the transform."""
    if transform not in TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}")
    return _transform_shape(transform, shape)


def invert_transform(transform, array):
    """PyTorch layout back to the TF1 layout (only the 2-D transforms TF1 uses)."""
    if transform == NONE:
        return np.ascontiguousarray(array)
    if transform == TRANSPOSE and array.ndim == 2:
        return np.ascontiguousarray(array.T)
    raise ValueError(f"transform {transform} cannot be inverted for shape {list(array.shape)}")


TRANSFORMS = (NONE, TRANSPOSE, RESHAPE, RESHAPE_OUT_TRANSPOSE, RESHAPE_IN_TRANSPOSE)
