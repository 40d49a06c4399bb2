"""Adapter models served without the adapters library's per-layer dispatch (exact, inference only).

`XLMRobertaAdapterModel` wraps every layer for every method the library supports, whatever is
loaded. Per layer and forward pass, with one bottleneck adapter loaded, it:
  * runs five of the six Linears (Q, K, V, FFN in and out) as LoRALinears that look up the active
    LoRA setup first;
  * copies Q, K and V in self-attention (`match_attn_matrices_for_parallel` repeats them with
    factor 1, a full copy) and consults prefix tuning;
  * sends each residual block through the composition machinery (state tuples, setup lookups);
  * calls a ReFT forward hook and a Parallel-composition pre-hook.
None of it changes the result of the setups the harness serves. On the tiny shape it is about half of
what the adapter costs over full fine-tuning (11.8% -> 5.6% of Offline throughput); at the base
shape, where the matmuls dominate, it is within noise (reports/speed.md, parts d and f: the output
of a retired command, `git show e226239:research/speed.py`).

`strip_adapter_dispatch(model)` rebinds, per module instance, what is provably a no-op for the
model's active setup to the plain transformers code:
  LoRALinear without LoRA modules                    -> nn.Linear.forward
  self-attention without prefix tuning               -> the transformers class's forward
  residual block without bottleneck adapters         -> the transformers class's forward
  residual block with the active seq_bn adapter only -> LN(x + up(down(LN(x + r))) + r), the
                                                        Pfeiffer block the library computes
  ReFT hooks without ReFT units, Parallel pre-hooks  -> removed (the setup is not Parallel)
AdapterFusion blocks and any other configuration keep the library's code. Outputs equal the
library's (tests/test_dispatch_free.py). The model can no longer be trained or have its setup changed.
"""

from __future__ import annotations

import types

import torch
from adapters.composition import Fuse
from adapters.methods.bottleneck import BottleneckLayer
from adapters.methods.lora import LoRALinear
from adapters.methods.prefix_tuning import PrefixTuningLayer
from adapters.methods.prompt_tuning import PromptTuningLayer
from adapters.methods.reft import ReftLayer
from adapters.methods.reft import hook_fn as reft_hook
from torch import nn

# Pfeiffer (seq_bn) flags this module reproduces exactly; any other value keeps the library path.
SEQ_BN_FLAGS = {
    "original_ln_before": True,
    "original_ln_after": True,
    "residual_before_ln": True,
    "add_layer_norm_after": False,
    "use_gating": False,
}


def _transformers_forward(module: nn.Module):
    """forward of the first transformers class in module's MRO (the one the library subclassed)."""
    cls = next(c for c in type(module).__mro__ if c.__module__.startswith("transformers."))
    return types.MethodType(cls.forward, module)


def _is_seq_bn(adapter: nn.Module) -> bool:
    return not hasattr(adapter, "DropPath") and all(
        getattr(adapter, flag, None) == value for flag, value in SEQ_BN_FLAGS.items()
    )


def _seq_bn_forward(block: nn.Module, adapter: nn.Module):
    """XLMRobertaOutput / SelfOutput forward with one Pfeiffer adapter (dropouts: eval, identity)."""

    def forward(hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        x = block.dense(hidden_states)
        up = adapter.adapter_up(adapter.adapter_down(block.LayerNorm(x + input_tensor)))
        return block.LayerNorm(x + up * adapter.scaling + input_tensor)

    return forward


def strip_adapter_dispatch(model: nn.Module) -> dict[str, int]:
    """Rebind `model`'s no-op adapter dispatch to plain code, in place; returns counts per kind.

    `model` is an XLMRobertaAdapterModel (or its base model) in eval mode, its adapter setup
    activated. Refuses a model in training mode and any Parallel / BatchSplit / Stack-of-many
    setup (those use the dispatch)."""
    if model.training:
        raise ValueError("strip_adapter_dispatch: the model is in training mode (call .eval() first)")
    setup = model.active_adapters
    if setup is None:
        raise ValueError("strip_adapter_dispatch: no adapter setup is active")
    if not isinstance(setup, Fuse) and len(setup) != 1:
        raise ValueError(f"strip_adapter_dispatch: setup {setup} is not one adapter or one Fuse")
    single = None if isinstance(setup, Fuse) else setup.first()
    prompts = any(m.prompt_tunings for m in model.modules() if isinstance(m, PromptTuningLayer))
    counts = dict.fromkeys(("linear", "attention", "plain_block", "seq_bn_block", "hooks"), 0)
    for module in model.modules():
        if isinstance(module, LoRALinear) and isinstance(module, nn.Linear):
            if not module.loras and not module.fan_in_fan_out:
                module.forward = types.MethodType(nn.Linear.forward, module)
                counts["linear"] += 1
        elif isinstance(getattr(module, "prefix_tuning", None), PrefixTuningLayer):
            if not module.prefix_tuning.prefixes and not prompts:  # prompts would extend the mask
                module.forward = _transformers_forward(module)
                counts["attention"] += 1
        elif isinstance(module, BottleneckLayer) and not module.is_layer_hooked:  # a residual block
            names = list(module.adapters)
            if not names:
                module.forward = _transformers_forward(module)
                counts["plain_block"] += 1
            elif names == [single] and _is_seq_bn(module.adapters[single]):
                module.forward = _seq_bn_forward(module, module.adapters[single])
                counts["seq_bn_block"] += 1
        if isinstance(getattr(module, "reft_layer", None), ReftLayer) and not module.reft_layer.refts:
            counts["hooks"] += _drop_hooks(module._forward_hooks, lambda h: h is reft_hook)
        counts["hooks"] += _drop_hooks(module._forward_pre_hooks, _is_parallel_hook)
    return counts


def _is_parallel_hook(hook) -> bool:
    return "_set_layer_hook_for_parallel" in getattr(hook, "__qualname__", "")


def _drop_hooks(hooks: dict, match) -> int:
    """Remove the hooks `match` selects from a module's hook dict; returns how many."""
    keys = [k for k, h in hooks.items() if match(h)]
    for k in keys:
        del hooks[k]
    return len(keys)
