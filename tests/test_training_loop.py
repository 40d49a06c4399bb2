"""The zoo's training loop as a log reads it (zoo/stages.py `train`)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from zoo import stages


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, input_ids, attention_mask, labels):
        return SimpleNamespace(loss=(self.w * input_ids.float().mean()).sum())


def test_a_log_file_gets_one_line_per_epoch_and_no_progress_bar(capsys):
    """Written to a file (not a terminal), a stage's output is its curve, one `[models]` line per
    epoch, without the step bar's redraws that made a study log megabytes of carriage returns;
    progress=False prints neither."""
    sizes = SimpleNamespace(batch_size=2, warmup=0.1, bf16=False)
    data = {"input_ids": np.arange(1, 9), "offsets": np.array([0, 2, 4, 6, 8]), "labels": [0, 1, 0, 1]}
    ctx = stages.Context(Path("."), sizes, seed=0, progress=True, squad_path=Path("."))
    curve = stages.train(Model(), data, 1e-3, ctx, "full xnli", epochs=3)
    out, err = capsys.readouterr()
    assert [p["step"] for p in curve] == [2, 4, 6]
    assert out.count("[models] full xnli: {'epoch': ") == 3 and out.count("\n") == 3
    assert "step" not in err and "\r" not in err
    quiet = stages.Context(Path("."), sizes, seed=0, progress=False, squad_path=Path("."))
    stages.train(Model(), data, 1e-3, quiet, "full xnli", epochs=3)
    assert capsys.readouterr() == ("", "")
