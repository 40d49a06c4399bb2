"""Hand-made mutations of the submission, bootstrap and study-statistics code, each against the tests
written for it.

nice -n 19 python reports/scripts/mutation_hand_checks.py [FILE ...]   (from the repository root, on
a clean tree; FILE: only the cases that mutate these files)

For each case: replace one piece of source text, run the named tests, restore the file; prints
KILLED (a test failed) or SURVIVED. A quick check of the tests of docs/mutation_testing.md when a
full mutmut run does not fit the CPU time (reports/mutation.md has the last output).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CASES = [
    (  # mutmut's tasks.scoring.retrieval.x_mine__mutmut_67
        "tasks/scoring/retrieval.py",
        'for i in np.argsort(-score, kind="stable"):',
        "for i in np.argsort(-score, kind=None):",
        "tests/test_scoring_mutants.py -k equal_margins",
    ),
    (  # mutmut's tasks.scoring.retrieval.x_mine__mutmut_69
        "tasks/scoring/retrieval.py",
        'for i in np.argsort(-score, kind="stable"):',
        "for i in np.argsort(-score):",
        "tests/test_scoring_mutants.py -k equal_margins",
    ),
    (  # mutmut's tasks.scoring.retrieval.x_mine__mutmut_84
        "tasks/scoring/retrieval.py",
        'order = np.argsort(-score[keep], kind="stable")',
        "order = np.argsort(-score[keep], kind=None)",
        "tests/test_scoring_mutants.py -k equal_margins",
    ),
    (  # mutmut's tasks.scoring.retrieval.x_mine__mutmut_86
        "tasks/scoring/retrieval.py",
        'order = np.argsort(-score[keep], kind="stable")',
        "order = np.argsort(-score[keep])",
        "tests/test_scoring_mutants.py -k equal_margins",
    ),
    (  # mutmut's tasks.scoring.retrieval.x_optimize_threshold__mutmut_11
        "tasks/scoring/retrieval.py",
        'np.errstate(invalid="ignore", divide="ignore")',
        'np.errstate(invalid=None, divide="ignore")',
        "tests/test_scoring_mutants.py -k best_f1_not",
    ),
    (  # mutmut's tasks.scoring.retrieval.x_score_bucc__mutmut_34
        "tasks/scoring/retrieval.py",
        "p.src_ids, p.en_ids, duplicates)",
        "p.src_ids, p.en_ids, None)",
        "tests/test_scoring_mutants.py -k duplicates_all_reaches",
    ),
    (  # mutmut's tasks.scoring.retrieval.x_mine_ids__mutmut_1
        "tasks/scoring/retrieval.py",
        'duplicates: str = "drop",\n) -> list',
        'duplicates: str = "XXdropXX",\n) -> list',
        "tests/test_scoring_mutants.py -k by_default",
    ),
    (  # mutmut's tasks.scoring.log.xǁ_Scannerǁtruncated__mutmut_5
        "tasks/scoring/log.py",
        '"or is this the submission checker\'s truncated copy? Score the full log)"',
        '"XXor is this the submission checker\'s truncated copy? Score the full log)XX"',
        "tests/test_scoring_mutants.py -k whole_advice",
    ),
    (  # mutmut's tasks.scoring.log.xǁ_Scannerǁtruncated__mutmut_6
        "tasks/scoring/log.py",
        '"or is this the submission checker\'s truncated copy? Score the full log)"',
        '"or is this the submission checker\'s truncated copy? score the full log)"',
        "tests/test_scoring_mutants.py -k whole_advice",
    ),
    (  # mutmut's tasks.scoring.retrieval.x_pair_embeddings__mutmut_9
        "tasks/scoring/retrieval.py",
        "covered = check_coverage(log, n, task.name)",
        "covered = check_coverage(log, n, None)",
        "tests/test_scoring_mutants.py -k name_the_task",
    ),
    (  # mutmut's tasks.scoring.retrieval.x_pair_embeddings__mutmut_15
        "tasks/scoring/retrieval.py",
        "width = check_uniform_width(log, task.name)",
        "width = check_uniform_width(log, None)",
        "tests/test_scoring_mutants.py -k name_the_task",
    ),
    (  # mutmut's tasks.scoring.retrieval.x_mine__mutmut_81
        "tasks/scoring/retrieval.py",
        "keep[i] = score[i] > 0",
        "keep[i] = score[i] > 1",
        "tests/test_scoring_mutants.py -k simple_margin_mining",
    ),
    (  # mutmut's tasks.scoring.retrieval.x_mine__mutmut_21
        "tasks/scoring/retrieval.py",
        "x2y_sim / ((x2y_mean[:, None] + y2x_mean[x2y_idx]) / 2)",
        "x2y_sim * ((x2y_mean[:, None] + y2x_mean[x2y_idx]) / 2)",
        "tests/test_scoring_mutants.py -k simple_margin_mining",
    ),
    (  # mutmut's tasks.scoring.retrieval.x_mine__mutmut_22
        "tasks/scoring/retrieval.py",
        "x2y_sim / ((x2y_mean[:, None] + y2x_mean[x2y_idx]) / 2)",
        "x2y_sim / ((x2y_mean[:, None] + y2x_mean[x2y_idx]) * 2)",
        "tests/test_scoring_mutants.py -k simple_margin_mining",
    ),
    (  # mutmut's tasks.scoring.retrieval.x_mine__mutmut_26
        "tasks/scoring/retrieval.py",
        "y2x_sim / ((y2x_mean[:, None] + x2y_mean[y2x_idx]) / 2)",
        "y2x_sim * ((y2x_mean[:, None] + x2y_mean[y2x_idx]) / 2)",
        "tests/test_scoring_mutants.py -k simple_margin_mining",
    ),
    (  # mutmut's tasks.scoring.retrieval.x_mine__mutmut_27
        "tasks/scoring/retrieval.py",
        "y2x_sim / ((y2x_mean[:, None] + x2y_mean[y2x_idx]) / 2)",
        "y2x_sim / ((y2x_mean[:, None] + x2y_mean[y2x_idx]) * 2)",
        "tests/test_scoring_mutants.py -k simple_margin_mining",
    ),
    (  # mutmut's tasks.scoring.retrieval.x_mine_ids__mutmut_33
        "tasks/scoring/retrieval.py",
        "len(rows_t) > 1",
        "len(rows_t) > 2",
        "tests/test_scoring_mutants.py -k english_side",
    ),
    (  # mutmut's tasks.scoring.retrieval.x_score_bucc__mutmut_185
        "tasks/scoring/retrieval.py",
        '"predictions.tsv", warnings, per_sample',
        '"predictions.tsv", per_sample',
        "tests/test_scoring_mutants.py -k warnings_of_a_partial",
    ),
    (  # mutmut's tasks.scoring.retrieval.x_mine_ids__mutmut_2
        "tasks/scoring/retrieval.py",
        'duplicates: str = "drop",\n) -> list',
        'duplicates: str = "DROP",\n) -> list',
        "tests/test_scoring_mutants.py -k by_default",
    ),
    (  # mutmut's tasks.scoring.retrieval.x_source_counts__mutmut_15
        "tasks/scoring/retrieval.py",
        "counts.setdefault(s, [0, 0, 0])[2] += 1",
        "counts.setdefault(s, [0, 0, 0])[2] = 1",
        "tests/test_scoring_mutants.py -k every_gold_pair",
    ),
    (  # mutmut's tasks.scoring.retrieval.x_optimize_threshold__mutmut_36
        "tasks/scoring/retrieval.py",
        "2 * p * r / (p + r)",
        "2 * p * r * (p + r)",
        "tests/test_scoring_mutants.py -k best_f1_not",
    ),
    (  # mutmut's tasks.scoring.retrieval.x_optimize_threshold__mutmut_13
        "tasks/scoring/retrieval.py",
        'np.errstate(invalid="ignore", divide="ignore")',
        'np.errstate(divide="ignore")',
        "tests/test_scoring_mutants.py -k best_f1_not",
    ),
    (  # mutmut's tasks.scoring.retrieval.x_score_bucc__mutmut_41
        "tasks/scoring/retrieval.py",
        "p.src_ids, p.en_ids, duplicates)",
        "p.src_ids, p.en_ids)",
        "tests/test_scoring_mutants.py -k duplicates_all_reaches",
    ),
    (  # mutmut's tasks.scoring.log.xǁ_Scannerǁrest__mutmut_2
        "tasks/scoring/log.py",
        "while len(self.buf) - self.pos < n and self._more():",
        "while len(self.buf) + self.pos < n and self._more():",
        "tests/test_scoring_mutants.py -k chunk_boundary",
    ),
    (  # mutmut's tasks.scoring.log.xǁ_Scannerǁtruncated__mutmut_7
        "tasks/scoring/log.py",
        '"or is this the submission checker\'s truncated copy? Score the full log)"',
        '"OR IS THIS THE SUBMISSION CHECKER\'S TRUNCATED COPY? SCORE THE FULL LOG)"',
        "tests/test_scoring_mutants.py -k whole_advice",
    ),
    (
        "harness/submission/compliance.py",
        "passed = mismatched == 0 and matched > 0",
        "passed = mismatched == 0",
        "tests/test_compliance.py::test_accuracy_fails_when_no_qsl_idx_overlaps",
    ),
    (
        "harness/submission/compliance.py",
        "r <= 200_000",
        "r < 200_000",
        "tests/test_submission_mutants.py -k threshold_by_scenario",
    ),
    (
        "harness/submission/compliance.py",
        "r <= 1_600_000",
        "r < 1_600_000",
        "tests/test_submission_mutants.py -k threshold_by_scenario",
    ),
    (
        "harness/submission/compliance.py",
        'ref.get("effective_target_latency_ns") != test.get(',
        'ref.get("effective_target_latency_ns") == test.get(',
        "tests/test_submission_mutants.py -k report_and_refusals",
    ),
    (
        "harness/submission/compliance.py",
        "bound = TEST01_FALLBACK_DELTA_PERCENT.get(mapped, 1.0)",
        "bound = 1.0",
        "tests/test_submission_mutants.py -k test01_accuracy_passed",
    ),
    (
        "harness/submission/truncate.py",
        "if size < VIEWABLE_BYTES:",
        "if size <= VIEWABLE_BYTES:",
        "tests/test_submission_mutants.py -k truncate_file",
    ),
    (
        "harness/submission/truncate.py",
        "log.stat().st_size <= MAX_ACCURACY_LOG_BYTES",
        "log.stat().st_size < MAX_ACCURACY_LOG_BYTES",
        "tests/test_submission_mutants.py -k limit_is_10_kib",
    ),
    (
        "harness/submission/stage.py",
        "res.exit_status not in (None, 0, 1)",
        "res.exit_status not in (None, 0)",
        "tests/test_submission_mutants.py -k accuracy_run_problems",
    ),
    (
        "harness/submission/stage.py",
        'if not d.startswith("count ")',
        'if not d.startswith("counts ")',
        "tests/test_submission_mutants.py -k except_its_count",
    ),
    (
        "research/bootstrap.py",
        "draw = rng.integers(0, n, size",
        "draw = rng.integers(0, n - 1, size",
        "tests/test_bootstrap_mutants.py -k three_possible_values",
    ),
    (
        "research/bootstrap.py",
        "for start in range(0, n_boot, 250):  # bounded",
        "for start in range(0, n_boot - 250, 250):  # bounded",
        "tests/test_bootstrap_mutants.py -k three_possible_values",
    ),
    (
        "research/bootstrap.py",
        "order.append(r.languages[lang][1][[pos[i] for i in ids]])",
        "order.append(r.languages[lang][1])",
        "tests/test_bootstrap_mutants.py -k aligned_puts",
    ),
    (  # the learning curve's gap change: a side's variance scaled by c, not c^2 (negative for -1)
        "research/accuracy.py",
        "seeds_var = 0.0 if exact else c * c * statistics.variance(s.values()) / n",
        "seeds_var = 0.0 if exact else c * statistics.variance(s.values()) / n",
        "tests/test_curve.py -k welch_interval",
    ),
    (  # Welch's df with n, not n - 1, per seed side
        "research/accuracy.py",
        "math.inf if exact else n - 1))",
        "math.inf if exact else n))",
        "tests/test_curve.py -k welch_interval",
    ),
    (  # the first point's b counted with the later point's sign
        "research/curve.py",
        "(base, base_scores, b, 1.0)]",
        "(base, base_scores, b, -1.0)]",
        "tests/test_curve.py -k welch_interval",
    ),
    (  # XNLI resampled by row within each language, not by premise across languages
        "research/curve.py",
        "resample(runs, n_boot, seed, CLUSTERS[TASK])",
        "resample(runs, n_boot, seed)",
        "tests/test_curve.py -k premise",
    ),
    (  # the test set's share left out
        "research/curve.py",
        "[(c, s, False) for c, s in zip(coefficients, seeds, strict=True)], test_var",
        "[(c, s, False) for c, s in zip(coefficients, seeds, strict=True)], 0.0",
        "tests/test_curve.py -k premise",
    ),
    (  # no Holm correction over the changes
        "research/curve.py",
        "levels = holm_levels([e.p for e in estimates.values()], ALPHA)",
        "levels = [1 - ALPHA] * len(estimates)",
        "tests/test_curve.py -k welch_interval",
    ),
    (  # the change's words swapped
        "research/curve.py",
        'CHANGE_WORDS = ("rises", "falls")',
        'CHANGE_WORDS = ("falls", "rises")',
        "tests/test_curve.py -k welch_interval",
    ),
]


def main(files: list[str]) -> int:
    survived = 0
    for path, old, new, tests in CASES:
        if files and path not in files:
            continue
        file = Path(path)
        source = file.read_text()
        assert source.count(old) == 1, (path, old)
        file.write_text(source.replace(old, new))
        try:
            cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests.split()]
            proc = subprocess.run(cmd, capture_output=True, text=True)
        finally:
            file.write_text(source)
        verdict = "KILLED" if proc.returncode == 1 else f"SURVIVED (pytest exit {proc.returncode})"
        survived += proc.returncode != 1
        last = proc.stdout.strip().splitlines()[-1]
        print(f"{verdict}: {path}: {old!r} -> {new!r} [{last}]", flush=True)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
