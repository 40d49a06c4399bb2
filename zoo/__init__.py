"""The model zoo's training: the package that builds what models/ serves (`python -m zoo build`).

recipe (the stages a zoo or one run needs, sizes, locks, the build command's flags), stages (one
training function per stage and learning kind), pretrain (the tiny encoder's tokenizer and masked-LM
pretraining), evaluate (held-out figures -> reports/zoo.md), select (`python -m zoo select`: learning
rate and epochs per model on an English dev split) and choice (its rule and selected.toml), cli (the
front door). It sits above
models/ (whose loaders read what it writes) beside harness/: the core never imports it, and a run
that finds a stage missing names the command that builds it (models/zoo_layout.py).
"""
