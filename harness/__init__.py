"""The LoadGen core: one run from the command line to its self-describing run folder.

cli (the front door, `python -m harness`) -> config (RunConfig) -> runner (prepare the workload, run
one LoadGen test, score) with run_folder (its path and lock), settings (TestSettings from user.conf),
interrupts and progress (signals, the progress line), results (results.json), loadgen_log (the
detail log), retime (`--retime`), info (provenance); run_record (the one reader of a run folder) and
launch (the one way to start a run as a child process). Compliance and submission
live in harness/submission/ and use the core; the benchmarks (bench/) and the research tooling
(research/) use it too and are never imported by it. The flow of one run, file by file:
docs/architecture.md.
"""

__version__ = "0.1.0"
