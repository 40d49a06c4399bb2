"""Score an MLPerf accuracy log of PAWS-X: python accuracy_pawsx.py mlperf_log_accuracy.json [--help]."""

import sys

from tasks.scoring.cli import main

if __name__ == "__main__":
    sys.exit(main("pawsx"))
