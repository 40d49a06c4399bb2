"""Model zoo: registry, loaders, LoRA merge, AdapterFusion reload, ONNX parity, pooling, random weights.

One very small zoo (2 layers, hidden 64, 2000 pieces, a few steps) is built once per session: the
default zoo's five models (models/registry.py DEFAULT_MODELS); the newer arms (NLI, the sequential
adapter, LoRA alone) have their own in tests/test_nli_stage.py.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from models.registry import DEFAULT_MODELS, resolve

KIND_TASKS = ("xnli", "tydiqa", "tatoeba")  # one task per kind


@pytest.fixture(scope="session")
def zoo(tmp_path_factory):
    from zoo.recipe import TINY_TEST, build_zoo

    root = tmp_path_factory.mktemp("zoo")
    build_zoo(
        root, "tiny", list(DEFAULT_MODELS), tasks=["xnli", "tydiqa"], sizes=TINY_TEST, progress=False
    )
    return root


def _inputs(tok) -> tuple[np.ndarray, np.ndarray]:
    enc = tok(
        ["The cat sat on the mat.", "Der Hund schläft, 你好", "Hi"],
        [
            "A cat is sitting.",
            "Where does the dog sleep? It sleeps in the garden near the old house.",
            "Yo",
        ],
        padding=True,
        return_tensors="np",
    )
    return enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)


def test_registry_errors_suggest_names(zoo):
    with pytest.raises(ValueError, match="Did you mean 'adapter-squad'"):
        resolve("adapter-squat", "xnli", models_dir=zoo)
    with pytest.raises(ValueError, match="Did you mean 'pawsx'"):
        resolve("full", "paws", models_dir=zoo)
    with pytest.raises(ValueError, match="unknown encoder"):
        resolve("full", "xnli", encoder="huge", models_dir=zoo)
    with pytest.raises(FileNotFoundError, match="python -m zoo build"):
        resolve("full", "pawsx", models_dir=zoo)  # not built in this zoo
    from models.backends import create_backend

    with pytest.raises(ValueError, match="Did you mean 'onnxruntime'"):
        create_backend("onnx-runtime", resolve("full", "xnli", models_dir=zoo))


def test_serving_forms_and_shapes(zoo):
    forms = {(m, t): resolve(m, t, models_dir=zoo).serving for m in DEFAULT_MODELS for t in KIND_TASKS}
    assert forms[("adapter-squad", "xnli")] == "fusion"
    assert forms[("adapter-squad", "tatoeba")] == "adapter"
    assert forms[("lora-squad", "tydiqa")] == "merged"
    assert forms[("adapter", "tatoeba")] == "plain"
    s = resolve("full", "tydiqa", models_dir=zoo)
    ids, mask = _inputs(s.tokenizer())
    with torch.inference_mode():
        out = s.torch_module()(torch.from_numpy(ids), torch.from_numpy(mask))
    assert out.shape == (3, 2, ids.shape[1]) and out.dtype == torch.float32
    d = resolve("adapter-squad", "tatoeba", models_dir=zoo).describe()
    assert d["model_kind"] == "tiny" and d["pooling_layer"] == 1 and d["serving"] == "adapter"


def test_random_weights_refused_for_accuracy():
    s = resolve("adapter-squad", "xnli", encoder="large", weights="random")
    assert s.model_kind == "random" and s.encoder_config["hidden_size"] == 1024
    assert s.pooling_layer == 14 and resolve("full", "bucc", "base", weights="random").pooling_layer == 8
    with pytest.raises(ValueError, match="random weights"):
        s.check_for_accuracy()


def test_merged_lora_equals_unmerged_and_has_no_lora_modules(zoo):
    import adapters
    from adapters import LoRAConfig
    from transformers import AutoModelForSequenceClassification

    from zoo.stages import merge_lora

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        zoo / "lora-squad" / "squad", num_labels=3
    )
    adapters.init(model)
    model.add_adapter("x", config=LoRAConfig(r=8, alpha=16))
    with torch.no_grad():  # LoRA B starts at zero: make the adapter matter
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    model.set_active_adapters("x")
    model.eval()
    ids, mask = (
        torch.from_numpy(a) for a in _inputs(resolve("full", "xnli", models_dir=zoo).tokenizer())
    )
    with torch.no_grad():
        unmerged = model(input_ids=ids, attention_mask=mask).logits
        plain = merge_lora(model, "x", AutoModelForSequenceClassification)
        merged = plain(input_ids=ids, attention_mask=mask).logits
    assert (unmerged - merged).abs().max().item() < 1e-4
    assert not any("lora" in n.lower() or "LoRA" in type(m).__name__ for n, m in plain.named_modules())
    served = resolve("lora-squad", "xnli", models_dir=zoo).torch_module()
    assert not any("LoRA" in type(m).__name__ or "loras" in n for n, m in served.named_modules())


def test_full_and_lora_checkpoints_load_with_plain_transformers(zoo):
    from transformers import AutoModel, AutoModelForQuestionAnswering, AutoModelForSequenceClassification

    for model in ("full", "full-squad", "lora-squad"):
        clf = AutoModelForSequenceClassification.from_pretrained(zoo / model / "xnli")
        assert clf.config.num_labels == 3
        AutoModelForQuestionAnswering.from_pretrained(zoo / model / "tydiqa")
    AutoModel.from_pretrained(zoo / "lora-squad" / "squad")
    assert "adapters" not in (zoo / "lora-squad" / "xnli" / "config.json").read_text()


def test_fusion_checkpoint_reloads_identically(zoo):
    s = resolve("adapter-squad", "xnli", models_dir=zoo)
    ids, mask = (torch.from_numpy(a) for a in _inputs(s.tokenizer()))
    with torch.inference_mode():
        a, b = (s.torch_module()(ids, mask) for _ in range(2))
    assert torch.equal(a, b)
    # the fusion layer and both adapters are really there and active
    model = s.torch_module().model
    assert str(model.active_adapters) == "Fuse[squad, xnli]"
    assert any("adapter_fusion_layer" in n for n, _ in model.named_parameters())


def test_pooling_layer_is_honoured(zoo):
    from transformers import AutoModel

    from models.modules import mean_pool

    s = resolve("full-squad", "tatoeba", models_dir=zoo)
    ids, mask = (torch.from_numpy(a) for a in _inputs(s.tokenizer()))
    enc = AutoModel.from_pretrained(s.checkpoint).eval()
    with torch.inference_mode():
        hs = enc(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        for layer in (0, 1, 2):
            got = s.with_pooling_layer(layer).torch_module()(ids, mask)
            assert torch.allclose(got, mean_pool(hs[layer], mask), atol=1e-5)
    with pytest.raises(ValueError, match="pooling layer"):
        s.with_pooling_layer(3)


@pytest.mark.parametrize("model", list(DEFAULT_MODELS))
def test_onnx_parity_every_entry_and_kind(zoo, model, tmp_path):
    from models.backends import create_backend
    from models.base import BackendOptions

    for task in KIND_TASKS:
        s = resolve(model, task, models_dir=zoo)
        ids, mask = _inputs(s.tokenizer())
        ref = create_backend("pytorch", s, BackendOptions(threads=1)).predict(ids, mask)
        for optimize in (False, True):
            ort = create_backend("onnxruntime", s, BackendOptions(threads=1, optimize=optimize))
            got = ort.predict(ids, mask)
            assert got.shape == ref.shape and got.dtype == np.float32
            valid = np.broadcast_to(mask[:, None, :], ref.shape) if task == "tydiqa" else slice(None)
            assert np.abs(got - ref)[valid].max() < 1e-4, (model, task, optimize)
    q = create_backend(
        "onnxruntime", resolve(model, "xnli", models_dir=zoo), BackendOptions(dtype="int8")
    )
    assert q.predict(ids, mask).shape == (3, 3)


def test_an_export_is_keyed_by_the_checkpoint_files_not_where_they_lie(zoo, tmp_path):
    """The ONNX export of a checkpoint is reused from another checkout (its key once held absolute
    paths, so a clone of the repository exported the same e5-small model again: 1.5 min, 1 GB).
    A copy with the same files (names, sizes, mtimes) has the same key; a changed file does not."""
    from models.export import export_key

    copy = tmp_path / "elsewhere" / "zoo"
    shutil.copytree(zoo, copy)  # copy2: sizes and mtimes kept
    key = export_key(resolve("adapter-squad", "xnli", models_dir=zoo))
    assert key.startswith("adapter-squad-xnli-tiny-")
    assert export_key(resolve("adapter-squad", "xnli", models_dir=copy)) == key
    manifest = copy / "adapter-squad" / "xnli" / "zoo.json"
    text, stat = manifest.read_text(), manifest.stat()
    other = text.replace('"seed": 0', '"seed": 7')  # another training: same size, same mtime
    assert other != text and len(other) == len(text)
    manifest.write_text(other)
    os.utime(manifest, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert export_key(resolve("adapter-squad", "xnli", models_dir=copy)) != key


def test_zoo_report_rows_from_loadgen_runs(tmp_path):
    """`python -m zoo build --from_runs`: figures of the encoder's default zoo on PyTorch fp32 from
    scored LoadGen accuracy runs, the newest run of a pair winning; other runs are ignored."""
    from zoo.evaluate import runs_rows

    def folder(name, started, value, **cfg):
        d = tmp_path / name
        d.mkdir()
        base = {"model": "full", "task": "xnli", "mode": "accuracy", "backend": "pytorch",
                "encoder": "e5-small", "started_at": started, "backend_options": {"dtype": "fp32"},
                "config": {"models_dir": None, "weights": None}}  # fmt: skip
        (d / "run_config.json").write_text(json.dumps({**base, **cfg}))
        (d / "accuracy.json").write_text(
            json.dumps({"per_language": {"en": value}, "samples_scored": 7})
        )
        (d / "accuracy.txt").write_text(f"table\n{json.dumps({'accuracy': value})}\n")

    folder("old", "2026-11-29T10:00", 50.0)
    folder("new", "2026-11-30T10:00", 55.0)
    folder("int8", "2026-11-30T11:00", 40.0, backend_options={"dtype": "int8"})
    folder("seed1", "2026-11-30T12:00", 41.0, config={"models_dir": "build/models-e5-small-seed1"})
    folder("tiny", "2026-11-30T13:00", 33.0, encoder="tiny")
    folder("perf", "2026-11-30T14:00", 42.0, mode="performance")
    (tmp_path / "unscored").mkdir()
    (tmp_path / "unscored" / "run_config.json").write_text("{}")
    rows = runs_rows(tmp_path, "e5-small")
    assert list(rows) == [("full", "xnli")]
    row = rows[("full", "xnli")]
    assert row["final"] == {"accuracy": 55.0} and row["n"] == 7 and row["source"].endswith("new")
    # with LoadGen's detail log, the samples it issued (the unit in-process evaluation counts:
    # BUCC's accuracy.json has no count, Tatoeba's counts sentence pairs)
    (tmp_path / "new" / "mlperf_log_detail.txt").write_text(
        ':::MLLOG {"key": "effective_accuracy_sample_count", "value": 22213}\n'
    )
    assert runs_rows(tmp_path, "e5-small")[("full", "xnli")]["n"] == 22213


def test_every_trained_stage_records_its_training_time(zoo, tmp_path):
    from zoo.evaluate import report_section, training_curves
    from zoo.recipe import TINY_TEST

    curves = training_curves(zoo)
    # 5 models x (xnli, tydiqa) target stages + the squad stages of the 3 -squad models
    assert len(curves) == 13
    assert all(t["train_s"] > 0 for _, t in curves)
    section = report_section([], "tiny", TINY_TEST, 1.0, 2.0, zoo)
    total = sum(t["train_s"] for _, t in curves) / 60
    assert f"{total:.0f} min over 13 of 13 trained stages." in section
    assert section.count("| not recorded |") == 0
    assert "training stages that ran in this call 1 s, total with evaluation 2 s" in section
    rebuilt = report_section([], "tiny", TINY_TEST, 0.2, 30.0, zoo)  # every stage done already
    assert (
        "no training stage ran in this call (all were built before), total with evaluation 30 s"
        in rebuilt
    )
    assert "one build" not in rebuilt
    # a second, timed build of the zoo (--timed_build): its stage times, summed and per stage
    timed = report_section([], "tiny", TINY_TEST, 0.2, 30.0, zoo, timed_dir=zoo)
    assert (
        f'RUN_ARGS="--models_dir {zoo} --no_eval"` (column `one build`): {total:.0f} min over 13 of 13'
        in timed
    )
    partial = tmp_path / "partial"  # a timed build still under way: the stages it lacks are named
    shutil.copytree(zoo / curves[0][0], partial / curves[0][0])
    assert (
        f"(column `one build`): {curves[0][1]['train_s'] / 60:.0f} min over 1 of 13 trained stages; not "
        + ", ".join(stage for stage, _ in curves[1:])
        + ": not built there yet."
    ) in report_section([], "tiny", TINY_TEST, 0.2, 30.0, zoo, timed_dir=partial)
    stage, t = curves[0]
    assert (
        f"| {t['train_s'] / 60:.1f} | {t['train_s'] / 60:.1f} |"
        in timed.split(f"| {stage} |")[1].split("\n")[0]
    )


def test_timed_build_without_trained_stages_is_refused_before_any_work(tmp_path):
    import argparse

    from zoo.recipe import configure_parser, main

    parser = argparse.ArgumentParser()
    configure_parser(parser)
    (tmp_path / "timed").mkdir()
    args = parser.parse_args(
        ["--models_dir", str(tmp_path / "zoo"), "--timed_build", str(tmp_path / "timed")]
    )
    with pytest.raises(SystemExit, match=r"--timed_build .*timed: no trained stage there"):
        main(args)
    assert not (tmp_path / "zoo").exists()  # refused before building anything


def test_heldout_probe_scores_the_english_heldout_rows_and_leaves_the_model_trainable(zoo):
    """The training-curve probe (bf16, unfolded AdapterFusion as it trains) on the XNLI held-out rows:
    300 English rows scored like the in-process evaluation (fp32, folded); its forward runs under
    no_grad, not inference_mode (where the library's unfolded fusion is 11-14x slower: the speed
    itself is in docs/zoo.md); a training step still works after it."""
    from models.loaders import load_model
    from zoo.evaluate import evaluate, heldout_probe

    served = resolve("adapter-squad", "xnli", models_dir=zoo)
    assert served.serving == "fusion"
    model = load_model(served, lean=False)  # the library's modules, as the stage trains them
    tok = served.tokenizer()
    modes = []  # (inference_mode, grad enabled) at each forward of the probe
    hook = model.register_forward_pre_hook(
        lambda *_: modes.append((torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
    )
    probe = heldout_probe("xnli", tok)(model)
    hook.remove()
    assert modes and set(modes) == {(False, False)}
    reference = evaluate(served, "en", 300)
    assert reference["n"] == 300
    assert round(probe * 3) == pytest.approx(probe * 3, abs=1e-6)  # a whole number of the 300 rows
    assert probe == pytest.approx(reference["final"]["accuracy"], abs=1.0)  # bf16: at most 3 rows apart

    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    ids, mask = _inputs(tok)
    out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    out.logits.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
