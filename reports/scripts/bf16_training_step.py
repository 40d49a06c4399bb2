"""One full fine-tuning step at the e5-small shape (word embeddings frozen, batch 32 x 48 tokens),
fp32 against bf16 autocast, alternating passes, 3 steps each after a warm-up step:
    python reports/scripts/bf16_training_step.py
The recipe's `bf16=True` (zoo/recipe.py, E5_SMALL) rests on this ratio (1.66x and 2.1x in two runs on these AMX cores)."""

import time

import torch
from transformers import XLMRobertaForSequenceClassification

from models.encoders import E5_SMALL_CONFIG, xlmr_config

torch.manual_seed(0)
model = XLMRobertaForSequenceClassification(xlmr_config(E5_SMALL_CONFIG, num_labels=3))
model.roberta.embeddings.word_embeddings.weight.requires_grad_(False)
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
ids = torch.randint(5, 250000, (32, 48))
mask = torch.ones_like(ids)
labels = torch.randint(0, 3, (32,))
model.train()


def step(bf16: bool) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    opt.step()
    opt.zero_grad()


seconds = {False: [], True: []}
for bf16 in (False, True, False, True):
    step(bf16)
    t0 = time.perf_counter()
    for _ in range(3):
        step(bf16)
    seconds[bf16].append((time.perf_counter() - t0) / 3)
fp32, bf16 = min(seconds[False]), min(seconds[True])
print(
    f"fp32 {fp32:.2f} s/step, bf16 {bf16:.2f} s/step, ratio {fp32 / bf16:.2f}x ({torch.get_num_threads()} threads)"
)
