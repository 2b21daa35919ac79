"""The kernels stand alone (nothing from ``grid``), check their inputs in one way, and raise the grid's errors."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from grid.errors import InvalidInput
from kernels.validation import check_array, check_scalar

KERNEL_MODULES = ["kernels.billing", "kernels.tariffs", "kernels.reconcile", "kernels.unionfind",
                  "kernels.aggregate", "kernels.timegrid", "kernels.validation"]


def test_kernels_import_nothing_from_grid():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in KERNEL_MODULES) +
            "bad = sorted(m for m in sys.modules if m == 'grid' or m.startswith('grid.'))\n"
            "assert not bad, bad\n"
            "from kernels.unionfind import union_find_roots\n"
            "from kernels.errors import KernelInputError\n"
            "try:\n    union_find_roots(-1, [], [])\nexcept KernelInputError as e:\n    assert e.field == 'n'\n"
            "else:\n    raise SystemExit('no error')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_kernel_errors_are_the_grids_once_grid_is_loaded():
    from kernels.unionfind import union_find_roots

    with pytest.raises(InvalidInput) as exc:
        union_find_roots(3, [0, 1], [1])
    assert exc.value.field == "b" and exc.value.status == 422


def test_check_array_accepts_read_only_and_strided_and_converts_fitting_ints():
    base = np.arange(10, dtype=np.int32)
    base.setflags(write=False)
    out = check_array(base[::2], "x")
    assert out.dtype == np.int64 and out.flags.c_contiguous and out.tolist() == [0, 2, 4, 6, 8]
    same = np.arange(3, dtype=np.int64)
    assert check_array(same, "x") is same  # copied only when needed
    assert check_array(np.array([1, 2], np.int64), "c", np.int32).dtype == np.int32


@pytest.mark.parametrize("value, dtype, ndim, reason", [
    (np.array([1.5]), np.int64, 1, "dtype"), (np.array([True]), np.int64, 1, "dtype"),
    (np.array([2**40]), np.int32, 1, "dtype"), (np.zeros((2, 2), np.int64), np.int64, 1, "ndim"),
])
def test_check_array_refuses_naming_the_argument(value, dtype, ndim, reason):
    with pytest.raises(InvalidInput) as exc:
        check_array(value, "usage_wh", dtype, ndim=ndim)
    assert exc.value.field == "usage_wh" and exc.value.reason == reason


def test_check_scalar():
    assert check_scalar(np.int32(5), "n", min_val=0) == 5
    for bad in (True, 1.5, "3", -1):
        with pytest.raises(InvalidInput) as exc:
            check_scalar(bad, "n", min_val=0)
        assert exc.value.field == "n"
