"""Score an MLPerf accuracy log of TyDiQA-GoldP.

python accuracy_tydiqa.py mlperf_log_accuracy.json [--help]
"""

import sys

from tasks.scoring.cli import main

if __name__ == "__main__":
    sys.exit(main("tydiqa"))
