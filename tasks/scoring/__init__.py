"""Scoring MLPerf accuracy logs exactly as XTREME scores predictions.

log.py             read + validate mlperf_log_accuracy.json (LogError on bad input)
classification.py  XNLI / PAWS-X accuracy (+ the held-out row constants of the tiny zoo)
squad.py           SQuAD v1.1 normalisation, EM, F1; n-best span decoding rules
qa.py              TyDiQA-GoldP: windows -> answers -> EM/F1
retrieval.py       Tatoeba top-1; BUCC ratio-margin mining and threshold
result.py          ScoreResult, the printed table, write_outputs(result, run_dir)
cli.py             SCORERS (a task's `scoring` -> its function), score(task, log), score_log(task
                   name, log path, **options) and main(task, argv) for accuracy_<task>.py
"""

from tasks.scoring.cli import SCORERS, main, score, score_log
from tasks.scoring.log import LogError
from tasks.scoring.result import ScoreResult, write_outputs

__all__ = ["SCORERS", "LogError", "ScoreResult", "main", "score", "score_log", "write_outputs"]
