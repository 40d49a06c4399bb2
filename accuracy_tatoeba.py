"""Score an MLPerf accuracy log of Tatoeba.

python accuracy_tatoeba.py mlperf_log_accuracy.json [--help]
"""

import sys

from tasks.scoring.cli import main

if __name__ == "__main__":
    sys.exit(main("tatoeba"))
