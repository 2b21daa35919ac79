"""Input conversion shared by the kernels' wrappers (one place for the dtype rules)."""
from __future__ import annotations

import numpy as np

from grid.errors import InvalidInput


def as_int64(value, name: str) -> np.ndarray:
    """1-D C-contiguous int64 array, copied only when needed.

    Other integer dtypes are converted when every value fits; floats, bools and out-of-range values are refused.
    """
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise InvalidInput(f"{name} must be 1-D, got {arr.ndim}-D", field=name)
    if arr.dtype != np.int64:
        if arr.size and arr.dtype.kind not in "iu":
            raise InvalidInput(f"{name} must be int64, got {arr.dtype}", field=name)
        if arr.size and not np.can_cast(arr.dtype, np.int64, "safe") and int(arr.max()) > 2**63 - 1:
            raise InvalidInput(f"{name} must be int64, got {arr.dtype} with values outside its range", field=name)
        arr = arr.astype(np.int64)
    return np.ascontiguousarray(arr)
