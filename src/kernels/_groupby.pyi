import numpy as np
import numpy.typing as npt

def group_count(keys: npt.NDArray[np.int64], counts: npt.NDArray[np.int64], key_offset: int) -> None: ...
def group_sum_max_count(
    keys: npt.NDArray[np.int64],
    values: npt.NDArray[np.int64],
    acc: npt.NDArray[np.int64],
    where: npt.NDArray[np.int64],
    key_offset: int,
) -> int: ...
def merge_sum_max_count(
    keys: npt.NDArray[np.int64],
    sums_in: npt.NDArray[np.int64],
    maxes_in: npt.NDArray[np.int64],
    counts_in: npt.NDArray[np.int64],
    acc: npt.NDArray[np.int64],
    where: npt.NDArray[np.int64],
    key_offset: int,
) -> int: ...
def pack_codes(
    keys: npt.NDArray[np.int64],
    ranks: npt.NDArray[np.int64],
    codes: npt.NDArray[np.int64],
    key_offset: int,
    rank_offset: int,
    span: int,
) -> None: ...
def distinct_sorted_codes(codes: npt.NDArray[np.int64], span: int, out_counts: npt.NDArray[np.int64]) -> int: ...
