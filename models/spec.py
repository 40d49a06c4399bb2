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
# merged into the weights ("lora").
LEARNING = ("full", "adapter", "fusion", "adapter-seq", "lora")
SERVING = ("plain", "adapter", "fusion", "merged")
# English intermediate tasks (STILTs, Phang et al.): SQuAD-format extractive QA, and NLI on SNLI
# (English, 3 labels: the analogue of their MNLI)
INTERMEDIATE = ("squad", "nli")
NEEDS_INTERMEDIATE = ("fusion", "adapter-seq")  # learning kinds that start from an intermediate stage
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

    def __post_init__(self) -> None:
        if self.intermediate is not None and self.intermediate not in INTERMEDIATE:
            raise ValueError(f"{self.name}: intermediate {self.intermediate!r} not in {INTERMEDIATE}")
        if self.learning not in LEARNING or self.serving not in SERVING:
            raise ValueError(f"{self.name}: bad learning/serving {self.learning!r}/{self.serving!r}")
        if self.intermediate is None and self.learning in NEEDS_INTERMEDIATE:
            raise ValueError(f"{self.name}: learning {self.learning!r} needs an intermediate task")

    def serving_for(self, task_kind: str) -> str:
        """How the model is served for a task kind: retrieval uses the intermediate-stage encoder
        (plain after full fine-tuning, its adapter alone for the adapter kinds, merged for LoRA)."""
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
