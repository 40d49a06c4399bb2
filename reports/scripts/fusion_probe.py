"""The zoo's held-out probe forward (zoo/evaluate.py `_TrainingModule`: bf16 autocast, the model as it
trains, AdapterFusion unfolded) under torch.inference_mode against torch.no_grad, side by side, for the
adapter and the AdapterFusion forms at the e5-small shape (random weights: speed does not depend on
their values), one batch of 16 x 64 tokens, alternating passes, the best of 3 each, in process CPU
seconds (so that another job's share of the cores does not count):
    python reports/scripts/fusion_probe.py
Measured 2026-11-30 on the idle machine, two runs: AdapterFusion 11.3 and 11.0 s under inference_mode
against 0.78 and 0.95 s under no_grad (14.4x, 11.5x); the adapter 0.31 / 0.35 s and 0.39 / 0.46 s
(0.88x, 0.86x: no gap). At the probe's 64 windows of up to 384 tokens, adapter-squad's TyDiQA probe
took 11 minutes in the timed zoo build, full's 15 s (its tqdm log, not kept in the repository).
So the probe runs under no_grad."""

import contextlib
import time

import numpy as np
import torch
from adapters import Fuse, XLMRobertaAdapterModel

from models.encoders import E5_SMALL_CONFIG, xlmr_config

torch.manual_seed(0)
ids = torch.from_numpy(np.random.default_rng(0).integers(5, 250000, (16, 64)))
mask = torch.ones_like(ids)


def build(fusion: bool):
    model = XLMRobertaAdapterModel(xlmr_config(E5_SMALL_CONFIG))
    model.add_adapter("xnli", config="seq_bn")
    model.add_classification_head("xnli", num_labels=3)
    if fusion:
        model.add_adapter("squad", config="seq_bn")
        model.add_adapter_fusion(Fuse("squad", "xnli"))
        model.set_active_adapters(Fuse("squad", "xnli"))
    else:
        model.set_active_adapters("xnli")
    model.active_head = "xnli"
    return model.eval()


def cpu_seconds(model, grad_mode) -> float:
    with grad_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        t0 = time.process_time()
        model(input_ids=ids, attention_mask=mask)
        return time.process_time() - t0


modes = {"inference_mode": torch.inference_mode, "no_grad": torch.no_grad}
for name, model in (("adapter", build(False)), ("fusion", build(True))):
    cpu_seconds(model, contextlib.nullcontext)  # warm-up
    seconds = {mode: [] for mode in modes}
    for _ in range(3):
        for mode, grad_mode in modes.items():
            seconds[mode].append(cpu_seconds(model, grad_mode))
    best = {mode: min(s) for mode, s in seconds.items()}
    print(
        f"{name}: inference_mode {best['inference_mode']:.2f} s, no_grad {best['no_grad']:.2f} s (CPU), "
        f"ratio {best['inference_mode'] / best['no_grad']:.2f}x ({torch.get_num_threads()} threads)"
    )
