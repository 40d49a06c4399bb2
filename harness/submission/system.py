"""`systems/<system>.json`: the system description, filled from the machine the runs were made on.

Precedence (later wins): templates/system.json defaults < what the run recorded (its RunRecord's
`device` and `versions`, from run_config.json) or, failing that, this machine < a user file passed
as --system_json.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from harness.info import device_info, package_versions
from harness.run_record import RunRecord
from harness.submission.layout import DIVISION, SYSTEM_FIELDS

TEMPLATE = Path(__file__).parent / "templates" / "system.json"


def _accelerators(gpus: list[dict[str, Any]]) -> dict[str, str]:
    if not gpus:
        return {
            "accelerators_per_node": "0",
            "accelerator_model_name": "N/A",
            "accelerator_memory_capacity": "N/A",
        }
    names = sorted({str(g.get("name", "GPU")) for g in gpus})
    mem = gpus[0].get("memory_gib")
    return {
        "accelerators_per_node": str(len(gpus)),
        "accelerator_model_name": " + ".join(names),
        "accelerator_memory_capacity": f"{mem} GiB" if mem else "undisclosed",
    }


def _framework(versions: dict[str, Any], backend: str) -> tuple[str, str]:
    """(framework, other_software_stack) strings from recorded package versions."""
    fw = {"onnxruntime": f"ONNX Runtime {versions.get('onnxruntime')}"}.get(backend)
    fw = fw or f"PyTorch {versions.get('torch')}"
    others = [f"{k} {v}" for k, v in sorted(versions.items()) if v and k not in ("torch",)]
    return fw, ", ".join(others)


def build_system_json(
    submitter: str,
    system_name: str,
    run: RunRecord | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every required field present; detected values from the machine `run` ran on (else this one)."""
    desc = {k: v for k, v in json.loads(TEMPLATE.read_text()).items() if not k.startswith("_")}
    device = dict(run.device) if run else {}
    versions = dict(run.versions) if run else {}
    if not device or not versions:
        device = device or device_info()
        versions = versions or package_versions()
    framework, others = _framework(versions, run.backend if run else "pytorch")
    mem = device.get("memory_gib")
    desc.update(
        {
            "division": DIVISION,
            "submitter": submitter,
            "system_name": system_name,
            "host_processor_model_name": str(
                device.get("cpu_model") or platform.processor() or "unknown"
            ),
            "host_processor_core_count": str(device.get("cpu_cores") or "unknown"),
            "host_memory_capacity": f"{mem} GiB" if mem else "undisclosed",
            "operating_system": str(device.get("os") or f"{platform.system()} {platform.release()}"),
            "framework": framework,
            "other_software_stack": others or "N/A",
            **_accelerators(list(device.get("gpus") or [])),
        }
    )
    desc.update(overrides or {})
    missing = [k for k in SYSTEM_FIELDS if k not in desc]
    if missing:  # the template is ours: a missing field is a bug here, not a user error
        raise AssertionError(f"system description lacks {missing}")
    return desc
