"""One process serving several tasks (`--task xnli+pawsx+tydiqa`, docs/multitask.md): the serving forms.

`resolve_tasks` resolves MODEL= for every task of a list into a `MultiServed`; `MultiTaskBackend` runs
mixed batches: predict(input_ids, attention_mask, tasks) with tasks int64 [B] (each row's index in the
task list) returns a `tasks.mixed.MixedOutput`, one part per task present in that task kind's encoding.

Forms (by the MODEL's serving form, models/spec.py):
  plain, merged  one whole model per task, all resident (full fine-tuning; merged LoRA = one merged
                 copy per task). A mixed batch runs as one sub-batch per task present (`PerTaskForm`).
  adapter        ONE frozen backbone, every task's bottleneck adapter and head (`MixedAdapterForm`):
                 a mixed batch goes through the backbone once; in each adapter layer every row takes
                 its own task's adapter, by a batched matmul over per-row gathered weights
                 (`MixedBottleneck`), then each task's rows go through that task's head.
  fusion         one model per task whose parameters equal to the first task's are tied to it (the
                 frozen backbone and the shared SQuAD adapter are stored once; each task keeps its
                 fusion layer, target adapter and head); sub-batches per task as for plain.
  lora           (a LoRA model with --lora_form unmerged) ONE backbone, every task's low-rank
                 query/value updates and head (`MixedLoRAForm`): mixed batches as for adapter, each
                 row through its own task's update (`MixedLoRALinear`). The zoo stores LoRA merged,
                 so each task's update is read back from its merged weights: their difference from
                 the base they were trained on (the SQuAD stage), factorised at LoRA's rank.
Synthetic tasks (`xnli@K`): K task modules of the real task's shapes, randomly initialised (adapter
form: the adapters library's own initialisation; lora: random updates of LoRA's rank on the backbone
real tasks would share, and copies of the real task's head; per-task forms: K separate copies of the
model), model_kind "random": accuracy runs refuse them.
ONNX Runtime serves the per-task forms (plain, merged, fusion) with one session per task
(models/onnx_backend.py `MultiTaskOnnxBackend`); the mixed-batch forms run here only.
Adding a task to a built form (the next batch may hold its rows): `PerTaskForm.add_task` (a whole
model), `MixedAdapterForm.add_task` (a saved or new adapter and head), `MixedLoRAForm.add_task` (an
update, e.g. `MixedLoRAForm.update_of` a merged checkpoint or `random_lora_update`, and a head).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from adapters import XLMRobertaAdapterModel
from adapters.methods.bottleneck import BottleneckLayer
from torch import nn
from transformers import AutoModel
from transformers.modeling_outputs import BaseModelOutput

from models.base import Backend, BackendOptions
from models.dispatch_free import SEQ_BN_FLAGS, strip_adapter_dispatch
from models.loaders import ServedModel, _config, activate, add_head, base_source, loading
from models.pytorch_backend import serial_intra_op
from models.registry import MODELS, resolve, serving_form
from models.spec import LORA_FORMS, LORA_RANK, MIXED_BATCH_FORMS
from models.zoo_layout import build_command
from tasks.mixed import MixedOutput, TaskList, group_rows


@dataclass(frozen=True)
class MultiServed:
    """A resolved (model, task list, encoder, weights): one ServedModel per real task, in list order,
    and `synthetic` = K for TASK@K (then `models` holds the one real task)."""

    models: tuple[ServedModel, ...]
    synthetic: int = 0
    lora_form: str = "merged"

    @property
    def name(self) -> str:
        return self.models[0].name

    @property
    def form(self) -> str:
        """The serving form of the model's trained targets (`serving_form`)."""
        return serving_form(self.name, self.lora_form)

    @property
    def model_kind(self) -> str:
        if self.synthetic:
            return "random"
        return self.models[0].model_kind

    @property
    def task_names(self) -> list[str]:
        return TaskList(tuple(m.task for m in self.models), self.synthetic).task_names

    @property
    def kinds(self) -> list[str]:
        """The task kind of every served task (synthetic tasks: the real task's)."""
        return [m.task_kind for m in self.models] * (self.synthetic or 1)

    @property
    def checkpoint(self) -> Path | None:
        return self.models[0].checkpoint

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for run_config.json: the form and every task's own description."""
        return {
            "model": self.name,
            "tasks": self.task_names,
            "form": self.form,
            "mixed_batches": self.form in MIXED_BATCH_FORMS,
            "synthetic": self.synthetic,
            "model_kind": self.model_kind,
            "per_task": [m.describe() for m in self.models],
        }

    def check_for_accuracy(self) -> None:
        """ValueError for synthetic tasks or random weights: nothing to score."""
        if self.synthetic:
            raise ValueError(
                f"{self.synthetic} synthetic tasks are randomly initialised (speed studies only): an "
                "accuracy run needs real tasks, e.g. --task xnli+pawsx+tydiqa"
            )
        for m in self.models:
            m.check_for_accuracy()


def resolve_tasks(
    model: str,
    task_list: TaskList,
    encoder: str = "tiny",
    weights: str | None = None,
    models_dir: str | Path | None = None,
    pooling_layer: int | None = None,
    lora_form: str = "merged",
) -> MultiServed:
    """Resolve MODEL=`model` for every task of `task_list` (weights: None = the zoo, or "random").
    ValueError (one line naming the fix) for a missing checkpoint, tasks whose heads cannot share
    the form's mixed batches, or `lora_form` "unmerged" for a model not trained with LoRA."""
    if lora_form not in LORA_FORMS:
        raise ValueError(f"lora_form {lora_form!r} is not one of {', '.join(LORA_FORMS)}")
    learning = MODELS[model].learning if model in MODELS else None  # resolve names an unknown one
    if lora_form == "unmerged" and learning != "lora":
        raise ValueError(
            f"--lora_form unmerged serves a LoRA model (lora-squad); {model!r} is trained with "
            f"{learning}: drop the flag"
        )
    models = []
    for name in task_list.names:
        try:
            models.append(resolve(model, name, encoder, weights, models_dir, pooling_layer))
        except FileNotFoundError as e:
            raise ValueError(
                f"model {model!r} has no checkpoint for task {name!r} ({e}); build it first: "
                f"{build_command(model, name, encoder, None, models_dir)}, "
                "or drop the task from the list"
            ) from None
    multi = MultiServed(tuple(models), task_list.synthetic, lora_form)
    check_form(multi)
    return multi


def check_form(multi: MultiServed) -> None:
    """ValueError when the tasks cannot be served together in the model's form: the mixed-batch
    forms need every task's rows to leave the backbone's last layer into a head, which a retrieval
    task (a plain encoder cut at its pooling layer) does not."""
    if multi.form not in MIXED_BATCH_FORMS:
        return
    retrieval = [m.task for m in multi.models if m.task_kind == "retrieval"]
    if retrieval:  # alone too: a synthetic retrieval list has no head to stack
        trained = [m.task for m in multi.models if m.task_kind != "retrieval"]
        if not trained:
            raise ValueError(
                f"model {multi.name!r} serves {retrieval[0]} with the plain encoder (no adapter, no "
                f"head): nothing to serve per task; run --task {retrieval[0]}, or use --model full"
            )
        raise ValueError(
            f"model {multi.name!r} serves {', '.join(trained)} in mixed batches through per-task "
            f"{'adapters' if multi.form == 'adapter' else 'LoRA updates'} and heads on the last "
            f"layer, but {', '.join(retrieval)} pools an intermediate layer of the plain encoder: "
            f"their rows cannot share a batch. Run {'+'.join(retrieval)} on its own, or use a "
            f"per-task form (--model full, or lora-squad served merged) for this list"
        )


# --- the mixed-batch adapter layer ----------------------------------------------------------------
class MixedBottleneck(nn.Module):
    """K bottleneck adapters stacked, applied row by row: row b goes through adapter tasks[b].

    x [B, L, H] -> up(act(down(x))) * scaling [B, L, H], with every row's down/up weights gathered
    from the stacks ([K, H, r], [K, r, H]) and applied by one batched matmul each (torch.baddbmm):
    the op count does not grow with K, only the gathered weights (B x 2Hr floats per layer).
    A task with no adapter in this layer is a zero adapter (up = 0 exactly: the plain block)."""

    def __init__(self, adapters: list[nn.Module | None]):
        super().__init__()
        real = [a for a in adapters if a is not None]
        down = real[0].adapter_down[0]
        self.shape = (down.in_features, down.out_features)  # (H, r)
        self.act = real[0].adapter_down[1]
        rows = [self._row(a) for a in adapters]
        for i, name in enumerate(("down_w", "down_b", "up_w", "up_b")):
            stack = torch.stack([row[i] for row in rows])
            setattr(self, name, nn.Parameter(stack, requires_grad=False))

    def _row(self, adapter: nn.Module | None) -> tuple[torch.Tensor, ...]:
        """One task's (down_w [H, r], down_b [1, r], up_w [r, H], up_b [1, H]), the scaling folded
        into the up projection; zeros for None."""
        h, r = self.shape
        if adapter is None:
            return torch.zeros(h, r), torch.zeros(1, r), torch.zeros(r, h), torch.zeros(1, h)
        down, up = adapter.adapter_down[0], adapter.adapter_up
        if (down.in_features, down.out_features) != self.shape:
            raise ValueError("adapters of one layer differ in shape: they cannot be stacked")
        if repr(adapter.adapter_down[1]) != repr(self.act):
            raise ValueError(
                f"adapters of one layer use different activations: {adapter.adapter_down[1]}"
            )
        s = float(adapter.scaling)
        with torch.no_grad():
            return down.weight.T, down.bias[None], up.weight.T * s, up.bias[None] * s

    def append(self, adapter: nn.Module | None) -> None:
        """One more task (row K of every stack): its adapter, or None (zero)."""
        row = self._row(adapter)
        for i, name in enumerate(("down_w", "down_b", "up_w", "up_b")):
            grown = torch.cat([getattr(self, name).data, row[i][None].to(getattr(self, name))])
            setattr(self, name, nn.Parameter(grown, requires_grad=False))

    def forward(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        h = self.act(torch.baddbmm(self.down_b[rows], x, self.down_w[rows]))  # [B, L, r]
        return torch.baddbmm(self.up_b[rows], h, self.up_w[rows])  # [B, L, H]


class RowTasks:
    """The current batch's row -> task tensor, shared by every mixed layer of one backbone (set by
    the backend before each forward; one backend instance serves one thread at a time)."""

    rows: torch.Tensor | None = None


def _mixed_block_forward(block: nn.Module, bank: MixedBottleneck, current: RowTasks):
    """XLMRobertaOutput / SelfOutput forward with per-row Pfeiffer adapters (dropouts: eval)."""

    def forward(hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        x = block.dense(hidden_states)
        up = bank(block.LayerNorm(x + input_tensor), current.rows)
        return block.LayerNorm(x + up + input_tensor)

    return forward


def _is_seq_bn(adapter: nn.Module) -> bool:
    return all(getattr(adapter, f, None) == v for f, v in SEQ_BN_FLAGS.items())


class MixedBatchForm(nn.Module):
    """What the mixed-batch forms share: one backbone pass with the batch's row -> task tensor set
    for their mixed layers (`current`), then each task's rows through that task's head
    (`head_logits`). forward(ids, mask, tasks) -> list of (rows, kind, out tensor)."""

    backbone: nn.Module
    current: RowTasks
    kinds: list[str]

    def head_logits(self, k: int, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, tasks: torch.Tensor):
        self.current.rows = tasks
        try:
            seq = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        finally:
            self.current.rows = None
        parts = []
        for k, rows, _ in group_rows(tasks, attention_mask):
            index = torch.tensor(rows, device=tasks.device)
            logits = self.head_logits(k, seq[index], attention_mask[index])
            parts.append((index, self.kinds[k], logits.float()))
        return parts


class MixedAdapterForm(MixedBatchForm):
    """One XLMRobertaAdapterModel holding every task's adapter and head; its adapter blocks rebound
    to `MixedBottleneck` layers (the library's per-task adapter modules are then dropped: the stacks
    hold the weights)."""

    def __init__(self, model: nn.Module, names: list[str], kinds: list[str]):
        super().__init__()
        self.names, self.kinds = list(names), list(kinds)
        self.current = RowTasks()
        self.banks = nn.ModuleList()
        self.blocks: list[tuple[nn.Module, MixedBottleneck]] = []
        for module in model.modules():
            if not isinstance(module, BottleneckLayer) or not module.adapters:
                continue
            adapters = [module.adapters[n] if n in module.adapters else None for n in names]
            bad = [
                n for n, a in zip(names, adapters, strict=True) if a is not None and not _is_seq_bn(a)
            ]
            if bad:
                raise ValueError(f"adapters {bad} are not seq_bn bottleneck adapters: no mixed batches")
            bank = MixedBottleneck(adapters)
            self.banks.append(bank)
            self.blocks.append((module, bank))
            module.forward = _mixed_block_forward(module, bank, self.current)
            module.adapters = nn.ModuleDict()  # the stacks hold the weights now
        self.model = model  # the library's model: load_adapter adds tasks (add_task)
        self.backbone = model.base_model
        self.heads = nn.ModuleDict({str(k): model.heads[n] for k, n in enumerate(names)})

    def add_task(self, folder: Path | None, name: str, kind: str, num_labels: int = 0) -> None:
        """Serve one more task: its adapter and head loaded from a `save_adapter` folder as `name`
        (None: a new seq_bn adapter and head, randomly initialised), appended to every stack (the
        next batch may hold its rows)."""
        if folder is None:
            self.model.add_adapter(name, config="seq_bn")
            add_head(self.model, kind, name, num_labels)
        else:
            self.model.load_adapter(str(folder), load_as=name, with_head=True)
        for module, bank in self.blocks:
            bank.append(module.adapters[name] if name in module.adapters else None)
            module.adapters = nn.ModuleDict()
        self.heads[str(len(self.names))] = self.model.heads[name]
        self.names.append(name)
        self.kinds.append(kind)

    def head_logits(self, k: int, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.heads[str(k)](
            BaseModelOutput(last_hidden_state=seq), attention_mask=mask, return_dict=True
        )
        if self.kinds[k] == "qa":
            return torch.stack([out.start_logits, out.end_logits], dim=1)
        return out.logits


def load_mixed_adapter_model(multi: MultiServed, attn: str = "sdpa") -> MixedAdapterForm:
    """The adapter form of `multi`: the frozen base encoder once, every task's adapter and head
    loaded into it (ValueError when the tasks' adapters were trained on different encoders)."""

    first = multi.models[0]
    if multi.synthetic or first.checkpoint is None:
        torch.manual_seed(0)
        model = XLMRobertaAdapterModel(_config(first, attn))
        names = [f"synthetic{k}" for k in range(multi.synthetic)] or [m.task for m in multi.models]
        for name in names:
            model.add_adapter(name, config="seq_bn")
            add_head(model, first.task_kind, name, first.num_labels)
        kinds = [first.task_kind] * len(names)
    else:
        bases = {str(Path(base_source(Path(m.checkpoint))).resolve()) for m in multi.models}
        if len(bases) > 1:
            raise ValueError(
                f"the tasks' adapters sit on different base encoders ({sorted(bases)}): "
                "one backbone cannot serve them; rebuild them on one encoder"
            )
        ckpt = Path(first.checkpoint)
        model = loading(
            ckpt,
            "model",
            lambda: XLMRobertaAdapterModel.from_pretrained(base_source(ckpt), attn_implementation=attn),
        )
        for m in multi.models:
            folder = Path(m.checkpoint) / "adapters" / m.task
            loading(m.checkpoint, "adapter", lambda f=folder: model.load_adapter(str(f), with_head=True))
        names, kinds = [m.task for m in multi.models], [m.task_kind for m in multi.models]
    activate(model, names[0])
    model.eval()
    strip_adapter_dispatch(model)  # the no-op dispatch (LoRA-ready Linears, Q/K/V copies, hooks)
    form = MixedAdapterForm(model, names, kinds).eval()
    for p in form.parameters():
        p.requires_grad_(False)
    return form


# --- the mixed-batch LoRA layer -------------------------------------------------------------------
LORA_TOLERANCE = 1e-5  # largest |delta - A B| a merged update may leave: float rounding, not training
LORA_MATRICES = ("query", "value")  # the adapters library's LoRA default: attention's Q and V


class MixedLoRALinear(nn.Module):
    """A frozen Linear plus K low-rank updates applied row by row: row b of x [B, L, in] gives
    base(x_b) + x_b A[t_b] B[t_b], with A [K, in, R] and B [K, R, out] (LoRA's scaling folded into
    B) gathered per row and applied by two batched matmuls whatever K. A zero row is the base."""

    def __init__(self, base: nn.Linear, a: torch.Tensor, b: torch.Tensor, current: RowTasks):
        super().__init__()
        self.base = base
        self.a = nn.Parameter(a, requires_grad=False)
        self.b = nn.Parameter(b, requires_grad=False)
        self.current = current

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def check(self, a: torch.Tensor, b: torch.Tensor, where: str) -> None:
        """ValueError naming `where` unless A [in, R] and B [R, out] fit the stacks."""
        if a.shape != self.a.shape[1:] or b.shape != self.b.shape[1:]:
            raise ValueError(
                f"{where}: an update of shapes {tuple(a.shape)} and {tuple(b.shape)} does not stack "
                f"onto A {tuple(self.a.shape)} and B {tuple(self.b.shape)}"
            )

    def append(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """One more task (row K of both stacks): A [in, R], B [R, out] (`check` them first)."""
        for name, row in (("a", a), ("b", b)):
            stack = getattr(self, name)
            grown = torch.cat([stack.data, row[None].to(stack)])
            setattr(self, name, nn.Parameter(grown, requires_grad=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.current.rows
        return torch.baddbmm(self.base(x), torch.bmm(x, self.a[rows]), self.b[rows])


def low_rank_update(delta: torch.Tensor, rank: int, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(A [in, rank], B [rank, out]) with x A B = x delta^T, delta being a Linear weight's change
    [out, in]: its truncated SVD. ValueError naming `where` when the rest exceeds LORA_TOLERANCE
    (the change is not of rank <= `rank`: not a LoRA update of that base)."""
    u, sv, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    a, b = vh[:rank].T * sv[:rank], u[:, :rank].T
    rest = float((delta.double() - (a @ b).T).abs().max())
    if rest > LORA_TOLERANCE:
        raise ValueError(
            f"{where} differs from the base by more than a rank-{rank} update (residual {rest:.2g} > "
            f"{LORA_TOLERANCE:g}): not a LoRA of that base; serve the list merged"
        )
    return a.float(), b.float()


def task_update(
    reference: dict[str, torch.Tensor], targets: set[str], merged: nn.Module, rank: int, task: str
) -> dict[str, tuple]:
    """One task's update read back from its merged backbone: for every target Linear (`targets`,
    the names `_lora_linears` gives), `low_rank_update` of its weight's difference from the base's
    (`reference`: the base backbone's parameters by name) at `rank`. ValueError when any other
    parameter differs from the base's (not a LoRA of that base)."""
    params = dict(merged.named_parameters())
    update = {}
    for name, ref in reference.items():
        layer = name.rsplit(".", 1)[0]
        mine = params[name].data
        ref = ref.data.to(mine.device)
        if layer in targets and name.endswith(".weight"):
            update[layer] = low_rank_update(mine - ref, rank, f"task {task}'s {layer}")
        elif not torch.equal(mine, ref):
            raise ValueError(
                f"task {task}'s {name} differs from the base's: LoRA changes only "
                f"{' and '.join(LORA_MATRICES)} weights; serve the list merged"
            )
    return update


def _lora_linears(backbone: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """(name, owning module, attribute) of every LoRA target of an XLM-R backbone: its attention's
    query and value Linears, or the `MixedLoRALinear`s that replaced them."""
    found = []
    for name, module in backbone.named_modules():
        if not name.endswith("attention.self"):
            continue
        for attr in LORA_MATRICES:
            if isinstance(getattr(module, attr, None), nn.Linear | MixedLoRALinear):
                found.append((f"{name}.{attr}", module, attr))
    return found


def _head(model: nn.Module, kind: str) -> nn.Module:
    """A plain task model's head (classification: `classifier`, qa: `qa_outputs`)."""
    return model.classifier if kind == "classification" else model.qa_outputs


class MixedLoRAForm(MixedBatchForm):
    """One XLM-R backbone whose LoRA target Linears are `MixedLoRALinear`s holding every task's
    update (`layers`, by the Linear's name), and every task's head."""

    def __init__(
        self,
        backbone: nn.Module,
        updates: list[dict[str, tuple]],
        heads: list[nn.Module],
        kinds: list[str],
    ):
        super().__init__()
        self.kinds = list(kinds)
        self.current = RowTasks()
        self.backbone = backbone
        self.layers: dict[str, MixedLoRALinear] = {}
        for name, module, attr in _lora_linears(backbone):
            a = torch.stack([u[name][0] for u in updates])
            b = torch.stack([u[name][1] for u in updates])
            self.layers[name] = MixedLoRALinear(getattr(module, attr), a, b, self.current)
            setattr(module, attr, self.layers[name])
        self.heads = nn.ModuleList(heads)

    @property
    def rank(self) -> int:
        """The rank R of the stacked updates (A [K, in, R])."""
        return next(iter(self.layers.values())).a.shape[-1]

    def add_task(self, update: dict[str, tuple], head: nn.Module, kind: str) -> None:
        """Serve one more task: its update (A [in, R], B [R, out] of every target Linear, as
        `random_lora_update` and `update_of` give them) appended to every stack, and its head (the
        next batch may hold its rows). ValueError, nothing changed, for an update that does not
        cover every target or does not fit the stacks."""
        targets = set(self.layers)
        if set(update) != targets:
            missing, unknown = sorted(targets - set(update)), sorted(set(update) - targets)
            raise ValueError(f"an update names every target: missing {missing}, unknown {unknown}")
        for name, layer in self.layers.items():
            layer.check(*update[name], name)
        for name, layer in self.layers.items():
            layer.append(*update[name])
        device = next(iter(self.layers.values())).a.device
        self.heads.append(head.to(device).eval())
        self.kinds.append(kind)

    def frozen_parameters(self) -> dict[str, torch.Tensor]:
        """The backbone's frozen parameters by their names in the plain backbone (a target's base
        Linear weight as `<name>.weight`); the stacks left out."""
        out = {}
        for name, p in self.backbone.named_parameters():
            owner, leaf = name.rsplit(".", 1)
            if owner in self.layers:  # a stack
                continue
            target = owner.removesuffix(".base")
            out[f"{target}.{leaf}" if target in self.layers else name] = p
        return out

    def update_of(self, merged: nn.Module, task: str) -> dict[str, tuple]:
        """A task's update read back from its merged backbone against this form's frozen backbone,
        at the stacks' rank (`task_update`): what `add_task` takes for a task of the zoo."""
        return task_update(self.frozen_parameters(), set(self.layers), merged, self.rank, task)

    def head_logits(self, k: int, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.heads[k](seq)
        if self.kinds[k] == "qa":  # [n, L, 2] -> [n, 2, L], as the served SpanModule
            return logits.permute(0, 2, 1)
        return logits


def random_lora_update(backbone: nn.Module, rank: int, generator: torch.Generator) -> dict[str, tuple]:
    """A synthetic task's update of every target Linear of `backbone` (plain, or a `MixedLoRAForm`'s):
    A, B with N(0, 0.02) entries."""
    update = {}
    for name, module, attr in _lora_linears(backbone):
        linear = getattr(module, attr)
        a = torch.randn(linear.in_features, rank, generator=generator) * 0.02
        b = torch.randn(rank, linear.out_features, generator=generator) * 0.02
        update[name] = (a, b)
    return update


def one_more_lora_task(form: MixedLoRAForm, served: ServedModel, seed: int) -> tuple[dict, nn.Module]:
    """(update, head) of one more task of `served`'s kind for `form.add_task`: with a checkpoint,
    `served`'s own (its merged model loaded, its update read back against the form's backbone, its
    head); random weights: a random update at the form's rank (`seed`) and a copy of task 0's head."""
    if served.checkpoint is None:
        update = random_lora_update(form.backbone, form.rank, torch.Generator().manual_seed(seed))
        return update, copy.deepcopy(form.heads[0])
    model = served.torch_module().model
    return form.update_of(model.base_model, served.task), _head(model, served.task_kind)


def _lora_base(first: ServedModel, plain: nn.Module, attn: str) -> tuple[nn.Module, int]:
    """The backbone the tasks' updates apply to and their rank: the stage the model's LoRA was trained
    on (its intermediate stage beside the first task's checkpoint; for a model without one, `lora`,
    the zoo's pretrained encoder) at LORA_RANK, else the first task's own backbone (`plain`'s) at
    twice the rank (each task's B_t A_t - B_1 A_1)."""
    model_dir = Path(first.checkpoint).parent
    inter = first.spec.intermediate
    stage = model_dir / inter if inter else model_dir.parent / "encoder"
    if (stage / "config.json").is_file():
        base = loading(
            stage,
            "model",
            lambda: AutoModel.from_pretrained(
                str(stage), attn_implementation=attn, add_pooling_layer=False
            ),
        )
        return base, LORA_RANK
    return plain.base_model, 2 * LORA_RANK


def load_mixed_lora_model(multi: MultiServed, attn: str = "sdpa") -> MixedLoRAForm:
    """The unmerged LoRA form of `multi`. Real tasks: the backbone of the stage their LoRA was
    trained on (`_lora_base`), each task's update factorised from its merged weights (`task_update`;
    ValueError when another parameter of the backbone differs), each task's head. Synthetic tasks:
    that backbone, K random updates of LORA_RANK and copies of the real task's head; random
    weights: the (one seed's) backbone, one random update per task and each task's own head."""
    first = multi.models[0]
    plain = [m.torch_module(attn_implementation=attn).model for m in multi.models]
    kinds = [m.task_kind for m in multi.models]
    heads = [_head(model, kind) for model, kind in zip(plain, kinds, strict=True)]
    if first.checkpoint is None:  # random weights: every task's backbone is the same seed's
        base, rank = plain[0].base_model, LORA_RANK
    else:
        base, rank = _lora_base(first, plain[0], attn)
    if multi.synthetic or first.checkpoint is None:
        if multi.synthetic:
            kinds = [first.task_kind] * multi.synthetic
            heads = [copy.deepcopy(heads[0]) for _ in kinds]
        gen = torch.Generator().manual_seed(0)
        updates = [random_lora_update(base, LORA_RANK, gen) for _ in kinds]
    else:
        reference, targets = dict(base.named_parameters()), {n for n, _, _ in _lora_linears(base)}
        updates = [
            task_update(reference, targets, model.base_model, rank, m.task)
            for m, model in zip(multi.models, plain, strict=True)
        ]
    return MixedLoRAForm(base, updates, heads, kinds).eval()


# --- per-task forms --------------------------------------------------------------------------------
def tie_equal_parameters(module: nn.Module, reference: nn.Module) -> int:
    """Make every parameter of `module` equal (same name, shape and values) to `reference`'s share
    its storage; returns how many were tied (their old copies are freed)."""
    ref = dict(reference.named_parameters())
    tied = 0
    for name, p in module.named_parameters():
        r = ref.get(name)
        if r is not None and r.shape == p.shape and r is not p and torch.equal(r.data, p.data):
            p.data = r.data
            tied += 1
    return tied


def load_per_task_modules(multi: MultiServed, attn: str = "sdpa") -> list[nn.Module]:
    """plain / merged: each task's whole served module. fusion: the same, with parameters equal to
    the first module's tied to it. Synthetic: K deep copies of the task's module (separate tensors)."""
    modules: list[nn.Module] = []
    for m in multi.models:
        module = m.torch_module(attn_implementation=attn)
        if multi.form == "fusion" and modules:
            tie_equal_parameters(module, modules[0])
        modules.append(module)
    if multi.synthetic:
        modules += [copy.deepcopy(modules[0]) for _ in range(multi.synthetic - 1)]
    return modules


class PerTaskForm(nn.Module):
    """One module per task; a mixed batch runs as one sub-batch per task present, each cut to its own
    longest row (tasks/mixed.py `group_rows`, which the ONNX Runtime form, models/onnx_backend.py
    `MultiTaskOnnxBackend`, shares). forward(ids, mask, tasks) -> list of (rows, kind, out tensor)."""

    def __init__(self, modules: list[nn.Module], kinds: list[str]):
        super().__init__()
        self.tasks = nn.ModuleList(modules)
        self.kinds = list(kinds)

    def add_task(self, module: nn.Module, kind: str) -> None:
        """Serve one more task: its whole served module (the next batch may hold its rows)."""
        self.tasks.append(module)
        self.kinds.append(kind)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, tasks: torch.Tensor):
        parts = []
        for k, rows, width in group_rows(tasks, attention_mask):  # as the ONNX Runtime form groups
            index = torch.tensor(rows, device=tasks.device)
            out = self.tasks[k](input_ids[index, :width], attention_mask[index, :width])
            parts.append((index, self.kinds[k], out.float()))
        return parts


# --- the backend -----------------------------------------------------------------------------------
class MultiTaskBackend(Backend):
    """A PyTorch backend over every task of a mixed run (fp32, CPU or CUDA).

    predict(input_ids int64 [B, L], attention_mask int64 [B, L], tasks int64 [B]) -> MixedOutput."""

    name: ClassVar[str] = "pytorch"

    def __init__(self, multi: MultiServed, options: BackendOptions):
        if options.dtype != "fp32":
            raise ValueError(f"a task list is served in fp32 only, got dtype {options.dtype}")
        self.multi, self.options = multi, options
        self.device = torch.device(options.device)
        with serial_intra_op():  # see models/pytorch_backend.py
            if multi.form == "adapter":
                module: nn.Module = load_mixed_adapter_model(multi)
            elif multi.form == "lora":
                module = load_mixed_lora_model(multi)
            else:
                module = PerTaskForm(load_per_task_modules(multi), multi.kinds)
            self.module = module.eval().to(self.device)
        if options.threads > 0:
            torch.set_num_threads(options.threads)

    def predict(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, tasks: np.ndarray | None = None
    ) -> MixedOutput:
        if tasks is None:
            raise ValueError("a task list's backend needs each row's task (a mixed QSL's Batch.inputs)")

        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(self.device)

        with torch.inference_mode():
            parts = self.module(tensor(input_ids), tensor(attention_mask), tensor(tasks))
        return MixedOutput([(r.cpu().numpy(), k, o.cpu().numpy()) for r, k, o in parts])

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "torch": torch.__version__,
            "device": str(self.device),
            "dtype": self.options.dtype,
            "form": self.multi.form,
            "tasks": len(self.multi.kinds),
            "threads": torch.get_num_threads(),
            **self.memory(),
        }

    def memory(self) -> dict[str, int]:
        """Resident parameters, each storage counted once (tied parameters are shared)."""
        return parameter_memory(self.module) if self.module is not None else {}

    def close(self) -> None:
        self.module = None


def parameter_memory(module: nn.Module) -> dict[str, int]:
    """Parameters and buffers of `module`, each distinct storage counted once: count and bytes."""
    seen: dict[int, int] = {}
    count = 0
    for t in [*module.parameters(), *module.buffers()]:
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen[key] = t.untyped_storage().nbytes()
            count += t.numel()
    return {"parameters": count, "parameter_bytes": sum(seen.values())}
