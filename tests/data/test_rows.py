import numpy as np
import torch

from kidneyct.data.rows import Rows


def test_rows_gather_lazily_in_the_order_asked():
    base = np.arange(10 * 2 * 2, dtype=np.uint8).reshape(10, 2, 2)
    rows = Rows(base, [7, 2, 5, 3])
    assert rows.shape == (4, 2, 2) and len(rows) == 4
    assert np.array_equal(rows[[2, 0]], base[[5, 7]])
    assert np.array_equal(rows[1:3], base[[2, 5]])
    assert np.array_equal(rows.subset([3, 1])[:], base[[3, 2]])
    assert np.array_equal(np.asarray(rows), base[[7, 2, 5, 3]])
    assert torch.equal(rows.to_tensor(chunk=3), torch.from_numpy(base[[7, 2, 5, 3]]))
