"""Which retrieval convention for an encoder: e5's own (prefix "query: ", mean of the last layer) or
XTREME's raw-encoder recipe (no prefix, a middle layer)? Scores Tatoeba (36 languages) and BUCC zh-en
for pooling layers `--layers` with and without the prefix, with the tasks' own scorers.

One forward pass per prefix gives every layer (output_hidden_states), so the comparison is cheap.
    python reports/scripts/retrieval_convention.py --encoder e5-small > reports/retrieval_convention.md
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def pooled_layers(model, fs, layers: list[int], batch: int = 128) -> dict[int, np.ndarray]:
    """Mean over the attention mask of hidden_states[layer] for every sample -> {layer: [n, H]}."""
    from tasks.data import pad_ragged

    order = np.argsort(fs.lengths, kind="stable")
    out = {layer: np.zeros((len(order), model.config.hidden_size), np.float32) for layer in layers}
    with torch.inference_mode():
        for lo in range(0, len(order), batch):
            rows = order[lo : lo + batch]
            ids, mask = pad_ragged(fs.input_ids, fs.offsets, rows, 1)
            m = torch.from_numpy(mask)
            hs = model(input_ids=torch.from_numpy(ids), attention_mask=m, output_hidden_states=True)
            w = m.unsqueeze(-1).float()
            for layer in layers:
                h = hs.hidden_states[layer]
                out[layer][rows] = ((h * w).sum(1) / w.sum(1)).numpy()
    return out


def score(task, fs, emb: np.ndarray, tokenizer) -> dict:
    from tasks.scoring import score as score_log
    from tasks.scoring.log import AccuracyLog

    qsl = np.arange(len(emb), dtype=np.int64)
    offsets = np.arange(len(emb) + 1, dtype=np.int64) * emb.shape[1]
    log = AccuracyLog(Path("<convention>"), qsl, offsets, emb.astype(np.float32).ravel())
    return json.loads(score_log(task, log).final_line)  # the task's own scoring method


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoder", default="e5-small")
    ap.add_argument("--layers", default="8,12")
    ap.add_argument("--prefix", default="query: ")
    args = ap.parse_args()
    from transformers import AutoModel, AutoTokenizer

    from common.paths import BUILD
    from models.encoders import get_encoder
    from tasks.registry import get_task

    enc_dir = get_encoder(args.encoder).default_models_dir(BUILD)
    path = str(enc_dir / "encoder")
    model = AutoModel.from_pretrained(path, add_pooling_layer=False).eval()
    tok = AutoTokenizer.from_pretrained(path)
    layers = [int(x) for x in args.layers.split(",")]
    rows = []
    t0 = time.perf_counter()
    for prefix in ("", args.prefix):
        for name, kw in (("tatoeba", {}), ("bucc", {"languages": "zh"})):
            task = get_task(name, prefix=prefix, **kw)
            fs = task.features(tok, progress=False)
            embs = pooled_layers(model, fs, layers)
            for layer in layers:
                rows.append((name, repr(prefix), layer, score(task, fs, embs[layer], tok)))
                print(rows[-1], flush=True)
    print(
        f"\n# Retrieval convention, encoder `{args.encoder}` ({Path(path).relative_to(BUILD.parent)})\n"
    )
    print(f"Command: `python reports/scripts/retrieval_convention.py --encoder {args.encoder} "
          f"--layers {args.layers}`; {time.perf_counter() - t0:.0f} s on this machine.\n")  # fmt: skip
    print("| task | prefix | hidden_states layer | score |\n| --- | --- | --- | --- |")
    for name, prefix, layer, res in rows:
        figure = ", ".join(f"{k} {v:.1f}" for k, v in res.items() if isinstance(v, (int, float)))
        print(f"| {name} | {prefix} | {layer} | {figure} |")


if __name__ == "__main__":
    main()
