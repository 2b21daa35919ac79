import numpy as np
import numpy.typing as npt

def group_sum_max_count(
    keys: npt.NDArray[np.int64],
    values: npt.NDArray[np.int64],
    sums: npt.NDArray[np.int64],
    maxes: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
    key_offset: int,
) -> int: ...
def merge_sum_max_count(
    keys: npt.NDArray[np.int64],
    sums_in: npt.NDArray[np.int64],
    maxes_in: npt.NDArray[np.int64],
    counts_in: npt.NDArray[np.int64],
    sums: npt.NDArray[np.int64],
    maxes: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
    key_offset: int,
) -> int: ...
def distinct_sorted_pairs(
    keys: npt.NDArray[np.int64],
    values: npt.NDArray[np.int64],
    out_values: npt.NDArray[np.int64],
    out_counts: npt.NDArray[np.int64],
) -> int: ...
