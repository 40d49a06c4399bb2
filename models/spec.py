"""What a MODEL= name means: how the encoder was adapted and how the result is served (`ModelSpec`).

Pure data, imported by the registry (models/registry.py, the table of names), the loaders (how each
serving form loads) and the recipe (how each learning kind trains).
"""

from __future__ import annotations

from dataclasses import dataclass

LEARNING = ("full", "adapter", "fusion", "lora")
SERVING = ("plain", "adapter", "fusion", "merged")
INTERMEDIATE = ("squad",)
# LoRA as the zoo trains it (zoo/stages.py) and as a task list can serve it (models/multitask.py)
LORA_RANK = 8
LORA_ALPHA = 16
LORA_FORMS = ("merged", "unmerged")  # --lora_form: one merged copy per task, or mixed batches
# task-list forms whose rows of several tasks share one backbone pass (models/multitask.py)
MIXED_BATCH_FORMS = ("adapter", "lora")


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
