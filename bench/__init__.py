"""Harness-efficiency benchmarks, with their own front door (`python -m bench`).

benchmark: the SUT against a plain loop and the MLCommons reference design (section `sut`), the Ray
executor's figures (`ray`) and each serving form against the machine's GEMM peaks (`peak`, also
`make gpu_check` on a GPU); measure holds what they share (building and sizing runs, the Server load
search, interleaved timing). These measure the harness itself, not the study: the study's tooling is
research/, which may import this package (its study and multitask commands build and time runs with
bench.measure); nothing here imports research, and nothing in harness/, sut/, models/ or tasks/
imports this package. Every run is started through harness.launch and read back through
harness.run_record.
"""
