"""The open-division packages' layout and the rules the official checkers enforce on them.

Paths, required files and field lists live here once, so stage, truncate, check and pack agree.

Two packages, because no one checker version validates all three scenarios of bert-99 (the
official model our benchmarks map to; docs/submission.md tells how this was read from the
checker's own tables):
  * edge (checker v6.1, the current round): SingleStream and Offline. From round v5.0 bert-99 is an
    edge benchmark only, and the current checker has no Server rules for it at all.
  * datacenter (checker round v4.1, the newest that lists bert-99 under datacenter with its 130 ms
    Server bound): Server and Offline, from runs made with that round's LoadGen seeds
    (`harness run --seeds v4.1`), which that checker requires.
Each is its own checker input: <root>/<package>/open/<submitter>/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from common.paths import BUILD
from harness.seeds import SEEDS

DEFAULT_ROOT = BUILD / "submission"  # holds one checker --input per package: <root>/<package>/
DEFAULT_LOG_DIR = BUILD / "logs" / "latest"
DIVISION = "open"
NOT_FOR_SUBMISSION = "NOT_FOR_SUBMISSION.txt"
# The current round's seeds (LoadGen 6.0.17's built-in mlperf.conf, which the v6.1 checker expects).
CURRENT_SEEDS = (2085463073848966840, 2747215439041700203, 16159082839903944936)


@dataclass(frozen=True)
class Package:
    """One checker input: its checker round, the system type its system description declares, the
    scenarios it holds, and the `harness run --seeds` its runs were made with (None = built-in)."""

    name: str
    version: str
    system_type: str
    scenarios: tuple[str, ...]
    seeds: str | None
    server_latency_ns: int | None = None  # bert-99's Server bound in this round's checker
    # Round v4.x layout: each scenario's user.conf, README.md and system-implementation JSON
    # (<system>_<implementation>_<Scenario>.json, the measurements) also under
    # measurements/<system>/<benchmark>/<Scenario>/, and a code/<benchmark>/<implementation>/ folder.
    measurements_dir: bool = False

    def seed_values(self) -> tuple[int, int, int]:
        return SEEDS[self.seeds] if self.seeds else CURRENT_SEEDS

    def root(self, root: Path) -> Path:
        """This package's checker --input folder under the staging root."""
        return root / self.name


PACKAGES = (
    Package("edge", "v6.1", "edge", ("SingleStream", "Offline"), None),
    Package("datacenter", "v4.1", "datacenter", ("Offline", "Server"), "v4.1", 130_000_000, True),
)


def package_for(scenario: str, seeds: str | None) -> Package | None:
    """The package a run of `scenario` made with `seeds` belongs to (None: no checker validates it)."""
    for pkg in PACKAGES:
        if scenario in pkg.scenarios and pkg.seeds == seeds:
            return pkg
    return None


def staged_packages(root: Path, submitter: str) -> list[tuple[Package, Path]]:
    """(package, its open/<submitter> folder) for every package staged under `root`."""
    found = [(pkg, submitter_dir(pkg.root(root), submitter)) for pkg in PACKAGES]
    return [(pkg, sub) for pkg, sub in found if sub.is_dir()]


def full_logs_dir(root: Path) -> Path:
    """Where truncation keeps the full accuracy logs: BESIDE the package root, never inside it (the
    checker reads every folder of its --input as a division)."""
    return root.with_name(root.name + "_full_accuracy_logs")


# Every benchmark folder maps to this official model unless --map says otherwise. BERT-99 is the
# language-encoder benchmark; its rules (sample counts, accuracy.txt format) then apply.
DEFAULT_MAPPED_MODEL = "bert-99"
IMPLEMENTATION = "harness"  # the implementation name in round v4.x's measurements/ and code/ folders
# Rules of the mapped model the harness can check itself (from the v6.1 checker's tables).
MAPPED_RULES = {
    "bert-99": {"performance_sample_count": 10833, "dataset_size": 10833},
    "bert-99.9": {"performance_sample_count": 10833, "dataset_size": 10833},
}
MIN_DURATION_MS = 600_000

# Truncation: first and last 4 KiB of the accuracy json stay; the result must be <= 10 KiB.
VIEWABLE_BYTES = 4096
MAX_ACCURACY_LOG_BYTES = 10 * 1024
HASH_LINE = re.compile(r"^hash=([0-9a-f]{64})$")
# The accuracy.txt line the official checkers read for bert-99 (their "F1" pattern: SQuAD's final
# line, exact match then F1). Without it the legacy v6.1 checker rejects an open-division accuracy
# run ("accuracy not valid"), and the current one records no accuracy figure.
CHECKER_LINE = re.compile(r'^\{"exact_match": [0-9.]+, "f1": ([0-9.]+)\}$')
CHECKER_NOTE = "# for the MLPerf checkers, in bert-99's format (exact match, then F1): "
NO_CHECKER_LINE = "# no line for the MLPerf checkers: "

PERF_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt")
ACC_FILES = (
    "mlperf_log_summary.txt",
    "mlperf_log_detail.txt",
    "accuracy.txt",
    "mlperf_log_accuracy.json",
)
SCENARIO_FILES = ("measurements.json", "user.conf", "mlperf.conf", "README.md")
TEST01_FILES = ("verify_accuracy.txt", "verify_performance.txt")
# TEST01's accuracy/ folder: these two when the deterministic check passed; with the fallback (the
# audit run's responses scored like the accuracy run's on the same samples) also the two scores.
TEST01_ACC_FILES = ("mlperf_log_accuracy.json", "accuracy.txt")
TEST01_FALLBACK_FILES = ("baseline_accuracy.txt", "compliance_accuracy.txt")
# The fallback's bound: the two scores' relative difference, in percent (the checker's: 1 for a
# 99% model, 0.1 for a 99.9% one).
TEST01_FALLBACK_DELTA_PERCENT = {"bert-99": 1.0, "bert-99.9": 0.1}

MEASUREMENT_KEYS = (
    "input_data_types",
    "retraining",
    "starting_weights_filename",
    "weight_data_types",
    "weight_transformations",
)

# The 35 system-description fields of the v6.1 checker; MEANINGFUL ones must also be non-empty.
SYSTEM_FIELDS = (
    "division",
    "submitter",
    "status",
    "system_name",
    "number_of_nodes",
    "host_processor_model_name",
    "host_processors_per_node",
    "host_processor_core_count",
    "host_memory_capacity",
    "host_storage_capacity",
    "host_storage_type",
    "accelerators_per_node",
    "accelerator_model_name",
    "accelerator_memory_capacity",
    "framework",
    "operating_system",
    "system_type",
    "other_software_stack",
    "host_processor_frequency",
    "host_processor_caches",
    "host_memory_configuration",
    "host_processor_interconnect",
    "host_networking",
    "host_networking_topology",
    "accelerator_frequency",
    "accelerator_host_interconnect",
    "accelerator_interconnect",
    "accelerator_interconnect_topology",
    "accelerator_memory_configuration",
    "accelerator_on-chip_memories",
    "cooling",
    "hw_notes",
    "sw_notes",
    "host_network_card_count",
    "system_type_detail",
)
MEANINGFUL_SYSTEM_FIELDS = (
    "division",
    "submitter",
    "system_type",
    "status",
    "system_name",
    "number_of_nodes",
    "host_processor_model_name",
    "host_processors_per_node",
    "host_processor_core_count",
    "host_memory_capacity",
    "host_memory_configuration",
    "host_storage_capacity",
    "host_storage_type",
    "host_networking",
    "host_network_card_count",
    "host_networking_topology",
    "accelerators_per_node",
    "accelerator_model_name",
    "accelerator_memory_capacity",
    "accelerator_host_interconnect",
    "accelerator_memory_configuration",
    "accelerator_interconnect",
    "cooling",
    "framework",
    "operating_system",
    "other_software_stack",
)
STATUSES = ("available", "preview", "rdi")


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


def checker_line(metrics: dict) -> tuple[str, str]:
    """(note, line) that staging appends to accuracy.txt for the checkers: a QA task's own exact
    match and F1; for a task scored by accuracy (one label, or one retrieved sentence, per sample)
    the accuracy for both, since there the exact match of the answer and the micro-averaged F1 both
    equal it. A task with neither (BUCC: F1 of mined pairs, no exact match) gets a note and no line
    (the legacy checker then rejects its accuracy run; `submission check` says so)."""
    em, f1, acc = (metrics.get(k) for k in ("exact_match", "f1", "accuracy"))
    if isinstance(em, float | int) and isinstance(f1, float | int):
        why = "the task's exact match and F1"
    elif isinstance(acc, float | int):
        em = f1 = acc
        why = "accuracy, which equals the exact match and the micro-averaged F1 of one answer per sample"
    else:
        return NO_CHECKER_LINE + "the task has no accuracy or exact-match figure", ""
    return CHECKER_NOTE + why, f'{{"exact_match": {em:.4f}, "f1": {f1:.4f}}}'


def read_hash(accuracy_txt: Path) -> str | None:
    """The `hash=<sha256>` line that truncation appended, or None."""
    if not accuracy_txt.is_file():
        return None
    for line in accuracy_txt.read_text(encoding="utf-8", errors="replace").splitlines():
        m = HASH_LINE.match(line.strip())
        if m:
            return m.group(1)
    return None
