import numpy as np
import numpy.typing as npt

def lines_sorted(bill: npt.NDArray[np.int64], code: npt.NDArray[np.int32]) -> bool: ...
def order_lines(
    bill: npt.NDArray[np.int64],
    code: npt.NDArray[np.int32],
    amount: npt.NDArray[np.int64],
    starts: npt.NDArray[np.int64],
    out_bill: npt.NDArray[np.int64],
    out_code: npt.NDArray[np.int32],
    out_amount: npt.NDArray[np.int64],
) -> None: ...
def count_pairs_sorted(
    comp_bill: npt.NDArray[np.int64],
    comp_code: npt.NDArray[np.int32],
    legacy_bill: npt.NDArray[np.int64],
    legacy_code: npt.NDArray[np.int32],
) -> int: ...
def reconcile_sorted(
    comp_bill: npt.NDArray[np.int64],
    comp_code: npt.NDArray[np.int32],
    comp_amount: npt.NDArray[np.int64],
    legacy_bill: npt.NDArray[np.int64],
    legacy_code: npt.NDArray[np.int32],
    legacy_amount: npt.NDArray[np.int64],
    legacy_present: npt.NDArray[np.uint8],
    outcome: npt.NDArray[np.int8],
    diff_cents: npt.NDArray[np.int64],
    line_bill: npt.NDArray[np.int64],
    line_code: npt.NDArray[np.int32],
    line_computed: npt.NDArray[np.int64],
    line_legacy: npt.NDArray[np.int64],
    line_status: npt.NDArray[np.int8],
    where: npt.NDArray[np.int64],
    tolerance_cents: int,
) -> int: ...
