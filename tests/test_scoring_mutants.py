"""Hand-computed cases for the retrieval scorer and the accuracy-log reader (mutation testing).

Each expected value is worked out by hand in the comment beside it, from the metric's definition, not
from the code; docs/mutation_testing.md says which mutants each group of tests was written for.
"""

from __future__ import annotations

import numpy as np

from tasks.scoring.retrieval import knn


def test_knn_takes_the_k_most_similar_rows_in_descending_order():
    # query (1, 0) against (1, 0), (0, 1), (0.6, 0.8): dot products 1, 0, 0.6 -> best two: rows 0, 2
    sims, idx = knn(
        np.array([[1.0, 0.0]], np.float32), np.array([[1, 0], [0, 1], [0.6, 0.8]], np.float32), 2
    )
    assert idx.tolist() == [[0, 2]]
    np.testing.assert_allclose(sims, [[1.0, 0.6]], rtol=1e-6)
