"""What a MODEL= name means: how the encoder was adapted and how the result is served (`ModelSpec`).

Pure data, imported by the registry (models/registry.py, the table of names), the loaders (how each
serving form loads) and the recipe (how each learning kind trains).
"""

from __future__ import annotations

from dataclasses import dataclass

# Target-task learning kinds: full fine-tuning; a fresh seq_bn adapter on the frozen encoder
# ("adapter"); a fresh target adapter trained through AdapterFusion Fuse(<intermediate>, <task>)
# ("fusion"); the intermediate stage's seq_bn adapter trained further on the target, sequentially
# ("adapter-seq": the intermediate adapter initialises the target adapter, the encoder frozen); LoRA
# merged into the weights ("lora"); two-stage AdapterFusion (Pfeiffer et al. 2021, "fusion2"): the
# intermediate adapter and a task adapter trained first on its own (another MODEL's target stage,
# `ModelSpec.adapter_of`), both loaded frozen, and only Fuse(<intermediate>, <task>) and a new head
# trained on the target.
LEARNING = ("full", "adapter", "fusion", "adapter-seq", "lora", "fusion2")
SERVING = ("plain", "adapter", "fusion", "merged")
# English intermediate tasks (STILTs, Phang et al.): SQuAD-format extractive QA, and NLI on SNLI
# (English, 3 labels: the analogue of their MNLI)
INTERMEDIATE = ("squad", "nli")
# learning kinds that start from an intermediate stage
NEEDS_INTERMEDIATE = ("fusion", "adapter-seq", "fusion2")
# LoRA as the zoo trains it (zoo/stages.py) and as a task list can serve it (models/multitask.py)
LORA_RANK = 8
LORA_ALPHA = 16
LORA_FORMS = ("merged", "unmerged")  # --lora_form: one merged copy per task, or mixed batches
# task-list forms whose rows of several tasks share one backbone pass (models/multitask.py)
MIXED_BATCH_FORMS = ("adapter", "lora")


def mixed_batches_on_pytorch_only(what: str) -> str:
    """The one line refusing a mixed-batch form (`what` serves ...) on ONNX Runtime: the run
    options' check (harness/multitask.py) and the ONNX backend itself say the same."""
    return (
        f"{what} in mixed batches (one backbone pass), which run on PyTorch only: use --backend "
        "pytorch, or a per-task MODEL on onnxruntime (full, adapter-squad, lora-squad merged)"
    )


@dataclass(frozen=True)
class ModelSpec:
    """One MODEL= entry. `serving` is the form for trained targets; see `serving_for` for retrieval."""

    name: str
    intermediate: str | None  # one of INTERMEDIATE, or None
    learning: str  # one of LEARNING (target-task learning)
    serving: str  # one of SERVING
    summary: str
    # another MODEL whose intermediate stage this one reuses (served for retrieval, fused for the
    # targets) instead of training its own: <models_dir>/<that MODEL>/<intermediate>, built once
    intermediate_of: str | None = None
    # learning "fusion2" only: the MODEL whose target stage on the same task trained the task adapter
    # fused here (stage 1, knowledge extraction), built before this one's target stage
    adapter_of: str | None = None

    def __post_init__(self) -> None:
        if self.intermediate is not None and self.intermediate not in INTERMEDIATE:
            raise ValueError(f"{self.name}: intermediate {self.intermediate!r} not in {INTERMEDIATE}")
        if self.learning not in LEARNING or self.serving not in SERVING:
            raise ValueError(f"{self.name}: bad learning/serving {self.learning!r}/{self.serving!r}")
        if self.intermediate is None and self.learning in NEEDS_INTERMEDIATE:
            raise ValueError(f"{self.name}: learning {self.learning!r} needs an intermediate task")
        if (self.learning == "fusion2") != (self.adapter_of is not None):
            raise ValueError(
                f"{self.name}: learning 'fusion2', and it alone, names the MODEL its task adapter "
                f"comes from (adapter_of), not learning {self.learning!r} with {self.adapter_of!r}"
            )
        if self.intermediate_of is not None and self.intermediate is None:
            raise ValueError(f"{self.name}: intermediate_of without an intermediate task")

    def serving_for(self, task_kind: str) -> str:
        """How the model is served for a task kind: retrieval uses the intermediate-stage encoder
        (plain after full fine-tuning, its adapter alone for the adapter kinds, merged for LoRA)."""
        if task_kind != "retrieval":
            return self.serving
        if self.intermediate is None or self.learning == "full":
            return "plain"
        return {"fusion": "adapter", "fusion2": "adapter", "lora": "merged"}.get(
            self.learning, self.serving
        )

    def pretrained_for(self, task_kind: str) -> bool:
        """Whether the model serves the pretrained encoder untouched for `task_kind` (retrieval
        without an intermediate stage): every training seed then serves the same weights."""
        return task_kind == "retrieval" and self.intermediate is None

    def intermediate_folder(self) -> str | None:
        """The intermediate stage's folder under the zoo folder: <MODEL>/<intermediate>, or that of
        the MODEL it reuses the stage of (`intermediate_of`); None without an intermediate task."""
        if self.intermediate is None:
            return None
        return f"{self.intermediate_of or self.name}/{self.intermediate}"

    def folder(self, task_kind: str, task: str) -> str:
        """The folder under the zoo folder holding the checkpoint served for `task`: the target
        stage <MODEL>/<task>; for retrieval the intermediate stage, or without one "encoder" (the
        pretrained encoder itself)."""
        if task_kind != "retrieval":
            return f"{self.name}/{task}"
        return self.intermediate_folder() or "encoder"

    def prerequisites(self) -> tuple[str, ...]:
        """Other MODELs whose target stage (on the same task) this one's target stage starts from:
        built before it (`adapter_of`)."""
        return (self.adapter_of,) if self.adapter_of else ()
