"""Research tooling built on the LoadGen core, with its own front door (`python -m research`).

study (the LoadGen grid, one launched run per cell) -> collect (run folders -> rows), answer (the
answer in words), report and plots (study.md, CSVs, figures); speed (in-process micro-benchmarks);
benchmark (the SUT against a plain loop and the reference design); gpu_check (real shapes on a
GPU). Every run is started through harness.launch and read back through harness.run_record;
nothing in harness/, sut/, models/ or tasks/ imports this package.
"""
