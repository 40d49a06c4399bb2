"""AdapterFusion's exact rewrite (models/fusion.py) against the adapters library's own fusion layer."""

import copy

import pytest
import torch
from adapters import AutoAdapterModel
from adapters.composition import Fuse
from transformers import XLMRobertaConfig

from models.fusion import FoldedFusion, fold_fusion_layers


@pytest.fixture(scope="module")
def fused_model():
    torch.manual_seed(0)
    config = XLMRobertaConfig(
        vocab_size=300,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=80,
    )
    model = AutoAdapterModel.from_config(config)
    model.add_adapter("squad", config="seq_bn")
    model.add_adapter("xnli", config="seq_bn")
    model.add_adapter_fusion(Fuse("squad", "xnli"))
    model.add_classification_head("xnli", num_labels=3)
    # Non-trivial fusion weights: the library initialises value to ~identity; randomise everything.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "adapter_fusion_layer" in name or "adapters" in name:
                p.normal_(0, 0.2)
    model.set_active_adapters(Fuse("squad", "xnli"))
    return model.eval()


def test_folded_fusion_matches_library_within_1e4(fused_model):
    ids = torch.randint(3, 300, (3, 17))
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0  # padding in one row
    with torch.inference_mode():
        reference = fused_model(input_ids=ids, attention_mask=mask).logits
    folded = copy.deepcopy(fused_model)
    assert fold_fusion_layers(folded) == 2  # one fusion layer per transformer layer
    assert sum(isinstance(m, FoldedFusion) for m in folded.modules()) == 2
    with torch.inference_mode():
        out = folded(input_ids=ids, attention_mask=mask).logits
    assert reference.abs().max() > 1e-2  # the comparison is not between two zero tensors
    assert torch.max(torch.abs(out - reference)).item() < 1e-4
    assert fold_fusion_layers(folded) == 0  # idempotent


def test_folded_fusion_uses_fewer_weights(fused_model):
    folded = copy.deepcopy(fused_model)
    layer = next(m for m in fused_model.modules() if type(m).__name__ == "BertFusion")
    fold_fusion_layers(folded)
    new = next(m for m in folded.modules() if isinstance(m, FoldedFusion))
    d = 64
    assert sum(p.numel() for p in layer.parameters()) == 3 * d * d + 2 * d  # q, k (with bias), v
    assert sum(p.numel() for p in new.parameters()) == 2 * d * d + d  # folded score (with bias), v
