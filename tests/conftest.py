"""Shared fixtures: everything is built inside the test session (CPU, offline, small, seeded)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from common.paths import DATA


def _tokenizer_text(max_lines_per_file: int = 400) -> list[str]:
    """Unlabelled sentences from several bundled files and scripts (the first lines of each)."""
    lines: list[str] = []
    for path in sorted((DATA / "xnli").glob("dev-*.tsv.gz")) + sorted((DATA / "pawsx").glob("*.tsv.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for k, line in enumerate(f):
                if k >= max_lines_per_file:
                    break
                lines.extend(line.rstrip("\n").split("\t")[:2])
    for path in sorted((DATA / "tatoeba").glob("*.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines.extend(line.strip() for _, line in zip(range(100), f, strict=False))
    return lines


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """An XLM-R fast tokenizer (SentencePiece unigram, 2000 pieces) trained on bundled text in ~5 s."""
    from models.tokenizer import train_tokenizer

    return train_tokenizer(
        _tokenizer_text(), tmp_path_factory.mktemp("tokenizer"), vocab_size=2000, character_coverage=0.98
    )


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_tokenizer, tmp_path_factory) -> Path:
    """A tiny XNLI classifier with seeded random weights, saved zoo-style (config + tokenizer)."""
    import torch
    from transformers import XLMRobertaForSequenceClassification

    from models.encoders import TINY_CONFIG, xlmr_config

    folder = tmp_path_factory.mktemp("tiny-xnli")
    torch.manual_seed(0)
    XLMRobertaForSequenceClassification(xlmr_config(TINY_CONFIG, num_labels=3)).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def multitask_zoo(tmp_path_factory) -> Path:
    """The task lists' very small zoo (2 layers, hidden 64), built once per session and shared by
    tests/test_multitask.py and tests/test_multitask_onnx.py: full and adapter for XNLI, PAWS-X and
    TyDiQA, lora-squad and adapter-squad for XNLI and PAWS-X only (so one task list lacks a
    checkpoint)."""
    from zoo.recipe import TINY_TEST, build_zoo

    root = tmp_path_factory.mktemp("multitask-zoo")
    tasks = ["xnli", "pawsx", "tydiqa"]
    build_zoo(root, "tiny", models=["full", "adapter"], tasks=tasks, sizes=TINY_TEST, progress=False)
    pairs_only = ["lora-squad", "adapter-squad"]  # no TyDiQA: one task list lacks a checkpoint
    build_zoo(root, "tiny", models=pairs_only, tasks=tasks[:2], sizes=TINY_TEST, progress=False)
    return root


# --- helpers shared by the zoo tests ------------------------------------------------------------------
def save_tiny_encoder(folder: Path, tokenizer, config: dict | None = None) -> Path:
    """A seeded random-weight XLM-R encoder of TINY_CONFIG (with `config`'s overrides), saved
    zoo-style with `tokenizer` and marked done: what `python -m zoo build` leaves in <zoo>/encoder."""
    import torch
    from transformers import XLMRobertaModel

    from models.encoders import TINY_CONFIG, xlmr_config
    from models.loaders import DONE, write_manifest

    torch.manual_seed(0)
    model_config = xlmr_config({**TINY_CONFIG, **(config or {})}, vocab_size=len(tokenizer))
    XLMRobertaModel(model_config, add_pooling_layer=False).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_manifest(folder, stage="encoder", serving="plain")
    (folder / DONE).write_text("0 s\n")
    return folder


def build_watched(argv: list[str]) -> dict:
    """Run `python -m zoo <argv>` (exit 0 asserted) with every training call watched: desc ->
    (the parameters before and after it trained, the names it trained, its data and rate)."""
    from types import SimpleNamespace

    from zoo import stages
    from zoo.cli import main as zoo_main

    seen: dict = {}
    train = stages.train

    def watched(model, data, lr, ctx, desc, **kwargs):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
        curve = train(model, data, lr, ctx, desc, **kwargs)
        after = {n: p.detach().clone() for n, p in model.named_parameters()}
        seen[desc] = SimpleNamespace(before=before, after=after, trainable=trainable, data=data, lr=lr)
        return curve

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stages, "train", watched)
        assert zoo_main(argv) == 0
    return seen
