"""The served torch modules: one fixed signature, forward(input_ids, attention_mask) -> float32 tensor.

They wrap a transformers / adapters model (plain, adapter, fusion or merged: the wrapper does not care)
and turn its output into the task kind's array (tasks/base.py):
  classification  logits                                [B, num_labels]
  qa              stack(start, end logits)              [B, 2, L]
  retrieval       masked mean of hidden_states[layer]   [B, H]  (the mean includes <s> and </s>)
The same modules are exported to ONNX (models/export.py), so they take tensors positionally and call
the wrapped model with keyword arguments (the adapters library needs keywords: docs/zoo.md, "The
adapters library").
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class ClassifierModule(nn.Module):
    """[B, L] ids + mask -> [B, num_labels] float32 logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits.float()


class SpanModule(nn.Module):
    """[B, L] ids + mask -> [B, 2, L] float32 (start logits, end logits)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return torch.stack([out.start_logits, out.end_logits], dim=1).float()


class MeanPoolModule(nn.Module):
    """[B, L] ids + mask -> [B, H] float32 mean of hidden_states[layer] over the attention mask.

    The encoder's layer list is cut to its first `layer` layers (hidden_states[k] is the output of
    layer k, index 0 = embeddings), so the served graph never computes the unused top layers and its
    last hidden state is exactly hidden_states[layer] of the full encoder.
    """

    def __init__(self, encoder: nn.Module, layer: int):
        super().__init__()
        encoder.encoder.layer = encoder.encoder.layer[:layer]
        self.encoder = encoder
        self.layer = layer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
        summed = (hidden * mask).sum(dim=1)  # [B, H]
        return (summed / mask.sum(dim=1).clamp(min=1.0)).float()


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Reference mean pooling (tests, scoring): hidden [B, L, H], mask [B, L] -> [B, H] float32."""
    mask = attention_mask.unsqueeze(-1).to(torch.float32)
    return (hidden.float() * mask).sum(1) / mask.sum(1).clamp(min=1.0)


# task kind -> wrapper(model, pooling_layer)
WRAPPERS: dict[str, Callable[[nn.Module, int], nn.Module]] = {
    "classification": lambda model, layer: ClassifierModule(model),
    "qa": lambda model, layer: SpanModule(model),
    "retrieval": lambda model, layer: MeanPoolModule(model, layer),
}


def wrap(task_kind: str, model: nn.Module, pooling_layer: int) -> nn.Module:
    """The served module for a task kind, in eval mode with gradients off."""
    module = WRAPPERS[task_kind](model, pooling_layer).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module
