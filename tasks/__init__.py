"""The task axis: XTREME tasks as QSL-ready datasets, and their metrics.

base (the Task contract and what every task declares: kind, labels, scoring method, metrics),
one module per task (xnli, tydiqa, tatoeba, bucc), registry (TASK= names, `register` to add one),
data (where data lives, strict readers), qsl (LoadGen's QSL over the pre-tokenised samples) and
scoring/ (accuracy logs -> metrics, behind the accuracy_<task>.py scripts and the runner).
"""
