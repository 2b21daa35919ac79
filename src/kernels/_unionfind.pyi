import numpy as np
import numpy.typing as npt

def union_find_roots(
    a: npt.NDArray[np.int64],
    b: npt.NDArray[np.int64],
    parent: npt.NDArray[np.int64],
    size: npt.NDArray[np.int64],
    labels: npt.NDArray[np.int64],
) -> None: ...
