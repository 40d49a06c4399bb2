"""MODEL= names -> model specs, and `resolve(model, task, ...)` -> the `ServedModel` a backend runs.

A model name says how the encoder was adapted (the paper's STILTs recipe, Phang et al. 2020):

  name               intermediate  target learning                              served as
  full               -             full fine-tune                               plain XLM-R graph
  full-squad         squad         full fine-tune after full SQuAD tuning       plain
  adapter            -             seq_bn adapter (frozen encoder)              adapter (unmerged)
  adapter-squad      squad         seq_bn adapter "squad" on SQuAD, then a target adapter trained
                                   through AdapterFusion Fuse(squad, <task>)    fusion (unmerged)
  lora-squad         squad         LoRA on SQuAD, then LoRA on the target;      merged (plain graph,
                                   both merged into the weights                 no LoRA modules left)
  full-nli           nli           full fine-tune after full SNLI tuning        plain
  adapter-nli        nli           seq_bn adapter "nli" on SNLI, then the same  adapter (unmerged)
                                   adapter trained further on the target
                                   (learning "adapter-seq", encoder frozen)
  adapter-seq-squad  squad         seq_bn adapter "squad" on SQuAD, then the    adapter (unmerged)
                                   same adapter trained further on the target
                                   (adapter-squad's arm without AdapterFusion)
  lora               -             LoRA on the target, merged                   merged (plain graph)
  adapter-fusion-    squad         AdapterFusion in two stages (Pfeiffer et al.  fusion (unmerged)
  squad              (adapter-     2021): adapter-squad's SQuAD adapter and the
                     squad's)      `adapter` arm's task adapter (adapter/<task>),
                                   each trained first, both loaded frozen; only
                                   Fuse(squad, <task>) and a new head train
                                   (learning "fusion2")

Retrieval tasks (tatoeba, bucc) train nothing: they serve the encoder after the intermediate stage (its
adapter active where it has one, LoRA merged; adapter-fusion-squad serves adapter-squad's stage
itself) and mean-pool `hidden_states[pooling_layer]`.
Where the weights come from (`weights`): None = the zoo the recipe built (`python -m zoo build`),
"random" = random weights with the real shapes (speed studies only), or a checkpoint directory laid out
like a zoo entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.names import lookup
from common.paths import BUILD
from models.encoders import ENCODERS, default_pooling_layer, get_encoder
from models.spec import ModelSpec
from tasks import registry as task_registry
from tasks.base import Task

if TYPE_CHECKING:
    from models.loaders import ServedModel

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
        ModelSpec("full-nli", "nli", "full", "plain", "full fine-tune on SNLI, then on the target"),
        ModelSpec(
            "adapter-nli",
            "nli",
            "adapter-seq",
            "adapter",
            "seq_bn adapter on SNLI, then the same adapter trained further on the target",
        ),
        ModelSpec(
            "adapter-seq-squad",
            "squad",
            "adapter-seq",
            "adapter",
            "seq_bn adapter on SQuAD, then the same adapter trained further on the target (no fusion)",
        ),
        ModelSpec("lora", None, "lora", "merged", "LoRA (r=8) on the target alone, merged"),
        ModelSpec(
            "adapter-fusion-squad",
            "squad",
            "fusion2",
            "fusion",
            "two-stage AdapterFusion: Fuse(squad, <task>) over adapter-squad's SQuAD adapter and the "
            "adapter arm's task adapter, both frozen; the fusion layer and head train",
            intermediate_of="adapter-squad",
            adapter_of="adapter",
        ),
    )
}


def _check_shared_stages(models: dict[str, ModelSpec]) -> None:
    """A MODEL reusing another's stage names one that builds what it takes (ValueError otherwise):
    `intermediate_of`, a MODEL with its own stage of the same intermediate task, trained in the form
    this one serves it for retrieval (a seq_bn adapter for the adapter kinds); `adapter_of`, a plain
    adapter arm (a seq_bn task adapter on the encoder, no intermediate stage)."""
    for spec in models.values():
        if spec.intermediate_of is not None:
            owner = models.get(spec.intermediate_of)
            if (
                owner is None
                or owner.intermediate_of is not None
                or owner.intermediate != spec.intermediate
                or owner.serving_for("retrieval") != spec.serving_for("retrieval")
            ):
                raise ValueError(
                    f"{spec.name}: intermediate_of {spec.intermediate_of!r} builds no "
                    f"{spec.intermediate} stage of its form"
                )
        if spec.adapter_of is not None:
            source = models.get(spec.adapter_of)
            if source is None or (source.intermediate, source.learning) != (None, "adapter"):
                raise ValueError(f"{spec.name}: adapter_of {spec.adapter_of!r} is no plain adapter arm")


_check_shared_stages(MODELS)
# The five arms the study was designed with: what `python -m zoo build` (make models) builds and
# `python -m research study` runs unless given --models. The newer arms above (a second intermediate
# task, NLI, the sequential adapter, LoRA without an intermediate task, and two-stage AdapterFusion)
# are built and served on request (`--models full-nli,...`, `--model full-nli`): the study's design
# takes them in when its grid does.
DEFAULT_MODELS = ("full", "full-squad", "adapter", "adapter-squad", "lora-squad")


# TASK= names: the task registry's own table (tasks/registry.py), not a copy. Each value is the Task
# class, whose declarations the zoo reads (name, kind, label_names, num_labels).
TASKS: dict[str, type[Task]] = task_registry.TASKS


def get_model_spec(name: str) -> ModelSpec:
    """The spec of MODEL=`name`; ValueError listing the known names (with "did you mean") otherwise."""
    return lookup("model", name, MODELS)


def serving_form(model: str, lora_form: str = "merged") -> str:
    """How a task list of MODEL=`model` is served (models/multitask.py): its trained targets' serving
    form (models/spec.py SERVING), or "lora" for a LoRA model served unmerged (--lora_form
    unmerged). Cheap (no torch): the run's configuration checks it before anything is built."""
    return "lora" if lora_form == "unmerged" else get_model_spec(model).serving


def get_target(name: str) -> type[Task]:
    """The declarations of TASK=`name` (its Task class); ValueError listing the known tasks."""
    return task_registry.get_task_class(name)


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
    # lazy: models.loaders imports torch (seconds); the config check and `harness info` read the names
    from models.loaders import ServedModel, encoder_config_of, find_checkpoint  # noqa: PLC0415

    spec = get_model_spec(model)
    target = get_target(task)
    enc = get_encoder(encoder)
    root = Path(models_dir) if models_dir is not None else enc.default_models_dir(BUILD)
    if weights == "random":
        kind, ckpt = "random", None
    else:
        kind = "tiny" if encoder == "tiny" else "real"
        ckpt = find_checkpoint(spec, target, root, weights)
    config = encoder_config_of(enc, ckpt)
    if pooling_layer is None:  # the encoder's own convention, else XTREME's ~7/12 of the depth
        pooling_layer = enc.retrieval_layer if enc.retrieval_layer is not None else default_layer(config)
    layer = pooling_layer
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
    return default_pooling_layer(int(config["num_hidden_layers"]))


def available() -> dict[str, list[str]]:
    """Registry contents for `harness info`: models, tasks, encoders."""
    return {"models": list(MODELS), "tasks": list(TASKS), "encoders": list(ENCODERS)}
