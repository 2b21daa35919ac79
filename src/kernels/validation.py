"""Input checks shared by the kernels' wrappers, as scikit-learn's ``check_array`` / ``check_scalar``.

Every wrapper converts and checks its inputs with these before the kernel runs (the kernel itself never
raises): one place for the dtype, shape and range rules, and one wording for the errors (what was expected,
what came, the argument named in ``field``).
"""
from __future__ import annotations

import numbers

import numpy as np

from kernels import errors


def check_array(value, name: str, dtype=np.int64, *, ndim: int = 1) -> np.ndarray:
    """``value`` as a C-contiguous array of ``dtype`` with ``ndim`` dimensions, copied only when needed.

    Other integer dtypes are converted when every value fits (a code column held as int64 is fine for int32);
    floats, bools and out-of-range values are refused. Read-only and non-contiguous inputs are accepted.
    """
    arr = np.asarray(value)
    dtype = np.dtype(dtype)
    if arr.ndim != ndim:
        raise errors.InvalidInput(f"{name} must be {ndim}-D, got {arr.ndim}-D", field=name, reason="ndim")
    if arr.dtype != dtype:
        if arr.size and (arr.dtype.kind not in "iu" or dtype.kind not in "iu"):
            raise errors.InvalidInput(f"{name} must be {dtype.name}, got {arr.dtype}", field=name, reason="dtype")
        if arr.size and not np.can_cast(arr.dtype, dtype, "safe"):
            info = np.iinfo(dtype)
            if int(arr.min()) < info.min or int(arr.max()) > info.max:
                raise errors.InvalidInput(f"{name} must be {dtype.name}, got {arr.dtype} with values outside "
                                          "its range", field=name, reason="dtype")
        arr = arr.astype(dtype)
    return np.ascontiguousarray(arr)


def check_scalar(value, name: str, target_type: type = numbers.Integral, *, min_val=None, max_val=None):
    """``value`` checked to be a ``target_type`` (bools are not numbers here) within ``[min_val, max_val]``;
    returns it as a Python int or float."""
    if isinstance(value, bool) or not isinstance(value, target_type):
        raise errors.InvalidInput(f"{name} must be {getattr(target_type, '__name__', target_type)}, got {value!r}",
                                  field=name, reason="type")
    if (min_val is not None and value < min_val) or (max_val is not None and value > max_val):
        raise errors.InvalidInput(f"{name} must be in [{min_val}, {max_val}], got {value!r}", field=name,
                                  reason="range")
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def as_int64(value, name: str) -> np.ndarray:
    """1-D C-contiguous int64 array (:func:`check_array` with its defaults)."""
    return check_array(value, name, np.int64)
