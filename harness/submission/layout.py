"""The open-division package layout (checker version v6.1) and the rules both checkers enforce.

Paths, required files and field lists live here once, so stage, truncate, check and pack agree.
"""

from __future__ import annotations

import re
from pathlib import Path

from common.paths import BUILD

DEFAULT_ROOT = BUILD / "submission"  # the checker's --input: holds open/<submitter>/ only
DEFAULT_LOG_DIR = BUILD / "logs" / "latest"
DIVISION = "open"
CHECKER_VERSION = "v6.1"
NOT_FOR_SUBMISSION = "NOT_FOR_SUBMISSION.txt"


def full_logs_dir(root: Path) -> Path:
    """Where truncation keeps the full accuracy logs: BESIDE the package root, never inside it (the
    checker reads every folder of its --input as a division)."""
    return root.with_name(root.name + "_full_accuracy_logs")


# Every benchmark folder maps to this official model unless --map says otherwise. BERT-99 is the
# language-encoder benchmark; its rules (sample counts, accuracy.txt format) then apply.
DEFAULT_MAPPED_MODEL = "bert-99"
# Rules of the mapped model the harness can check itself (from the v6.1 checker's tables).
MAPPED_RULES = {
    "bert-99": {"performance_sample_count": 10833, "dataset_size": 10833},
    "bert-99.9": {"performance_sample_count": 10833, "dataset_size": 10833},
}
MIN_DURATION_MS = 600_000
SCENARIOS = ("Offline", "Server", "SingleStream", "MultiStream")

# Truncation: first and last 4 KiB of the accuracy json stay; the result must be <= 10 KiB.
VIEWABLE_BYTES = 4096
MAX_ACCURACY_LOG_BYTES = 10 * 1024
HASH_LINE = re.compile(r"^hash=([0-9a-f]{64})$")

PERF_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt")
ACC_FILES = (
    "mlperf_log_summary.txt",
    "mlperf_log_detail.txt",
    "accuracy.txt",
    "mlperf_log_accuracy.json",
)
SCENARIO_FILES = ("measurements.json", "user.conf", "README.md")
TEST01_FILES = ("verify_accuracy.txt", "verify_performance.txt")

MEASUREMENT_KEYS = (
    "input_data_types",
    "retraining",
    "starting_weights_filename",
    "weight_data_types",
    "weight_transformations",
)

# The 35 system-description fields of the v6.1 checker; MEANINGFUL ones must also be non-empty.
SYSTEM_FIELDS = (
    "division", "submitter", "status", "system_name", "number_of_nodes",
    "host_processor_model_name", "host_processors_per_node", "host_processor_core_count",
    "host_memory_capacity", "host_storage_capacity", "host_storage_type", "accelerators_per_node",
    "accelerator_model_name", "accelerator_memory_capacity", "framework", "operating_system",
    "system_type", "other_software_stack", "host_processor_frequency", "host_processor_caches",
    "host_memory_configuration", "host_processor_interconnect", "host_networking",
    "host_networking_topology", "accelerator_frequency", "accelerator_host_interconnect",
    "accelerator_interconnect", "accelerator_interconnect_topology",
    "accelerator_memory_configuration", "accelerator_on-chip_memories", "cooling", "hw_notes",
    "sw_notes", "host_network_card_count", "system_type_detail",
)  # fmt: skip
MEANINGFUL_SYSTEM_FIELDS = (
    "division", "submitter", "system_type", "status", "system_name", "number_of_nodes",
    "host_processor_model_name", "host_processors_per_node", "host_processor_core_count",
    "host_memory_capacity", "host_memory_configuration", "host_storage_capacity",
    "host_storage_type", "host_networking", "host_network_card_count", "host_networking_topology",
    "accelerators_per_node", "accelerator_model_name", "accelerator_memory_capacity",
    "accelerator_host_interconnect", "accelerator_memory_configuration", "accelerator_interconnect",
    "cooling", "framework", "operating_system", "other_software_stack",
)  # fmt: skip
STATUSES = ("available", "preview", "rdi")
SYSTEM_TYPES = ("datacenter", "edge", "datacenter,edge", "edge,datacenter")


def submitter_dir(root: Path, submitter: str) -> Path:
    return root / DIVISION / submitter


def benchmark_name(encoder: str, model: str, task: str) -> str:
    """Descriptive benchmark folder name, e.g. `xlmr-tiny-adapter-squad-xnli`."""
    raw = f"xlmr-{encoder or 'unknown'}-{model}-{task}".lower()
    return re.sub(r"[^a-z0-9.]+", "-", raw).strip("-")


def test01_dir_of(performance_run: Path) -> Path:
    """Where compliance writes a benchmark's TEST01 results: <Scenario>/TEST01/, beside the
    performance and accuracy run folders."""
    return performance_run.parent / "TEST01"


def accuracy_dirs(sub_dir: Path) -> list[Path]:
    """Every `accuracy/` folder of the package whose json must be truncated (main and TEST01)."""
    results = sub_dir / "results"
    found = sorted(results.glob("*/*/*/accuracy")) + sorted(results.glob("*/*/*/TEST01/accuracy"))
    return [p for p in found if p.is_dir()]


def read_hash(accuracy_txt: Path) -> str | None:
    """The `hash=<sha256>` line that truncation appended, or None."""
    if not accuracy_txt.is_file():
        return None
    for line in accuracy_txt.read_text(encoding="utf-8", errors="replace").splitlines():
        m = HASH_LINE.match(line.strip())
        if m:
            return m.group(1)
    return None
