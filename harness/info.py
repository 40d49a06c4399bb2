"""`make info`: versions, devices, paths and registries, so a bug report carries the whole context."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from common.paths import BUILD, DATA, REPO
from tasks.data import cache_root

PACKAGES = ("torch", "transformers", "adapters", "onnxruntime", "mlperf_loadgen", "numpy", "onnx", "ray")


def package_versions() -> dict[str, str | None]:
    """Installed version of each runtime dependency (None when missing)."""
    dist = {"mlperf_loadgen": "mlcommons-loadgen", "onnxruntime": None}
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        candidates = [dist[name]] if dist.get(name) else [name]
        if name == "onnxruntime":
            candidates = ["onnxruntime", "onnxruntime-gpu"]
        out[name] = None
        for cand in candidates:
            try:
                out[name] = version(cand)
                break
            except PackageNotFoundError:
                continue
    return out


def git_state(repo: Path = REPO) -> dict[str, Any]:
    """sha of HEAD and whether tracked files differ from it ("unknown" outside a checkout)."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=repo,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        return {"git_sha": sha, "git_dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"git_sha": "unknown", "git_dirty": None}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def device_info() -> dict[str, Any]:
    """CPU model, cores, memory, GPUs (name + memory) and ONNX Runtime providers."""
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "gpus": [],
        "onnxruntime_providers": [],
    }
    try:
        # lazy: torch takes seconds to import, and info must print even where it is broken
        import torch  # noqa: PLC0415

        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                info["gpus"].append({"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1)})
    except ImportError:
        pass
    try:
        # lazy: onnxruntime is optional (the cpu or gpu extra)
        import onnxruntime  # noqa: PLC0415

        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        pass
    return info


def _registries() -> dict[str, Any]:
    """Names users can type, read from the registries (an import error is reported, not raised)."""
    out: dict[str, Any] = {}
    for key, module, attr in (
        ("tasks", "tasks.registry", "TASKS"),
        ("models", "models.registry", "MODELS"),
        ("backends", "models.backends", "BACKENDS"),
        ("scenarios", "sut.registry", "SCENARIOS"),
    ):
        try:
            out[key] = sorted(getattr(importlib.import_module(module), attr))
        except Exception as exc:  # noqa: BLE001 - info must print whatever is broken
            out[key] = f"unavailable ({type(exc).__name__}: {exc})"
    return out


def collect() -> dict[str, Any]:
    return {
        "versions": package_versions(),
        **git_state(),
        "device": device_info(),
        "paths": {
            "repo": str(REPO),
            "data": str(DATA),
            "cache": str(cache_root()),
            "models": str(BUILD / "models"),
            "logs": str(BUILD / "logs"),
            "user_conf": str(REPO / "user.conf"),
            "audit_conf": str(REPO / "audit.conf"),
        },
        "registries": _registries(),
    }


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def main(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for section, values in info.items():
        if isinstance(values, dict):
            print(f"{section}:")
            for k, v in values.items():
                print(f"  {k:<22} {v}")
        else:
            print(f"{section:<24} {values}")
    return 0
