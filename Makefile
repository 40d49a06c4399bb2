# Thin front door: every target is one call into a Python CLI: python -m harness ... (the LoadGen
# core, find_peak, compliance and submission), python -m zoo build (the model zoo), python -m bench
# benchmark (the harness benchmark; gpu_check is its peak section on a GPU) or python -m research
# study; `run` is two: the build of what it serves, then the run.
# Variables use ?= so they can come from the command line; RUN_ARGS passes anything else through.

PYTHON_SYS ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
EXTRAS     ?= cpu,dev,research  # GPU machines: make install EXTRAS=gpu,dev,research

SCENARIO   ?= Offline
MODEL      ?= full
TASK       ?= xnli
# ONNX Runtime: on a 2-core AVX2 CPU it serves e5-small `adapter-squad` single samples in 0.44x
# PyTorch's time at the same Offline rate (docs/configuration.md); the CLI's default is pytorch
BACKEND    ?= onnxruntime
EXECUTOR   ?=
# the real pretrained encoder (docs/zoo.md); ENCODER=tiny: the offline test zoo
ENCODER    ?= e5-small
ACCURACY   ?=
DURATION   ?=
COUNT      ?=
LOG_DIR    ?=
TEST       ?= TEST01
SUBMITTER  ?= MyOrg
SYSTEM     ?= $(shell hostname -s)
CHECKER    ?=
# a checkout of mlcommons/inference at tag v5.0: its checker knows round v4.1 (datacenter Server)
CHECKER_V41 ?=
RUN_ARGS   ?=
# flags for the zoo build only (`make run` builds a missing model first), e.g. --tiny-test in tests
ZOO_ARGS   ?=
QUICK      ?=
# gpu_check: DRY=1 runs the same path on CPU with the tiny shape (its numbers check the code only)
DRY        ?=
PYTEST_ARGS ?=

run_flags = --scenario $(SCENARIO) --model $(MODEL) --task $(TASK) --backend $(BACKEND) \
	$(if $(ENCODER),--encoder $(ENCODER)) $(if $(ACCURACY),--accuracy) \
	$(if $(DURATION),--duration $(DURATION)) $(if $(COUNT),--count $(COUNT)) \
	$(if $(LOG_DIR),--output_dir $(LOG_DIR)) \
	$(if $(EXECUTOR),--executor $(EXECUTOR))

.PHONY: install run test lint format info clean models find_peak compliance \
	stage_results truncate_results check_submission pack_submission submission \
	benchmark study gpu_check

$(STAMP): setup.py
	$(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# torch first, pinned: an unpinned torch resolves to a multi-GB CUDA build.
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[$(strip $(EXTRAS))]"
	touch $(STAMP)

install: $(STAMP)

# Exit status (README, "Exit codes"): the runner prints `exit status N: meaning` as its last line and
# make reports the same N ("Error N"). GNU make's own status can only be 0 or 2 (or the signal that
# stopped it: Ctrl-C gives the shell 130), whatever the recipe returns; scripts that branch on
# INVALID (1), SUT failure (2) or bad input (3) call `$(PY) -m harness run ...` directly.
# `harness run` only serves: first the zoo build of what this run serves and is missing (nothing when
# it is built; announced with its measured minutes when not). The build reads the run's flags,
# RUN_ARGS included (--models_dir, --weights, --e5_wheels for an air-gapped e5-small), and ignores
# those it does not use; a build that fails stops make before the run (its one `error:` line, exit 3).
run: $(STAMP)
	$(PY) -m zoo build --for_run $(run_flags) $(RUN_ARGS) $(ZOO_ARGS)
	$(PY) -m harness run $(run_flags) $(RUN_ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

info: $(STAMP)
	$(PY) -m harness info

models: $(STAMP)
	$(PY) -m zoo build $(if $(ENCODER),--encoder $(ENCODER)) $(RUN_ARGS) $(ZOO_ARGS)

find_peak: $(STAMP)
	$(PY) -m harness find_peak $(run_flags) $(RUN_ARGS)

compliance: $(STAMP)
	$(PY) -m harness compliance --test $(TEST) $(run_flags) $(RUN_ARGS)

# One flag set for the four steps (each takes every flag and uses those it needs), so RUN_ARGS such
# as --allow_test_runs reaches the whole chain.
sub_flags = --submitter $(SUBMITTER) --system $(SYSTEM) $(if $(LOG_DIR),--log_dir $(LOG_DIR)) \
	$(if $(CHECKER),--checker $(CHECKER)) $(if $(CHECKER_V41),--checker_v4_1 $(CHECKER_V41)) $(RUN_ARGS)

stage_results: $(STAMP)
	$(PY) -m harness submission stage $(sub_flags)

truncate_results: $(STAMP)
	$(PY) -m harness submission truncate $(sub_flags)

check_submission: $(STAMP)
	$(PY) -m harness submission check $(sub_flags)

pack_submission: $(STAMP)
	$(PY) -m harness submission pack $(sub_flags)

# The chain runs in this order in one recipe (so `make -j` cannot run the steps side by side), and
# the first step that fails stops it: pack never wraps a tree that stage or check refused.
submission: $(STAMP)
	$(PY) -m harness submission stage $(sub_flags)
	$(PY) -m harness submission truncate $(sub_flags)
	$(PY) -m harness submission check $(sub_flags)
	$(PY) -m harness submission pack $(sub_flags)

benchmark: $(STAMP)
	$(PY) -m bench benchmark $(RUN_ARGS)

# the e5-small study (docs/study.md): the whole grid, about 3 h 4 min here; QUICK=1: under 20 min;
# PRESET=NAME: another of research/grids/ (e5-small-xnli-seeds, e5-small-v2, e5-small-curve)
study: $(STAMP)
	$(PY) -m research study --preset $(or $(PRESET),$(if $(QUICK),e5-small-quick,e5-small)) $(RUN_ARGS)

# the prepared GPU check (docs/benchmark.md): the benchmark's peak section on CUDA, XLM-R large shape
# with random weights, PyTorch bf16 and ONNX Runtime fp16 beside PyTorch fp32, forms started within
# 7 minutes; DRY=1: tiny shape on CPU, 1-second runs on 64 English samples (needs `make models`)
gpu_forms := pytorch-bf16,onnxruntime-fp16
dry_forms := pytorch,onnxruntime
gpu_flags = --device cuda --peak_encoder large --peak_forms $(gpu_forms) --peak_shape 8192,8192,8192 \
	--duration 20 --budget 420 --peak_out reports/gpu_check.md
dry_flags = --device cpu --peak_encoder tiny --peak_forms $(dry_forms) --peak_shape 512,512,512 \
	--duration 1 --languages en --count 64 --peak_repeats 3 --peak_out build/gpu_check/gpu_check.md
gpu_check: $(STAMP)
	$(PY) -m bench benchmark --sections peak --peak_weights random --runs_dir build/gpu_check \
		$(if $(DRY),$(dry_flags),$(gpu_flags)) $(RUN_ARGS)

clean:
	rm -rf build .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
