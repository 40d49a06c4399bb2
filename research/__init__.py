"""Research tooling built on the LoadGen core, with its own front door (`python -m research`).

study (the LoadGen grid, one launched run per cell; presets in research/grids/, planning rates in
research/rates.toml) -> collect (run folders -> one DataFrame, and its views), report and plots
(study.md tables, CSVs, figures); multitask; mutation (the mutation report). Runs are built and
timed with bench.measure (bench/: the harness-efficiency benchmark, below this package), started
through harness.launch and read back through harness.run_record; nothing in bench/, harness/,
sut/, models/ or tasks/ imports this package.
"""
