"""The tiny zoo's tokenizer: a SentencePiece unigram model trained here, served as XLM-R's tokenizer.

XLM-R's tokenizer is a SentencePiece model plus fairseq's id layout (<s>=0, <pad>=1, </s>=2, <unk>=3,
pieces shifted by one, <mask> last). `XLMRobertaTokenizerFast(vocab_file=...)` applies that layout to
any SentencePiece model, so the tiny tokenizer goes through exactly the code path of the real one
(including character offsets, which TyDiQA's span decoding needs).
"""

from __future__ import annotations

import io
import logging
import random
from collections.abc import Iterable
from pathlib import Path


def train_tokenizer(
    sentences: Iterable[str],
    out_dir: str | Path,
    vocab_size: int = 8000,
    character_coverage: float = 0.9995,
    seed: int = 0,
):
    """Train a unigram SentencePiece model on `sentences` and save an XLM-R fast tokenizer in out_dir.

    Returns the loaded `XLMRobertaTokenizerFast`. Deterministic for the same sentences and seed.
    """
    # lazy: models/__init__.py imports this module for its warning filter; transformers takes seconds
    import sentencepiece as spm  # noqa: PLC0415
    from transformers import XLMRobertaTokenizerFast  # noqa: PLC0415

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [s.strip() for s in sentences if s and s.strip()]
    random.Random(seed).shuffle(lines)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=character_coverage,  # < 1: rare CJK characters fall back to <unk>
        input_sentence_size=200_000,
        shuffle_input_sentence=False,  # already shuffled with our seed: deterministic
        num_threads=2,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    spm_path = out_dir / "sentencepiece.bpe.model"  # the file name XLM-R checkpoints use
    spm_path.write_bytes(model.getvalue())
    tok = XLMRobertaTokenizerFast(vocab_file=str(spm_path), model_max_length=512)
    tok.save_pretrained(out_dir)
    return tok


class _FalseMistralRegexWarning(logging.Filter):
    """transformers 4.57.6 warns "incorrect regex pattern ... fix_mistral_regex" for every local
    tokenizer folder whose config.json was saved by 4.57.3 or later, whatever its model type (its
    version check is inverted). Nothing is changed unless fix_mistral_regex=True is passed, so for
    XLM-R folders the warning is false; drop it so real warnings stay visible."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "fix_mistral_regex" not in record.getMessage()


logging.getLogger("transformers.tokenization_utils_base").addFilter(_FalseMistralRegexWarning())
