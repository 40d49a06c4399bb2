"""Score a task-list run's accuracy log per task: python accuracy_mixed.py RUN/mlperf_log_accuracy.json.

Reads the run's run_config.json beside the log (each task's place in the union QSL, its options and
the tokenizer), writes RUN/<task>/ and RUN/accuracy.txt / accuracy.json (docs/multitask.md), and
prints every task's table and final line. Bad input: one `error:` line, exit 3."""

import sys

from tasks.mixed import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
