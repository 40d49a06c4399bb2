"""Where the zoo trains, and whether it autocasts to bf16 there.

The zoo trains on the first CUDA GPU torch sees, else on the CPU; the environment variable ZOO_DEVICE
(`cpu`, `cuda`, `cuda:N`) chooses instead, for every stage of a build, a selection or a study. bf16
autocast (the recipe's `bf16`): on a GPU where it supports bf16 (Ampere and later), on a CPU only
where it multiplies bf16 natively (models/cpu_caps.py `autocast_bf16`). A stage trained anywhere but
the CPU records the device in its zoo.json (training "device"); seeds trained on different devices
are different checkpoints (GPU kernels round differently).
"""

from __future__ import annotations

import os

from models.cpu_caps import autocast_bf16

ENV = "ZOO_DEVICE"


def training_device() -> str:
    """ZOO_DEVICE where set, else `cuda` where torch sees a GPU, else `cpu`. ValueError, naming the
    variable, for a value that is no device or a GPU torch cannot see."""
    import torch  # noqa: PLC0415  (lazy: this module is imported by the light CLI paths)

    value = os.environ.get(ENV, "").strip()
    if not value:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(value)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"{ENV}={value!r} is not a training device: use cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{ENV}={value}: torch {torch.__version__} sees no CUDA GPU on this machine")
    return str(device)


def autocast_bf16_on(device: str, wanted: bool = True) -> bool:
    """Whether training and probes on `device` autocast to bf16 when the recipe wants it."""
    if not wanted:
        return False
    if device.startswith("cuda"):
        import torch  # noqa: PLC0415

        return torch.cuda.is_bf16_supported()
    return autocast_bf16(True)
