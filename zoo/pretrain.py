"""The tiny encoder: a SentencePiece tokenizer and a short masked-LM pretraining on bundled
unlabelled text.

Text used (`unlabelled_corpus`), every sentence on its own and shuffled (never a pair, never a label):
  * XNLI premises and hypotheses, rows [0, 1245) of all 15 languages (the evaluation rows [1245, 2490)
    are left out);
  * PAWS-X sentences, rows [0, 1000) of all 7 languages (evaluation rows [1000, 2000) left out);
  * TyDiQA-GoldP train-en and XQuAD-en (SQuAD-format English) contexts, split at sentence ends, and
    questions (the TyDiQA dev sets, which are evaluated, are left out);
  * Tatoeba sentences of all 36 languages and English, and the BUCC zh/en sample sentences, each
    sentence individually, shuffled, so no alignment can be learned from their order.
The bundled text is the only multilingual text on this machine: retrieval sentences are included
(unlabelled, unpaired) to give the tokenizer and the encoder some coverage of Tatoeba's languages.
"""

from __future__ import annotations

import gzip
import math
import random
import re
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import XLMRobertaForMaskedLM, get_linear_schedule_with_warmup

from common.paths import DATA
from models.encoders import xlmr_config
from models.tokenizer import train_tokenizer
from tasks.data import batch_encode, pad_ragged, read_squad, to_ragged

XNLI_PRETRAIN_ROWS = 1245  # rows [0, 1245) of each XNLI language (the target training half)
PAWSX_PRETRAIN_ROWS = 1000
_SENT_END = re.compile(r"(?<=[.!?。！？])\s+")


def _gz_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def _squad_text(path: Path) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for ex in read_squad(path):
        out.append(ex.question)
        if ex.context not in seen:
            seen.add(ex.context)
            out.extend(s for s in _SENT_END.split(ex.context) if s)
    return out


def unlabelled_corpus(
    data_dir: Path = DATA, max_per_file: int | None = None, seed: int = 0
) -> list[str]:
    """The tiny encoder's text (see module doc), deduplicated and shuffled with `seed`."""
    lines: list[str] = []
    for folder, rows in (("xnli", XNLI_PRETRAIN_ROWS), ("pawsx", PAWSX_PRETRAIN_ROWS)):
        for path in sorted((data_dir / folder).glob("dev-*.tsv.gz")):
            for line in _gz_lines(path)[: min(rows, max_per_file or rows)]:
                lines.extend(line.split("\t")[:2])  # the label column is dropped
    for path in (data_dir / "tydiqa_goldp/train-en.json.gz", data_dir / "squad_en/xquad.en.json.gz"):
        lines.extend(_squad_text(path)[:max_per_file])
    for path in sorted((data_dir / "tatoeba").glob("*.gz")):
        lines.extend(_gz_lines(path)[:max_per_file])
    for path in sorted((data_dir / "bucc2018").glob("zh-en.sample.[ez][nh].gz")):
        lines.extend(line.split("\t", 1)[-1] for line in _gz_lines(path)[:max_per_file])
    unique = sorted({s.strip() for s in lines if s.strip()})
    random.Random(seed).shuffle(unique)
    return unique


def build_tokenizer(
    out_dir: Path, sentences: list[str], vocab_size: int, coverage: float, seed: int = 0
):

    return train_tokenizer(
        sentences, out_dir, vocab_size=vocab_size, character_coverage=coverage, seed=seed
    )


def pretrain_mlm(
    tokenizer,
    sentences: list[str],
    config: dict,
    out_dir: Path,
    steps: int,
    batch_size: int = 64,
    max_length: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> None:
    """Masked-LM pretraining (15% of tokens: 80% <mask>, 10% random, 10% kept) of a fresh XLM-R with
    `config`; saves the encoder (AutoModel, no pooler) and the tokenizer in out_dir."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    values, offsets = to_ragged(
        batch_encode(tokenizer, sentences, max_length=max_length, desc="mlm text")
    )
    cfg = xlmr_config(config, vocab_size=len(tokenizer), attn_implementation="sdpa")
    model = XLMRobertaForMaskedLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, max(1, steps // 10), steps)
    special = torch.tensor([tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id])
    model.train()
    bar = tqdm(range(steps), desc="pretrain tiny MLM", disable=None if progress else True)
    for _ in bar:
        rows = rng.integers(0, len(offsets) - 1, batch_size)
        ids, mask = (
            torch.from_numpy(a) for a in pad_ragged(values, offsets, rows, tokenizer.pad_token_id)
        )
        labels = ids.clone()
        prob = torch.full(ids.shape, 0.15)
        prob[torch.isin(ids, special)] = 0.0
        chosen = torch.bernoulli(prob).bool()
        labels[~chosen] = -100
        inputs = ids.clone()
        roll = torch.rand(ids.shape)
        inputs[chosen & (roll < 0.8)] = tokenizer.mask_token_id
        rand = chosen & (roll >= 0.8) & (roll < 0.9)
        inputs[rand] = torch.randint(4, len(tokenizer) - 1, (int(rand.sum()),))
        # the LM head only on the ~15% chosen positions: the 8k-way softmax over every token was most
        # of the step time
        hidden = model.roberta(input_ids=inputs, attention_mask=mask).last_hidden_state
        loss = torch.nn.functional.cross_entropy(model.lm_head(hidden[chosen]), labels[chosen])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if math.isfinite(loss.item()):
            bar.set_postfix(loss=f"{loss.item():.2f}")
    out_dir.mkdir(parents=True, exist_ok=True)
    model.roberta.save_pretrained(out_dir)  # XLMRobertaModel without pooler: what AutoModel loads
    tokenizer.save_pretrained(out_dir)
