#!/usr/bin/env bash
# The four hand-made bugs of reports/mutation.md, each introduced in the working tree, its named tests
# run (they must FAIL), then reverted with `git checkout`. Refuses to start on uncommitted changes to
# the files it touches. Run from the repository root: bash reports/scripts/mutation_bug_checks.sh
set -uo pipefail
PY=${PY:-.venv/bin/python}
FILES="tasks/scoring/classification.py models/e5.py sut/base.py"
if ! git diff --quiet -- $FILES; then
    echo "uncommitted changes in $FILES: commit or stash them first" >&2
    exit 2
fi
trap 'git checkout -- $FILES' EXIT

check() {  # check NAME FILE OLD NEW TESTS...
    local name=$1 file=$2 old=$3 new=$4
    shift 4
    python3 - "$file" "$old" "$new" <<'EOF'
import sys
path, old, new = sys.argv[1:]
text = open(path, encoding="utf-8").read()
assert text.count(old) == 1, f"{path}: the line to change is not there once: {old!r}"
open(path, "w", encoding="utf-8").write(text.replace(old, new))
EOF
    echo "=== $name: $file"
    git diff -U0 -- "$file" | grep '^[-+] '
    "$PY" -m pytest -q -p no:cacheprovider "$@" 2>&1 | grep -E '^(FAILED|ERROR)|passed|failed'
    git checkout -- "$file"
}

check "held-out filter >= -> >" tasks/scoring/classification.py \
    "keep &= rows >= HELDOUT_FIRST_ROW[task.name]" "keep &= rows > HELDOUT_FIRST_ROW[task.name]" \
    tests/test_scoring_independent.py::test_heldout_rows_start_at_the_second_half_of_each_language

check "task score weighted by sample count" tasks/scoring/classification.py \
    "mean = float(np.mean(acc[scored]))" "mean = float(np.average(acc[scored], weights=count[scored]))" \
    tests/test_scoring_independent.py::test_classification_task_score_is_the_unweighted_mean_over_languages \
    tests/test_scoring_independent.py::test_classification_language_without_samples_is_left_out_of_the_mean \
    tests/test_scoring_independent.py::test_xnli_task_score_with_unequal_language_counts_is_unweighted

check "Q4_0 interleaved nibble layout" models/e5.py \
    "nibbles = np.concatenate([q & 0x0F, q >> 4], axis=1).astype(np.int8) - 8" \
    "nibbles = np.stack([q & 0x0F, q >> 4], axis=2).reshape(-1, 32).astype(np.int8) - 8" \
    tests/test_decoder_independent.py

check "drain leaves the in-flight dict" sut/base.py \
    "stuck, self._in_flight = list(self._in_flight.values()), {}" "stuck = list(self._in_flight.values())" \
    tests/test_sut_contract_mutants.py::test_stall_drain_claims_in_flight_work_so_the_worker_never_completes_it_again \
    tests/test_sut_contract_mutants.py::test_watchdog_drains_a_hung_worker_exactly_once
