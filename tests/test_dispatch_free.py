"""models/dispatch_free.py: adapter models without the library's no-op dispatch give the library's
outputs."""

import copy

import pytest
import torch
from adapters import AutoAdapterModel
from adapters.composition import Fuse, Parallel
from transformers import XLMRobertaConfig

from models.dispatch_free import strip_adapter_dispatch
from models.loaders import activate

LAYERS = 2


def _model(adapters: dict[str, str], setup, head: str | None = "cls"):
    """A 2-layer adapter model; adapter, fusion and head weights randomised (the library's init is
    ~identity)."""
    torch.manual_seed(0)
    config = XLMRobertaConfig(
        vocab_size=300,
        hidden_size=64,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=80,
    )
    model = AutoAdapterModel.from_config(config)
    for name, cfg in adapters.items():
        model.add_adapter(name, config=cfg)
    if isinstance(setup, Fuse):
        model.add_adapter_fusion(setup)
    if head == "cls":
        model.add_classification_head("h", num_labels=3)
    elif head == "qa":
        model.add_qa_head("h")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "adapter" in name or "heads" in name:
                p.normal_(0, 0.2)
    activate(model, setup)
    return model.eval()


def _outputs(model):
    ids = torch.randint(3, 300, (3, 17), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # padding in one row
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask)
    return torch.cat([v.flatten() for v in out.values() if torch.is_tensor(v)])


@pytest.mark.parametrize("head", ["cls", "qa"])
def test_single_seq_bn_adapter_matches_library_exactly(head):
    library = _model({"a": "seq_bn"}, "a", head)
    lean = copy.deepcopy(library)
    counts = strip_adapter_dispatch(lean)
    # per layer: the 5 LoRA-wrapped Linears (Q, K, V, FFN in and out), the self-attention, the
    # attention-output block (plain), the FFN-output block (Pfeiffer), the ReFT and Parallel hooks
    assert counts == {"linear": 5 * LAYERS, "attention": LAYERS, "plain_block": LAYERS,
                      "seq_bn_block": LAYERS, "hooks": 2 * LAYERS}  # fmt: skip
    reference, out = _outputs(library), _outputs(lean)
    assert reference.abs().max() > 0.1  # the adapters change the outputs: not a comparison of zeros
    assert torch.max(torch.abs(out - reference)).item() < 1e-6


def test_the_adapter_matters_so_the_rewrite_is_not_bypassing_it():
    """Zeroing the adapter's up-projection changes the lean model's output: the rewrite runs it."""
    lean = _model({"a": "seq_bn"}, "a")
    strip_adapter_dispatch(lean)
    before = _outputs(lean)
    with torch.no_grad():
        for name, p in lean.named_parameters():
            if "adapter_up" in name:
                p.zero_()
    assert torch.max(torch.abs(_outputs(lean) - before)).item() > 1e-2


def test_fusion_keeps_library_blocks_and_matches():
    library = _model({"a": "seq_bn", "b": "seq_bn"}, Fuse("a", "b"))
    lean = copy.deepcopy(library)
    counts = strip_adapter_dispatch(lean)
    assert (
        counts["seq_bn_block"] == 0 and counts["plain_block"] == LAYERS and counts["attention"] == LAYERS
    )
    assert torch.max(torch.abs(_outputs(lean) - _outputs(library))).item() < 1e-6


@pytest.mark.parametrize(
    ("config", "kept"),
    [("double_seq_bn", "seq_bn_block"), ("prompt_tuning", "attention"), ("lora", "linear")],
)
def test_other_adapter_methods_keep_the_library_path_where_they_act(config, kept):
    """Houlsby adapters (another LayerNorm placement), prompt tuning (extends the attention mask)
    and unmerged LoRA (inside the Linears) keep the library's code where they act; outputs match."""
    library = _model({"a": config}, "a")
    lean = copy.deepcopy(library)
    counts = strip_adapter_dispatch(lean)
    full = strip_adapter_dispatch(copy.deepcopy(_model({"a": "seq_bn"}, "a")))
    assert counts[kept] < full[kept]
    assert torch.max(torch.abs(_outputs(lean) - _outputs(library))).item() < 1e-6


def test_refuses_training_mode_and_parallel_setups():
    model = _model({"a": "seq_bn", "b": "seq_bn"}, Parallel("a", "b"), head=None)
    with pytest.raises(ValueError, match="not one adapter or one Fuse"):
        strip_adapter_dispatch(model)
    single = _model({"a": "seq_bn"}, "a").train()
    with pytest.raises(ValueError, match="training mode"):
        strip_adapter_dispatch(single)
