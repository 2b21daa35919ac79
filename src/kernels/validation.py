"""Input checks shared by the kernels' wrappers, as scikit-learn's ``check_array`` / ``check_scalar``.

Every wrapper converts and checks its inputs with these before the kernel runs (the kernel itself never
raises): one place for the dtype, shape and range rules, and one wording for the errors (what was expected,
what came, the argument named in ``field``).
"""
from __future__ import annotations

import enum
import numbers
from collections.abc import Callable, Mapping

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


class Status(enum.IntEnum):
    """The kernels' one status convention (``STATUS_*`` in ``_types.pxd``; the values must stay equal).

    A kernel that can fail on its data returns one of these and writes the offending index (row or bill) into
    its ``where`` OUT argument, an int64 array of shape (1,) from :func:`status_where`.
    """

    OK = 0
    BAD_IMPORT = 1  # a negative or >= 2**31 import value in row ``where``
    BAD_EXPORT = 2  # the same for export
    OVERFLOW = 3  # an int64 sum or count would overflow at row ``where``
    LEGACY_WITHOUT_BILL = 4  # bill ``where`` has legacy lines but no legacy bill


def status_where() -> np.ndarray:
    """The ``where`` OUT argument of a kernel (the index a failure status is about)."""
    return np.full(1, -1, dtype=np.int64)


def raise_for_status(status: int, where: np.ndarray, failures: Mapping[Status, Callable[[int], Exception]]) -> None:
    """Turn a kernel's status into its error: ``failures[status](index)`` is raised, ``Status.OK`` returns.

    ``failures`` holds the statuses the kernel can return, each with a function of the offending index that
    builds the error (an ``InvalidInput`` naming the field). Any other status is a kernel bug, not bad input.
    """
    if status == Status.OK:
        return
    make = failures.get(Status(status))
    if make is None:
        raise RuntimeError(f"kernel returned status {Status(status).name} its wrapper does not expect")
    raise make(int(where[0]))
