"""`python -m research pooling`: choose the retrieval embedding's layer (and input prefix) without
the retrieval test sets.

Tatoeba and BUCC serve a mean of `hidden_states[layer]` (models/modules.py MeanPoolModule). Which
layer is a choice, and a choice made on Tatoeba or BUCC themselves flatters their figures. This
command makes it on other parallel sentences: XNLI's training rows (rows below 1245, the rows the
zoo trains on, never an evaluation row), which are the same sentences in all 15 of XNLI's
languages. Each language's premises (one per three rows) and hypotheses are retrieved from the
English ones, Tatoeba's way (nearest by cosine, top-1 accuracy, averaged over the 14 languages), at
every layer and prefix asked for; the best is the choice. The report says which layer the encoder
serves (models/encoders.py `retrieval_layer`) and whether the choice agrees.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.exit_codes import BAD_INPUT
from common.paths import REPO
from common.tables import markdown_table
from harness.cli import ints, names
from models.registry import resolve
from tasks.data import batch_encode, find_file, pad_ragged, read_classification_file, to_ragged
from tasks.scoring.classification import HELDOUT_FIRST_ROW
from tasks.scoring.cli import write_atomically
from tasks.scoring.retrieval import tatoeba_correct
from tasks.xnli import PREMISE_ROWS, XnliTask

ROWS = HELDOUT_FIRST_ROW["xnli"]  # rows [0, 1245): the zoo's training rows, no evaluation row
MAX_LENGTH = 128  # Tatoeba's and BUCC's max_length (tasks/tatoeba.py)


def parallel_sentences(data_dir: Path, languages: Sequence[str]) -> dict[str, list[str]]:
    """language -> the sentences of XNLI's training rows: each premise once, then every hypothesis,
    in row order (sentence i is the same sentence in every language)."""
    out = {}
    for lang in languages:
        path = find_file(data_dir, f"dev-{lang}.tsv")
        rows = read_classification_file(path, XnliTask.label_names, lang)[:ROWS]
        if len(rows) < ROWS:
            raise ValueError(f"{path}: {len(rows)} rows, fewer than the {ROWS} training rows")
        premises = [r.text_a for r in rows[::PREMISE_ROWS]]
        out[lang] = premises + [r.text_b for r in rows]
    return out


def retrieval_accuracy(embeddings: dict[str, np.ndarray], pivot: str = "en") -> dict[str, float]:
    """language -> top-1 accuracy (percent) of retrieving each of its sentences from the pivot's
    (Tatoeba's scoring, tasks/scoring/retrieval.py `tatoeba_correct`); `embeddings`: language ->
    float32 [n, d], row i the same sentence in every language."""
    en = embeddings[pivot]
    return {
        lang: 100.0 * float(tatoeba_correct(x, en).mean())
        for lang, x in embeddings.items()
        if lang != pivot
    }


@dataclass(frozen=True)
class Score:
    layer: int
    prefix: str
    per_language: dict[str, float]

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.per_language.values())))


def embed_all_layers(model, tokenizer, texts: list[str], layers: Sequence[int], batch: int = 64):
    """layer -> float32 [n, H]: the masked mean of hidden_states[layer] (the served pooling,
    models/modules.py `mean_pool`), every layer from one forward pass per batch."""
    import torch  # noqa: PLC0415  (lazy: the command's --help needs no torch)

    from models.modules import mean_pool  # noqa: PLC0415

    ids = batch_encode(tokenizer, texts, max_length=MAX_LENGTH, desc="tokenising")
    flat, offsets = to_ragged(ids)
    out: dict[int, list[np.ndarray]] = {k: [] for k in layers}
    with torch.inference_mode():
        for lo in range(0, len(ids), batch):
            rows = np.arange(lo, min(lo + batch, len(ids)))
            input_ids, mask = pad_ragged(flat, offsets, rows, tokenizer.pad_token_id)
            input_ids, mask = torch.from_numpy(input_ids), torch.from_numpy(mask)
            hidden = model(
                input_ids=input_ids, attention_mask=mask, output_hidden_states=True
            ).hidden_states
            for k in layers:
                out[k].append(mean_pool(hidden[k], mask).numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def measure(
    encoder: str,
    layers: Sequence[int],
    prefixes: Sequence[str],
    models_dir: Path | None = None,
    languages: Sequence[str] = XnliTask.languages,
) -> tuple[list[Score], int, int]:
    """Every (layer, prefix)'s Score over `languages` (English and the others retrieved from it),
    the served layer, and the sentences per language."""
    from transformers import XLMRobertaModel  # noqa: PLC0415

    from models.loaders import load_tokenizer  # noqa: PLC0415

    served = resolve("full", "tatoeba", encoder, models_dir=models_dir)  # the pretrained encoder
    tokenizer = load_tokenizer(served)
    model = XLMRobertaModel.from_pretrained(str(served.checkpoint), add_pooling_layer=False).eval()
    depth = model.config.num_hidden_layers
    if bad := [k for k in layers if not 0 <= k <= depth]:
        raise ValueError(f"--layers {bad}: {encoder} has hidden_states 0..{depth}")
    sentences = parallel_sentences(XnliTask().data_dir, ["en", *(x for x in languages if x != "en")])
    scores = []
    for prefix in prefixes:
        per_layer: dict[int, dict[str, np.ndarray]] = {k: {} for k in layers}
        for lang, texts in sentences.items():
            for k, x in embed_all_layers(model, tokenizer, [prefix + t for t in texts], layers).items():
                per_layer[k][lang] = x
        scores += [Score(k, prefix, retrieval_accuracy(per_layer[k])) for k in layers]
    return scores, served.pooling_layer, len(sentences["en"])


def best(scores: Sequence[Score]) -> Score:
    """The highest mean accuracy; a tie goes to the earlier layer, then to no prefix."""
    return max(scores, key=lambda s: (round(s.mean, 6), -s.layer, s.prefix == ""))


def report(encoder: str, scores: Sequence[Score], served_layer: int, n: int, command: str) -> str:
    chosen = best(scores)
    languages = sorted(scores[0].per_language)
    rows = [
        [str(s.layer), repr(s.prefix), f"{s.mean:.1f}", *(f"{s.per_language[x]:.1f}" for x in languages)]
        for s in scores
    ]
    agree = "agrees with" if chosen.layer == served_layer and chosen.prefix == "" else "differs from"
    return "\n".join(
        [
            f"# Retrieval pooling chosen without the test sets, encoder `{encoder}`",
            "",
            f"Command: `{command}`",
            "",
            f"Data: XNLI's training rows 0-{ROWS - 1} (no evaluation row, no Tatoeba or BUCC sentence):",
            f"{n} sentences per language (each premise once, then every hypothesis), the same",
            f"sentences in all {len(languages) + 1} languages. Score: top-1 accuracy of retrieving "
            "each language's",
            "sentence from the English ones by cosine (Tatoeba's scoring), mean over "
            f"{len(languages)} languages.",
            "Embedding: the masked mean of `hidden_states[layer]`, as served.",
            "",
            *markdown_table(["layer", "prefix", "mean", *languages], rows),
            "",
            f"**Chosen: layer {chosen.layer}, prefix {chosen.prefix!r}** (mean {chosen.mean:.1f}). The",
            f"harness serves layer {served_layer} without a prefix for `{encoder}`",
            f"(models/encoders.py `retrieval_layer`): the choice {agree} it.",
            "",
        ]
    )


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--encoder", default="e5-small", help="the encoder whose zoo serves retrieval")
    parser.add_argument("--models_dir", type=Path, default=None, help="its zoo (default: the encoder's)")
    parser.add_argument("--layers", type=ints, default=[4, 6, 8, 10, 12], help="hidden_states indices")
    parser.add_argument(
        "--prefixes",
        type=names,
        default=["none"],
        help="comma list of input prefixes, each then one space ('none': no prefix), e.g. none,query:",
    )
    parser.add_argument(
        "--languages",
        type=names,
        default=list(XnliTask.languages),
        help="XNLI languages (default all 15)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "retrieval_pooling.md")


def main(args: argparse.Namespace) -> int:
    prefixes = ["" if p == "none" else p + " " for p in args.prefixes]
    try:
        scores, served_layer, n = measure(
            args.encoder, args.layers, prefixes, args.models_dir, args.languages
        )
    except (ValueError, FileNotFoundError) as exc:  # a layer the encoder lacks, a zoo not built
        print(f"error: {exc}", file=sys.stderr)
        return BAD_INPUT
    command = "python -m research pooling " + " ".join(
        f"--{k} {','.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in (
            ("encoder", args.encoder),
            ("layers", args.layers),
            ("prefixes", args.prefixes),
            *([("languages", args.languages)] if set(args.languages) != set(XnliTask.languages) else []),
        )
    )
    text = report(args.encoder, scores, served_layer, n, command)
    write_atomically(args.out, text)
    print(text)
    return 0
