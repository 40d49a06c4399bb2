"""What this CPU's matrix hardware offers, probed once per process: which bf16 kernel a run gets.

bf16 on CPU is worth serving only where the hardware multiplies bf16 natively:
  amx          Intel AMX tiles with bf16 (`amx_bf16`, `amx_tile`; Sapphire Rapids and later): oneDNN's
               AMX kernels, several times the fp32 GEMM rate
  avx512_bf16  AVX512-BF16 (`avx512_bf16`; Cooper Lake, Zen 4 and later) without AMX: bf16 dot
               products in vector registers, served with a printed warning (no AMX here)
  None         neither: torch then converts every bf16 GEMM in software. Measured on this project's
               2-core AMD EPYC (AVX2 only): a 1280x384 by 384x1536 matmul at 87 GFLOPS in fp32 and
               1.3 GFLOPS in bf16 (67x slower), so bf16 is refused there (exit 3)
The probe asks torch (`torch.cpu._is_amx_tile_supported` also checks that the kernel lets the process
use the tiles) and the kernel's flag list (`/proc/cpuinfo`); tests replace `probe` with a fixed answer.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CpuCaps:
    """model: the CPU's name; amx_bf16 / avx512_bf16: bf16 matrix instructions usable here;
    amx_int8 / avx512_vnni / avx_vnni: int8 dot products accumulated straight into int32."""

    model: str
    amx_bf16: bool
    avx512_bf16: bool
    amx_int8: bool = False
    avx512_vnni: bool = False
    avx_vnni: bool = False

    @property
    def int8_exact(self) -> bool:
        """Whether ONNX Runtime's u8 x s8 GEMM is exact for full-range int8 weights here. Without a
        VNNI or AMX int8 instruction its AVX2 kernel (vpmaddubsw) adds each pair of u8 x s8 products
        in int16 and saturates once a pair passes 32,767 (255 x 127 x 2 = 64,770): measured here, a
        MatMulInteger of uniform u8 activations and s8 weights in [-127, 127] was wrong in 99.9% of
        its outputs, and exact with weights in [-64, 64] (ONNX Runtime's reduce_range)."""
        return self.amx_int8 or self.avx512_vnni or self.avx_vnni

    @property
    def bf16_kernel(self) -> str | None:
        """The bf16 kernel: amx, avx512_bf16, or None (no native bf16: see the module docstring)."""
        if self.amx_bf16:
            return "amx"
        if self.avx512_bf16:
            return "avx512_bf16"
        return None


def _cpuinfo() -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first processor in /proc/cpuinfo; ("", {}) where it is unreadable."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return "", frozenset()
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = frozenset(value.split())
    return model, flags


@functools.lru_cache(maxsize=1)
def probe() -> CpuCaps:
    """This machine's CpuCaps (cached: the answer cannot change within a process)."""
    # lazy: torch takes seconds to import, and the config check and the ONNX backend import this module
    import torch  # noqa: PLC0415

    model, flags = _cpuinfo()
    cpu = torch.cpu
    tiles = bool(getattr(cpu, "_is_amx_tile_supported", lambda: "amx_tile" in flags)())
    bf16 = bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: "avx512_bf16" in flags)())
    vnni = bool(getattr(cpu, "_is_vnni_supported", lambda: "avx512_vnni" in flags)())
    return CpuCaps(
        model=model or "unknown CPU",
        amx_bf16=tiles and "amx_bf16" in flags,
        avx512_bf16=bf16,
        amx_int8=tiles and "amx_int8" in flags,
        avx512_vnni=vnni,
        avx_vnni="avx_vnni" in flags,
    )


def bf16_kernel(caps: CpuCaps | None = None) -> str:
    """The bf16 kernel a CPU run gets ("amx" or "avx512_bf16"); ValueError (one line, exit 3 at the
    CLI) on a CPU with neither."""
    caps = caps or probe()
    kernel = caps.bf16_kernel
    if kernel is None:
        raise ValueError(
            f"dtype bf16 on CPU needs AMX (amx_bf16) or AVX512-BF16, and this CPU ({caps.model}) has "
            "neither (bf16 would run in software, many times slower than fp32): use --dtype fp32"
        )
    return kernel


def bf16_warning(kernel: str) -> str | None:
    """The line printed when bf16 runs without AMX (None with AMX)."""
    if kernel == "amx":
        return None
    return (
        f"warning: this CPU has no AMX: bf16 runs on {kernel} kernels (slower than AMX; compare "
        "against fp32 before keeping it)"
    )


def autocast_bf16(wanted: bool = True) -> bool:
    """Whether CPU training and probes should autocast to bf16: only where the CPU multiplies bf16
    natively (AMX or AVX512-BF16). Elsewhere bf16 runs in software, tens of times slower than fp32
    (the module docstring), so the zoo's recipe trains in fp32 there, and says so once."""
    if not wanted:
        return False
    if probe().bf16_kernel is not None:
        return True
    _say_fp32_once()
    return False


@functools.lru_cache(maxsize=1)
def _say_fp32_once() -> None:
    print(
        f"[models] {probe().model} has no native bf16 (AMX or AVX512-BF16): training in fp32 "
        "instead of bf16 autocast",
        file=sys.stderr,
        flush=True,
    )
