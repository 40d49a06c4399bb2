"""MODEL= names -> model specs, and `resolve(model, task, ...)` -> the `ServedModel` a backend runs.

A model name says how the encoder was adapted (the paper's STILTs recipe, Phang et al. 2020):

  name           intermediate  target learning                          served as
  full           -             full fine-tune                           plain XLM-R graph
  full-squad     squad         full fine-tune after full SQuAD tuning   plain
  adapter        -             seq_bn adapter (frozen encoder)          adapter (unmerged)
  adapter-squad  squad         seq_bn adapter "squad" on SQuAD, then a target adapter trained through
                               AdapterFusion Fuse(squad, <task>)        fusion (unmerged)
  lora-squad     squad         LoRA on SQuAD, then LoRA on the target;  merged (plain graph, no LoRA
                               both merged into the weights              modules left)

Retrieval tasks (tatoeba, bucc) train nothing: they serve the encoder after the intermediate stage (its
adapter active where it has one, LoRA merged) and mean-pool `hidden_states[pooling_layer]`.
Where the weights come from (`weights`): None = the zoo the recipe built (`python -m harness models`),
"random" = random weights with the real shapes (speed studies only), or a checkpoint directory laid out
like a zoo entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from common.names import lookup
from common.paths import BUILD
from models.encoders import get_encoder

LEARNING = ("full", "adapter", "fusion", "lora")
SERVING = ("plain", "adapter", "fusion", "merged")
INTERMEDIATE = ("squad",)


@dataclass(frozen=True)
class ModelSpec:
    """One MODEL= entry. `serving` is the form for trained targets; see `serving_for` for retrieval."""

    name: str
    intermediate: str | None  # "squad" or None
    learning: str  # one of LEARNING (target-task learning)
    serving: str  # one of SERVING
    summary: str

    def __post_init__(self) -> None:
        if self.intermediate is not None and self.intermediate not in INTERMEDIATE:
            raise ValueError(f"{self.name}: intermediate {self.intermediate!r} not in {INTERMEDIATE}")
        if self.learning not in LEARNING or self.serving not in SERVING:
            raise ValueError(f"{self.name}: bad learning/serving {self.learning!r}/{self.serving!r}")

    def serving_for(self, task_kind: str) -> str:
        """How the model is served for a task kind: retrieval uses the intermediate-stage encoder."""
        if task_kind != "retrieval":
            return self.serving
        if self.intermediate is None or self.learning == "full":
            return "plain"
        return {"fusion": "adapter", "lora": "merged"}.get(self.learning, self.serving)

    def stage_dir(self, task_kind: str, task: str) -> str:
        """Sub-folder of <models_dir>/<name>/ holding the checkpoint served for `task`."""
        if task_kind != "retrieval":
            return task
        return self.intermediate or ""  # "" = the pretrained encoder itself (models_dir/encoder)


MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("full", None, "full", "plain", "XLM-R fully fine-tuned on the English target data"),
        ModelSpec("full-squad", "squad", "full", "plain", "full fine-tune on SQuAD, then on the target"),
        ModelSpec("adapter", None, "adapter", "adapter", "seq_bn adapter on the target, encoder frozen"),
        ModelSpec(
            "adapter-squad",
            "squad",
            "fusion",
            "fusion",
            "seq_bn adapter 'squad' on SQuAD, then a target adapter through Fuse(squad, <task>)",
        ),
        ModelSpec(
            "lora-squad", "squad", "lora", "merged", "LoRA on SQuAD then on the target, both merged"
        ),
    )
}


@dataclass(frozen=True)
class TargetTask:
    """What the zoo needs to know about a task (the full Task classes live in tasks/)."""

    name: str
    kind: str  # classification | qa | retrieval
    label_names: tuple[str, ...] = ()

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


TASKS: dict[str, TargetTask] = {
    t.name: t
    for t in (
        TargetTask("xnli", "classification", ("entailment", "neutral", "contradiction")),
        TargetTask("pawsx", "classification", ("0", "1")),
        TargetTask("tydiqa", "qa"),
        TargetTask("tatoeba", "retrieval"),
        TargetTask("bucc", "retrieval"),
    )
}
MODEL_KINDS = ("tiny", "real", "random")


def get_model_spec(name: str) -> ModelSpec:
    """The spec of MODEL=`name`; ValueError listing the known names (with "did you mean") otherwise."""
    return lookup("model", name, MODELS)


def get_target(name: str) -> TargetTask:
    """The zoo's view of TASK=`name`; ValueError listing the known tasks otherwise."""
    return lookup("task", name, TASKS)


@dataclass(frozen=True)
class ServedModel:
    """A resolved (model, task, encoder, weights): everything a backend needs to build the network.

    checkpoint: the folder loaded (None for random weights); base_source: where the frozen encoder of
    adapter forms (and random/real tokenizers) comes from. Output of `torch_module()` per task kind:
    classification [B, num_labels] logits, qa [B, 2, L] start/end logits, retrieval [B, hidden].
    """

    name: str
    task: str
    task_kind: str
    encoder: str  # tiny | base | large
    model_kind: str  # tiny | real | random
    checkpoint: Path | None
    pooling_layer: int
    num_labels: int
    spec: ModelSpec
    serving: str
    models_dir: Path
    encoder_config: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def tokenizer(self):
        """The XLM-R fast tokenizer saved with the checkpoint (random weights: see loaders.load_tokenizer)."""
        from models.loaders import load_tokenizer

        return load_tokenizer(self)

    def torch_module(self, attn_implementation: str = "sdpa", lean: bool = True):
        """nn.Module in eval mode: forward(input_ids, attention_mask) -> float tensor (see class doc).
        lean=False keeps the adapters library's per-layer dispatch (models/dispatch_free.py)."""
        from models.loaders import build_module

        return build_module(self, attn_implementation=attn_implementation, lean=lean)

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for run_config.json."""
        return {
            "model": self.name,
            "task": self.task,
            "task_kind": self.task_kind,
            "encoder": self.encoder,
            "model_kind": self.model_kind,
            "intermediate": self.spec.intermediate,
            "learning": self.spec.learning,
            "serving": self.serving,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "pooling_layer": self.pooling_layer if self.task_kind == "retrieval" else None,
            "num_labels": self.num_labels,
        }

    def check_for_accuracy(self) -> None:
        """Raise ValueError if these weights cannot give meaningful accuracy (random weights)."""
        if self.model_kind == "random":
            raise ValueError(
                f"model {self.name!r} on {self.task!r} uses random weights (model_kind='random', "
                f"encoder {self.encoder!r}): fine for speed studies, meaningless for accuracy. Build the "
                "zoo (`python -m harness models`) or pass a trained checkpoint with --weights PATH."
            )

    def with_pooling_layer(self, layer: int) -> ServedModel:
        """The same model pooling another hidden_states layer (retrieval)."""
        n = int(self.encoder_config["num_hidden_layers"])
        if not 0 <= layer <= n:
            raise ValueError(f"pooling layer {layer} outside 0..{n} for encoder {self.encoder!r}")
        return replace(self, pooling_layer=layer)


def resolve(
    model: str,
    task: str,
    encoder: str = "tiny",
    weights: str | Path | None = None,
    models_dir: str | Path | None = None,
    pooling_layer: int | None = None,
) -> ServedModel:
    """Resolve MODEL=`model` for TASK=`task` on `encoder` into a ServedModel.

    weights: None (the zoo in models_dir, default build/models for tiny, build/models-<encoder>
             otherwise), "random" (real shapes, random init, model_kind "random"), or a checkpoint dir.
    Raises ValueError for unknown names and FileNotFoundError (saying how to build it) for a missing
    zoo checkpoint.
    """
    spec = get_model_spec(model)
    target = get_target(task)
    enc = get_encoder(encoder)
    from models.loaders import encoder_config_of, find_checkpoint

    root = Path(models_dir) if models_dir is not None else enc.default_models_dir(BUILD)
    if weights == "random":
        kind, ckpt = "random", None
    else:
        kind = "tiny" if encoder == "tiny" else "real"
        ckpt = find_checkpoint(spec, target, root, weights)
    config = encoder_config_of(enc, ckpt)
    layer = pooling_layer if pooling_layer is not None else default_layer(config)
    served = ServedModel(
        name=spec.name,
        task=target.name,
        task_kind=target.kind,
        encoder=enc.name,
        model_kind=kind,
        checkpoint=ckpt,
        pooling_layer=layer,
        num_labels=target.num_labels,
        spec=spec,
        serving=spec.serving_for(target.kind),
        models_dir=root,
        encoder_config=config,
    )
    return served.with_pooling_layer(layer)


def default_layer(config: dict[str, Any]) -> int:
    from models.encoders import default_pooling_layer

    return default_pooling_layer(int(config["num_hidden_layers"]))


def available() -> dict[str, list[str]]:
    """Registry contents for `harness info`: models, tasks, encoders."""
    from models.encoders import ENCODERS

    return {"models": list(MODELS), "tasks": list(TASKS), "encoders": list(ENCODERS)}
