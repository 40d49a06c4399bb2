"""Research tooling built on the LoadGen core, with its own front door (`python -m research`).

study (the LoadGen grid, one launched run per cell; presets in research/grids/, planning rates in
research/rates.toml) -> collect (run folders -> one DataFrame, and its views), report and plots
(study.md tables, CSVs, figures); benchmark (the SUT against a plain loop and the reference design,
Ray, serving forms against GEMM peaks: also the GPU check); multitask; mutation (the mutation report).
Every run is started through harness.launch and read back through harness.run_record; nothing in
harness/, sut/, models/ or tasks/ imports this package.
"""
