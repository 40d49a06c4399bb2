"""Hand-computed cases for the retrieval scorer and the accuracy-log reader (mutation testing).

Each expected value is worked out by hand in the comment beside it, from the metric's definition, not
from the code; docs/mutation_testing.md says which mutants each group of tests was written for.
"""

from __future__ import annotations

import numpy as np
import pytest

from tasks.scoring import log as log_module
from tasks.scoring.log import LogError, read_accuracy_log
from tasks.scoring.retrieval import knn


def test_knn_takes_the_k_most_similar_rows_in_descending_order():
    # query (1, 0) against (1, 0), (0, 1), (0.6, 0.8): dot products 1, 0, 0.6 -> best two: rows 0, 2
    sims, idx = knn(
        np.array([[1.0, 0.0]], np.float32), np.array([[1, 0], [0, 1], [0.6, 0.8]], np.float32), 2
    )
    assert idx.tolist() == [[0, 2]]
    np.testing.assert_allclose(sims, [[1.0, 0.6]], rtol=1e-6)


# --- the log reader ----------------------------------------------------------------------------------
def test_a_truncated_log_gets_the_whole_advice(tmp_path):
    path = tmp_path / "log.json"
    path.write_text('[{"seq_id": 0')  # 13 bytes, no closing brace
    with pytest.raises(LogError) as e:
        read_accuracy_log(path)
    assert str(e.value) == (
        f"{path}: the JSON ends early (truncated at byte 13; was the run interrupted, or is this the "
        "submission checker's truncated copy? Score the full log)"
    )


def test_a_bad_entry_after_a_chunk_boundary_is_shown_in_full(tmp_path, monkeypatch):
    """Chunks of 64 bytes: "[", the first entry (47 bytes) and ", " end at byte 50 of the first chunk, so
    the 14 bytes left in it are fewer than the 80 the message shows: the next chunk is read, and the
    bad second entry, a 100-digit number, is shown as its first 80 digits."""
    monkeypatch.setattr(log_module, "CHUNK_BYTES", 64)
    first = '{"seq_id": 0, "qsl_idx": 0, "data": "00000000"}'
    path = tmp_path / "log.json"
    path.write_text(f"[{first}, {'1' * 100}]")
    assert len(f"[{first}, ") == 50
    with pytest.raises(LogError) as e:
        read_accuracy_log(path)
    assert str(e.value).endswith(f"; entry 1 is {'1' * 80})")
