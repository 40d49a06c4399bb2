import math

import pandas as pd
import pytest

from common.tables import cell, frame_table, markdown_table, table_block


def test_cells_render_missing_bools_and_floats():
    assert [cell(None), cell(math.nan), cell(True), cell(False)] == ["-", "-", "yes", "NO"]
    assert cell(1234.567) == "1,234.6"
    assert cell(0.12345, digits=3) == "0.123"
    assert cell(7) == "7"


def test_markdown_table_lines_and_row_width_check():
    assert markdown_table(["a", "b"], [[1, 2.25], ["x", None]]) == [
        "| a | b |",
        "|---|---|",
        "| 1 | 2.2 |",
        "| x | - |",
    ]
    with pytest.raises(ValueError, match="1 cells for 2 columns"):
        markdown_table(["a", "b"], [[1]])


def test_frame_table_uses_columns_and_drops_index():
    frame = pd.DataFrame({"model": ["full", "adapter"], "qps": [108.24, 99.0]}, index=[5, 9])
    assert frame_table(frame) == [
        "| model | qps |",
        "|---|---|",
        "| full | 108.2 |",
        "| adapter | 99.0 |",
    ]


def test_table_block_leads_a_table_and_is_empty_without_rows():
    rows = iter([["full", 1.5]])  # a generator is read once
    assert table_block("Lead.", ["model", "x"], rows) == [
        "",
        "Lead.",
        "",
        "| model | x |",
        "|---|---|",
        "| full | 1.5 |",
    ]
    assert table_block("", ["model"], [["full"]]) == ["", "| model |", "|---|", "| full |"]
    assert table_block("Lead.", ["model"], iter([])) == []
