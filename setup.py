"""Installable MLPerf Inference harness for cross-lingual XLM-R encoders (see README.md)."""

from setuptools import find_packages, setup

RAY = "ray==2.60.0"

setup(
    name="xlmr-mlperf-harness",
    version="0.1.0",
    description="MLPerf LoadGen harness for XLM-R (full / adapter / LoRA fine-tuned) on XTREME tasks",
    python_requires=">=3.11",  # tomllib: research/ reads its presets and rates with it
    packages=find_packages(
        include=["common*", "harness*", "sut*", "models*", "tasks*", "zoo*", "bench*", "research*"]
    ),
    package_data={"research": ["rates.toml", "grids/*.toml"]},  # the study's presets and rates
    py_modules=[
        "accuracy_xnli",
        "accuracy_pawsx",
        "accuracy_tydiqa",
        "accuracy_bucc",
        "accuracy_tatoeba",
    ],
    install_requires=[
        # LoadGen: the version whose mlperf.conf seeds the submission checker expects (v6.1).
        "mlcommons-loadgen==6.0.17",
        # CPU wheel on these machines; on GPU machines install the CUDA build of the same version first.
        "torch==2.13.0",
        # adapters 1.3 pins transformers ~=4.57.6.
        "transformers~=4.57.6",
        "adapters~=1.3.0",
        "sentencepiece>=0.2",
        "protobuf>=4",
        "onnx>=1.16",
        "numpy>=1.26",
        "tqdm>=4.66",
        "matplotlib>=3.8",
    ],
    extras_require={
        "cpu": ["onnxruntime>=1.18"],
        "gpu": ["onnxruntime-gpu>=1.18"],
        # --executor ray (sut/ray_executor.py): the core package only (no dashboard), pinned
        "ray": [RAY],
        # the Ray tests run in CI; mutmut: mutation testing by hand (docs/mutation_testing.md), not in CI
        "dev": ["pytest>=8", "ruff>=0.5", RAY, "mutmut==3.8.1"],
        # research/ (the study's analysis): one DataFrame of run records, library statistics
        "research": ["pandas>=2.2", "scipy>=1.13"],
    },
    entry_points={"console_scripts": ["xlmr-harness=harness.cli:main"]},
)
