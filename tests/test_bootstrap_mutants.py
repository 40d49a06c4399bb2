"""Hand-computed cases for the paired bootstrap (mutation testing): tiny inputs whose figures,
draws and intervals can be worked out by hand."""

from __future__ import annotations

import numpy as np

from research.bootstrap import language_figure


def test_f1_of_summed_counts():
    # counts [correct, predicted, gold] summed: [1, 2, 2] -> P = 1/2, R = 1/2, F1 = 50
    counts = np.array([[1, 2, 1], [0, 0, 1]], dtype=np.float64)
    assert language_figure("f1_counts", counts) == 50.0
    assert language_figure("mean", np.array([0.0, 100.0, 100.0, 0.0])) == 50.0
