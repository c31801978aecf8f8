"""Logits and labels (NumPy arrays or PyTorch tensors) -> rows of raw little-endian bytes.

A tensor is detached and moved to the CPU (no copy when it is there already) and seen
as a NumPy array; a C-contiguous little-endian array of a dtype the contract takes is
used as it is, anything else is copied once into one. torch is never imported here: a
torch.Tensor can only exist once its caller has imported torch.
"""

import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from .stubs import calibration_pb2 as pb

_LOGITS_DTYPES = {np.dtype("<f4"): pb.DTYPE_FLOAT32, np.dtype("<f8"): pb.DTYPE_FLOAT64,
                  np.dtype("<f2"): pb.DTYPE_FLOAT16}
_LABELS_DTYPES = {np.dtype("<i4"): pb.DTYPE_INT32, np.dtype("<i8"): pb.DTYPE_INT64,
                  np.dtype("u1"): pb.DTYPE_UINT8, np.dtype("<f4"): pb.DTYPE_FLOAT32,
                  np.dtype("<f8"): pb.DTYPE_FLOAT64}
# Label dtypes the contract lacks, each mapped to one that holds all of its values.
_LABELS_WIDENED = {np.dtype("i1"): np.dtype("<i4"), np.dtype("<i2"): np.dtype("<i4"),
                   np.dtype("<u2"): np.dtype("<i4"), np.dtype("<u4"): np.dtype("<i8"),
                   np.dtype("<f2"): np.dtype("<f4")}


@dataclass(frozen=True)
class Rows:
    """`count` rows of `per_row` elements of `itemsize` bytes, contiguous in `data`."""

    data: memoryview  # flat bytes
    dtype: int        # a calib.v1.DType value
    count: int
    per_row: int
    itemsize: int

    @property
    def row_bytes(self) -> int:
        return self.per_row * self.itemsize

    def slice(self, first: int, count: int) -> memoryview:
        """Rows [first, first + count): a view, no copy."""
        return self.data[first * self.row_bytes:(first + count) * self.row_bytes]


def _to_numpy(value: Any, what: str):
    """(array, is_bfloat16): torch tensors via the CPU, bfloat16 as its raw 16 bits."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            return tensor.contiguous().view(torch.int16).numpy(), True
        return tensor.numpy(), False
    array = np.asarray(value)
    # NumPy has no bfloat16: ml_dtypes' bfloat16 (saved by np.save as 'V2') is a 2-byte void.
    if array.dtype.kind == "V" and array.dtype.itemsize == 2 and array.dtype.fields is None:
        return array, True
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{what} have dtype {array.dtype}, which is not a number type")
    return array, False


def _contiguous_little_endian(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return np.ascontiguousarray(array.astype(dtype.newbyteorder("<"), copy=False))


def _flat_bytes(array: np.ndarray) -> memoryview:
    return memoryview(array.reshape(-1).view(np.uint8))


def logits_rows(logits: Any) -> Rows:
    """Logits of shape [N] (binary: one logit per row), [N, C] or [B, S, C]."""
    array, bfloat16 = _to_numpy(logits, "logits")
    if array.ndim == 0:
        raise ValueError("logits must have at least one axis, e.g. [N, C]")
    array = _contiguous_little_endian(array, array.dtype)
    if bfloat16:
        dtype = pb.DTYPE_BFLOAT16
    elif array.dtype in _LOGITS_DTYPES:
        dtype = _LOGITS_DTYPES[array.dtype]
    else:
        raise TypeError(f"logits have dtype {array.dtype}; calib takes float32, float64, "
                        "float16 and bfloat16")
    per_row = 1 if array.ndim == 1 else array.shape[-1]
    count = math.prod(array.shape[:-1]) if array.ndim > 1 else array.shape[0]
    return Rows(_flat_bytes(array), dtype, count, per_row, array.itemsize)


def labels_rows(labels: Any, logits: Rows) -> Rows:
    """Labels for `logits`: one per row (class indices), or one per logit (SIGMOID)."""
    array, bfloat16 = _to_numpy(labels, "labels")
    if bfloat16:
        raise TypeError("labels cannot be bfloat16: give integer classes or float32 targets")
    if array.dtype == np.bool_:
        array = array.view(np.uint8)
    dtype = array.dtype.newbyteorder("<")
    array = _contiguous_little_endian(array, _LABELS_WIDENED.get(dtype, dtype))
    if array.dtype not in _LABELS_DTYPES:
        raise TypeError(f"labels have dtype {array.dtype}; calib takes int32, int64, uint8, "
                        "bool and (SIGMOID targets) float32 and float64")
    if array.size == logits.count:
        per_row = 1
    elif array.size == logits.count * logits.per_row:
        per_row = logits.per_row
    else:
        raise ValueError(
            f"{array.size} labels (shape {tuple(array.shape)}) do not fit {logits.count} rows "
            f"of {logits.per_row} logits: give one label per row, or one per logit (SIGMOID)")
    return Rows(_flat_bytes(array), _LABELS_DTYPES[array.dtype], logits.count, per_row,
                array.itemsize)
