"""bf16 on CPU: the capability probe (mocked), the refusal and warning paths, and the bf16 module's
numbers against fp32 on tiny random-weight models (the bf16 GEMMs run in software on a CPU without
native bf16: slow, but the numerics are what AMX computes: bf16 inputs, fp32 accumulation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.cli import main as cli_main
from harness.config import RunConfig
from models import cpu_caps
from models.backends import check_options, create_backend
from models.base import BackendOptions
from models.cpu_caps import CpuCaps
from models.registry import resolve

AMX = CpuCaps("Intel Xeon (mock)", amx_bf16=True, avx512_bf16=True, amx_int8=True, avx512_vnni=True)
AVX512 = CpuCaps("AMD EPYC Zen 4 (mock)", amx_bf16=False, avx512_bf16=True, avx512_vnni=True)
NEITHER = CpuCaps("AMD EPYC Zen 3 (mock)", amx_bf16=False, avx512_bf16=False)
BF16 = BackendOptions(dtype="bf16", threads=1)


@pytest.fixture
def cpu(monkeypatch):
    """Set the CPU the probe reports: cpu(AMX) etc."""

    def use(caps: CpuCaps) -> None:
        monkeypatch.setattr(cpu_caps, "probe", lambda: caps)

    return use


def test_probe_reads_the_kernel_flag_list(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
        "flags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n\n"
        "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n"
    )
    monkeypatch.setattr(cpu_caps, "CPUINFO", info)
    model, flags = cpu_caps._cpuinfo()
    assert model == "Intel(R) Xeon(R) Platinum 8480+"
    assert flags == {"fpu", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}
    monkeypatch.setattr(cpu_caps, "CPUINFO", tmp_path / "absent")
    assert cpu_caps._cpuinfo() == ("", frozenset())


def test_bf16_kernel_by_cpu():
    assert (AMX.bf16_kernel, AVX512.bf16_kernel, NEITHER.bf16_kernel) == ("amx", "avx512_bf16", None)
    # amx_bf16 without avx512_bf16 cannot happen on real parts, but AMX decides alone
    assert CpuCaps("x", amx_bf16=True, avx512_bf16=False).bf16_kernel == "amx"
    assert cpu_caps.bf16_warning("amx") is None
    assert cpu_caps.bf16_warning("avx512_bf16").startswith("warning: this CPU has no AMX")


def test_dtype_rules_per_backend_and_device(cpu):
    cpu(AMX)
    assert check_options("pytorch", BF16) == "amx"
    assert check_options("pytorch", BackendOptions()) is None
    assert check_options("pytorch", BackendOptions(device="cuda", dtype="bf16")) is None  # autocast
    assert check_options("noop", BF16) is None  # computes nothing: no hardware needed
    int8_hint = "backend pytorch serves fp32, bf16 on cpu, not int8; dtype int8 is served by onnxruntime"
    with pytest.raises(ValueError, match=int8_hint):
        check_options("pytorch", BackendOptions(dtype="int8"))
    with pytest.raises(ValueError, match="backend onnxruntime serves fp32, int8 on cpu, not bf16"):
        check_options("onnxruntime", BF16)
    with pytest.raises(ValueError, match="not fp16"):
        check_options("pytorch", BackendOptions(dtype="fp16"))
    cpu(AVX512)
    assert check_options("pytorch", BF16) == "avx512_bf16"
    cpu(NEITHER)
    with pytest.raises(ValueError, match=r"this CPU \(AMD EPYC Zen 3 \(mock\)\) has neither"):
        check_options("pytorch", BF16)
    assert check_options("pytorch", BackendOptions(device="cuda:1", dtype="bf16")) is None


def test_bf16_without_native_support_is_one_error_line_and_exit_3(cpu, capsys, tmp_path):
    cpu(NEITHER)
    with pytest.raises(ValueError, match="needs AMX"):
        RunConfig(dtype="bf16")
    rc = cli_main(["run", "--dtype", "bf16", "--duration", "1", "--output_dir", str(tmp_path)])
    err = capsys.readouterr().err.splitlines()
    assert rc == 3
    errors = [line for line in err if line.startswith("error:")]
    assert errors == [
        "error: dtype bf16 on CPU needs AMX (amx_bf16) or AVX512-BF16, and this CPU (AMD EPYC Zen 3 "
        "(mock)) has neither (bf16 would run in software, many times slower than fp32): use --dtype fp32"
    ]
    assert not any(tmp_path.iterdir())  # refused before any run folder was made


def _batch(vocab: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = rng.integers(5, min(vocab, 1000), size=(4, 24)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 12:], ids[1, 12:] = 0, 1
    mask[3, 5:], ids[3, 5:] = 0, 1
    return ids, mask


@pytest.mark.parametrize(
    "model,task,fp32_params",
    [
        # tiny: 4 layers x 128, FFN 512. fp32 = LayerNorms (embeddings + 2 per layer, 256 each: 2,304)
        # + the head: classification dense 128x128+128 and out_proj 128x3+3 (16,899); span 128x2+2 (258)
        ("full", "xnli", 2304 + 16899),
        ("full", "tydiqa", 2304 + 258),
        ("adapter-squad", "xnli", 2304 + 16899),  # AdapterFusion: the adapters' weights go bf16 too
        ("adapter", "xnli", 2304 + 16899),  # one Pfeiffer adapter, served without the library dispatch
        # retrieval: the encoder cut at its pooling layer (2 of 4): 256 x (1 + 2 x 2); no head, the mean
        # pooling runs on the fp32-cast hidden states
        ("full", "bucc", 1280),
    ],
)
def test_bf16_backend_matches_fp32_within_bf16_rounding(cpu, capsys, model, task, fp32_params):
    cpu(AMX)
    served = resolve(model, task, encoder="tiny", weights="random")
    torch.manual_seed(0)
    ref = create_backend("pytorch", served, BackendOptions(threads=1))
    bf16 = create_backend("pytorch", served, BF16)
    bf16.module.load_state_dict(ref.module.state_dict())  # random weights: the same ones on both
    ids, mask = _batch(int(served.encoder_config["vocab_size"]))
    want, got = ref.predict(ids, mask), bf16.predict(ids, mask)
    assert got.dtype == np.float32 and got.shape == want.shape
    # bf16 keeps 8 significant bits (relative step 2^-8 = 0.4%); 4 layers of it stay within 3%
    assert np.abs(got - want).max() <= 0.03 * np.abs(want).max()
    assert np.abs(got - want).max() > 0  # it did run in bf16
    d = bf16.describe()
    assert d["bf16_kernel"] == "amx" and d["parameters_by_dtype"]["fp32"] == fp32_params
    assert d["parameters_by_dtype"]["bf16"] + fp32_params == d["parameters"]
    assert "warning" not in capsys.readouterr().err  # AMX: nothing to warn about


def test_avx512_bf16_falls_back_with_one_printed_warning(cpu, capsys, monkeypatch):
    from models import pytorch_backend

    monkeypatch.setattr(pytorch_backend, "_WARNED", set())  # none printed yet in this process
    cpu(AVX512)
    served = resolve("full", "xnli", encoder="tiny", weights="random")
    backends = [create_backend("pytorch", served, BF16) for _ in range(2)]
    err = capsys.readouterr().err
    assert err.count("warning: this CPU has no AMX: bf16 runs on avx512_bf16 kernels") == 1
    assert [b.describe()["bf16_kernel"] for b in backends] == ["avx512_bf16"] * 2


# --- int8 weights: 7 bits on a CPU whose u8 x s8 kernel saturates on full-range weights -------------
def test_int8_exact_needs_vnni_or_amx():
    assert AMX.int8_exact and AVX512.int8_exact and not NEITHER.int8_exact
    assert CpuCaps("Zen 5 laptop (mock)", False, False, avx_vnni=True).int8_exact


def _int8_weight_range(path) -> tuple[int, int]:
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load(str(path))
    values = [
        numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == TensorProto.INT8
    ]
    assert len(values) >= 4 * 6  # the tiny shape's 4 layers x 6 MatMuls, at least
    return int(min(v.min() for v in values)), int(max(v.max() for v in values))


def test_seven_bit_weights_stay_in_range_and_eight_bit_use_it(tmp_path):
    from models.export import export_onnx, optimized, quantized

    served = resolve("full", "xnli", encoder="tiny", weights="random")
    fp32 = optimized(export_onnx(served, tmp_path, progress=False), served)
    seven, eight = quantized(fp32, 7), quantized(fp32, 8)
    assert seven.name.endswith("-opt-int8w7.onnx") and eight.name.endswith("-opt-int8.onnx")
    lo7, hi7 = _int8_weight_range(seven)
    lo8, hi8 = _int8_weight_range(eight)
    # 7 bits: ONNX Runtime's reduce_range gives [-64, 64] (a pair of products stays <= 255 x 64 x 2 =
    # 32,640 < 32,767); the 8-bit graph really uses the full range
    assert -64 <= lo7 and hi7 <= 64 and min(lo8, -hi8) < -64
    with pytest.raises(ValueError, match="weight_bits must be 7 or 8"):
        quantized(fp32, 4)


def test_onnx_int8_records_whether_the_cpu_int8_gemm_is_exact(cpu, tmp_path):
    from models.onnx_backend import OnnxRuntimeBackend

    served = resolve("full", "xnli", encoder="tiny", weights="random")
    options = BackendOptions(dtype="int8", threads=1)
    cpu(NEITHER)
    avx2 = OnnxRuntimeBackend(served, options, onnx_dir=tmp_path)
    cpu(AMX)
    amx = OnnxRuntimeBackend(served, options, onnx_dir=tmp_path)
    assert avx2.path == amx.path and amx.path.name.endswith("-opt-int8.onnx")  # one served form
    assert avx2.describe()["int8_gemm_exact"] is False and amx.describe()["int8_gemm_exact"] is True
    assert (
        "int8_gemm_exact"
        not in OnnxRuntimeBackend(served, BackendOptions(), onnx_dir=tmp_path).describe()
    )


# --- static int8 (QDQ) ------------------------------------------------------------------------------
def test_static_int8_quantises_the_weight_matmuls_only_per_channel(tmp_path):
    import onnx
    from onnx import numpy_helper

    from models.export import export_onnx, static_quantized

    served = resolve("full", "xnli", encoder="tiny", weights="random")
    plain = export_onnx(served, tmp_path, progress=False)
    with pytest.raises(ValueError, match="int8 static needs a calibration set"):
        static_quantized(plain, [], "none")
    calibration = [_batch(int(served.encoder_config["vocab_size"])) for _ in range(2)]
    path = static_quantized(plain, calibration, "test")
    assert path.name.endswith("-int8s-test.onnx")
    graph = onnx.load(str(path)).graph
    produced_by = {o: n for n in graph.node for o in n.output}
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}

    def dequantized(name: str) -> bool:
        return name in produced_by and produced_by[name].op_type == "DequantizeLinear"

    matmuls = [n for n in graph.node if n.op_type == "MatMul"]
    weight_side = [
        n for n in matmuls if dequantized(n.input[1]) and produced_by[n.input[1]].input[0] in inits
    ]
    # tiny: 4 layers x (Q, K, V, O, FFN in, FFN out) quantised; Q K^T and P V (2 per layer) are not
    assert len(weight_side) == 24 and len(matmuls) == 24 + 8
    for n in weight_side:
        dq = produced_by[n.input[1]]
        weight, scale = inits[dq.input[0]], inits[dq.input[1]]
        assert weight.dtype == np.int8 and scale.shape == (weight.shape[1],)  # one scale per column
        assert dequantized(n.input[0])  # the activation side quantised too (u8, per tensor)
    for n in matmuls:
        if n not in weight_side:
            assert not dequantized(n.input[0]) and not dequantized(n.input[1])
    gemms = [n for n in graph.node if n.op_type == "Gemm"]  # the head: dense and out_proj
    assert len(gemms) == 2 and not any(dequantized(i) for n in gemms for i in n.input)


@pytest.mark.parametrize(("caps", "autocast"), [(AMX, True), (AVX512, True), (NEITHER, False)])
def test_training_autocasts_to_bf16_only_where_the_cpu_has_native_bf16(cpu, capsys, caps, autocast):
    """The recipe asks for bf16 autocast (E5_SMALL.bf16); on a CPU without native bf16 it would run
    every training matmul in software (67x slower GEMMs measured on an AVX2-only EPYC), so training
    runs in fp32 there, says so once, and the stage records what it used."""
    from pathlib import Path
    from types import SimpleNamespace

    from torch import nn

    from zoo import stages

    cpu(caps)
    cpu_caps._say_fp32_once.cache_clear()
    seen: list[bool] = []

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, input_ids, attention_mask, labels):
            seen.append(torch.is_autocast_enabled("cpu"))
            return SimpleNamespace(loss=(self.w * input_ids.float().mean()).sum())

    sizes = SimpleNamespace(batch_size=2, warmup=0.1, bf16=True)
    ctx = stages.Context(Path("."), sizes, seed=0, progress=False, squad_path=Path("."))
    data = {"input_ids": np.arange(1, 9), "offsets": np.array([0, 2, 4, 6, 8]), "labels": [0, 1, 0, 1]}
    stages.train(Model(), data, 1e-3, ctx, "t", steps=3)
    assert seen == [autocast] * 3
    err = capsys.readouterr().err
    assert err.count("has no native bf16") == (0 if autocast else 1)
    stages.train(Model(), data, 1e-3, ctx, "t", steps=1)  # the line is printed once per process
    assert "has no native bf16" not in capsys.readouterr().err
    assert cpu_caps.autocast_bf16(False) is False
