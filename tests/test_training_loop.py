"""The zoo's training loop as a log reads it (zoo/stages.py `train`)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
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


def test_the_zoo_trains_where_zoo_device_or_a_visible_gpu_says(monkeypatch):
    """No ZOO_DEVICE: the GPU where torch sees one, else the CPU; ZOO_DEVICE chooses (cuda:N kept);
    a value that is no device, or a GPU this machine lacks, is an error naming the variable. bf16
    autocast follows the device: a GPU's own bf16 support, a CPU's native bf16 (the probe)."""
    from models import training_device as td

    monkeypatch.delenv(td.ENV, raising=False)
    for gpu in (True, False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda gpu=gpu: gpu)
        assert td.training_device() == ("cuda" if gpu else "cpu")
        monkeypatch.setenv(td.ENV, "cpu")
        assert td.training_device() == "cpu"
        monkeypatch.setenv(td.ENV, "cuda:1")
        if gpu:
            assert td.training_device() == "cuda:1"
        else:
            with pytest.raises(ValueError, match=r"ZOO_DEVICE=cuda:1: torch .* sees no CUDA GPU"):
                td.training_device()
        monkeypatch.delenv(td.ENV)
    for bad in ("tpu", "mps"):
        monkeypatch.setenv(td.ENV, bad)
        with pytest.raises(ValueError, match=f"ZOO_DEVICE='{bad}' is not a training device"):
            td.training_device()
    for supported in (True, False):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda s=supported: s)
        assert td.autocast_bf16_on("cuda:0") is supported
        assert td.autocast_bf16_on("cuda:0", wanted=False) is False
    monkeypatch.setattr(td, "autocast_bf16", lambda wanted: "the CPU probe's answer")
    assert td.autocast_bf16_on("cpu") == "the CPU probe's answer"


def test_a_stage_context_trains_on_the_chosen_device_and_returns_the_model_to_the_cpu(monkeypatch):
    """Context's device comes from ZOO_DEVICE (read when the build makes it); after `train` the model
    is on the CPU, where the stages merge, fuse and save it."""
    from models import training_device as td

    monkeypatch.setenv(td.ENV, "cpu")
    sizes = SimpleNamespace(batch_size=2, warmup=0.1, bf16=False)
    ctx = stages.Context(Path("."), sizes, seed=0, progress=False, squad_path=Path("."))
    assert ctx.device == "cpu"
    model = Model()
    data = {"input_ids": np.arange(1, 9), "offsets": np.array([0, 2, 4, 6, 8]), "labels": [0, 1, 0, 1]}
    stages.train(model, data, 1e-1, ctx, "t", epochs=1)
    assert model.w.device.type == "cpu" and model.w.item() != 1.0  # trained, on the CPU
    monkeypatch.setenv(td.ENV, "gpu")
    with pytest.raises(ValueError, match="ZOO_DEVICE='gpu'"):
        stages.Context(Path("."), sizes, seed=0, progress=False, squad_path=Path("."))


def test_the_bf16_a_stage_records_is_the_autocast_train_ran_with(monkeypatch):
    """One answer per context (Context.bf16, which `fit` records): the recipe's wish and the device's
    native bf16. `train` autocasts with exactly it; a recipe without bf16 never autocasts."""
    seen = []
    real_autocast = torch.autocast

    def spy(device_type, dtype=None, enabled=True):
        seen.append(enabled)
        return real_autocast(device_type, dtype=dtype, enabled=False)  # run fp32 on any CPU

    monkeypatch.setattr(stages.torch, "autocast", spy)
    data = {"input_ids": np.arange(1, 9), "offsets": np.array([0, 2, 4, 6, 8]), "labels": [0, 1, 0, 1]}
    for wanted, native in ((True, True), (True, False), (False, True)):
        monkeypatch.setattr(stages, "autocast_bf16_on", lambda d, w, n=native: w and n)
        sizes = SimpleNamespace(batch_size=2, warmup=0.1, bf16=wanted)
        ctx = stages.Context(
            Path("."), sizes, seed=0, progress=False, squad_path=Path("."), device="cpu"
        )
        seen.clear()
        stages.train(Model(), data, 1e-3, ctx, "t", epochs=1)
        assert seen == [wanted and native] * 2 and ctx.bf16 is (wanted and native)


class Noisy(nn.Module):
    """Embedding, dropout (the random state a resumed training must carry on), linear head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)  # every instance starts from the same weights
        self.emb, self.drop, self.head = nn.Embedding(10, 4), nn.Dropout(0.5), nn.Linear(4, 3)

    def forward(self, input_ids, attention_mask, labels):
        h = (self.drop(self.emb(input_ids)) * attention_mask[..., None]).sum(1)
        return SimpleNamespace(loss=nn.functional.cross_entropy(self.head(h), labels))


def _noisy_data() -> dict:
    lengths = np.array([2, 3, 1, 4, 2, 3, 2, 1, 4, 3, 2, 2, 3, 1, 2, 4, 3, 2, 1, 2])  # 20 rows
    rng = np.random.default_rng(0)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return {
        "input_ids": rng.integers(2, 10, offsets[-1]),
        "offsets": offsets,
        "labels": rng.integers(0, 3, len(lengths)),
    }


def test_a_killed_training_resumes_from_its_checkpoint_as_if_never_stopped(tmp_path, capsys):
    """A training stopped in its second epoch (here by a probe that raises) resumes after its
    first from ctx.resume: the same curve and, bit for bit, the same weights as a training never
    stopped (dropout's random state, the optimizer's moments and the schedule carried over). A
    finished checkpoint returns at once; one made with other settings, or damaged, is not used."""
    sizes = SimpleNamespace(batch_size=4, warmup=0.1, bf16=False)
    plain = stages.Context(Path("."), sizes, seed=3, progress=False, squad_path=Path("."), device="cpu")
    ctx = stages.Context(
        Path("."), sizes, 3, progress=False, squad_path=Path("."), device="cpu", resume=tmp_path / "r"
    )
    data = _noisy_data()

    def probe(m):
        return float(m.head.weight.detach().sum())

    whole = Noisy()
    curve = stages.train(whole, data, 0.05, plain, "full xnli", epochs=3, probes={"p": probe})
    assert [p["step"] for p in curve] == [5, 10, 15] and not (tmp_path / "r").exists()

    calls = []

    def dies_in_epoch_two(m):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return probe(m)

    with pytest.raises(RuntimeError, match="killed"):
        stages.train(Noisy(), data, 0.05, ctx, "full xnli", epochs=3, probes={"p": dies_in_epoch_two})
    assert torch.load(tmp_path / "r" / "full xnli.pt", weights_only=False)["step"] == 5

    resumed, record = Noisy(), {}
    again = stages.train(
        resumed, data, 0.05, ctx, "full xnli", epochs=3, probes={"p": probe}, record=record
    )
    assert again == curve and record["resumed_at_step"] == 5 and record["earlier_s"] > 0
    for (name, a), (_, b) in zip(whole.named_parameters(), resumed.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    assert "full xnli: resuming after step 5 of 15" in capsys.readouterr().out

    finished, record = Noisy(), {}  # a second call: the finished checkpoint, nothing trained
    assert stages.train(finished, data, 0.05, ctx, "full xnli", epochs=3, record=record) == curve
    assert record["resumed_at_step"] == 15 and torch.equal(finished.head.weight, whole.head.weight)

    other, record = Noisy(), {}  # another learning rate: another training, from the start
    stages.train(other, data, 0.01, ctx, "full xnli", epochs=3, record=record)
    assert (
        record["resumed_at_step"] == 0
        and "made with other settings: starting over" in capsys.readouterr().out
    )
    assert not torch.equal(other.head.weight, whole.head.weight)

    (tmp_path / "r" / "full xnli.pt").write_bytes(b"half a checkpoint")  # damaged: not used
    damaged, record = Noisy(), {}
    assert (
        stages.train(damaged, data, 0.05, ctx, "full xnli", epochs=3, probes={"p": probe}, record=record)
        == curve
    )
    assert record["resumed_at_step"] == 0 and torch.equal(damaged.head.weight, whole.head.weight)
    assert "full xnli.pt cannot be read (" in capsys.readouterr().out
