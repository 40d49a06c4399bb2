"""AdapterFusion served efficiently: an exact algebraic rewrite of the adapters library's fusion layer.

The library's `BertFusion` (dynamic config: query, key and value projections, value before softmax,
no temperature, residual after) computes, per token with hidden state h and N adapter outputs v_i:

    s_i = (W_q h + b_q) . (W_k v_i + b_k)             N key projections:   N d^2 multiply-adds
    p   = softmax(s)
    out = sum_i p_i W_v v_i + residual                 N value projections: N d^2

Two identities make it cheaper without changing the result:
  * (W_q h + b_q) . b_k does not depend on i, so it cancels in the softmax; the rest is
    (W_q h + b_q) . W_k v_i = (W_k^T W_q h + W_k^T b_q) . v_i: ONE folded d x d projection of h.
  * W_v has no bias, so sum_i p_i W_v v_i = W_v (sum_i p_i v_i): ONE value projection after the sum.
Per token and layer the fusion drops from (1 + 2N) d^2 to 2 d^2 multiply-adds (5 -> 2 for N = 2).
Outputs agree with the library's to float rounding (tests/test_fusion.py checks 1e-4).
"""

from __future__ import annotations

import torch
from torch import nn


class FoldedFusion(nn.Module):
    """Inference-only drop-in for `adapters.methods.modeling.BertFusion` (same forward signature).

    query: [B, T, d]; key, value: [B, T, N, d] (the stacked adapter outputs); residual: [B, T, d].
    Returns [B, T, d].
    """

    def __init__(self, fusion: nn.Module):
        super().__init__()
        cfg = fusion.config
        if cfg["residual_before"] or cfg["temperature"]:
            raise ValueError("FoldedFusion supports residual_before=False and temperature=False only")
        d = fusion.dense_size
        w = fusion.query.weight.detach().double() if cfg["query"] else torch.eye(d, dtype=torch.float64)
        b = fusion.query.bias.detach().double() if cfg["query"] else torch.zeros(d, dtype=torch.float64)
        k = fusion.key.weight.detach().double() if cfg["key"] else torch.eye(d, dtype=torch.float64)
        dtype = fusion.key.weight.dtype if cfg["key"] else torch.float32
        self.score = nn.Linear(d, d)  # h -> W_k^T (W_q h + b_q), folded in float64 then cast
        self.score.weight.data = (k.T @ w).to(dtype)
        self.score.bias.data = (k.T @ b).to(dtype)
        self.value = fusion.value if cfg["value"] else None  # bias-free: commutes with the sum

    def forward(self, query, key, value, residual, output_attentions: bool = False):
        u = self.score(query)  # [B, T, d]
        probs = torch.softmax(torch.einsum("btd,btnd->btn", u, key), dim=-1)  # [B, T, N]
        context = torch.einsum("btn,btnd->btd", probs, value)  # [B, T, d]
        if self.value is not None:
            context = self.value(context)
        context = context + residual
        return (context, probs.detach().cpu().numpy()) if output_attentions else context


def fold_fusion_layers(model: nn.Module) -> int:
    """Replace every AdapterFusion layer of `model` in place by its FoldedFusion; returns how many.

    Call on a model in eval mode that will only be used for inference (the folded layer has no
    dropout and its parameters are not the library's, so it cannot be trained or saved as a fusion).
    """
    replaced = 0
    for module in model.modules():
        layers = getattr(module, "adapter_fusion_layer", None)
        if isinstance(layers, nn.ModuleDict):
            for name in list(layers.keys()):
                if not isinstance(layers[name], FoldedFusion):
                    layers[name] = FoldedFusion(layers[name])
                    replaced += 1
    return replaced
