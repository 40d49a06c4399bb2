"""Two-stage AdapterFusion (Pfeiffer et al. 2021): the arm `adapter-fusion-squad`, learning "fusion2".

Stage 1 (knowledge extraction) is built by other arms and reused: the SQuAD adapter of
adapter-squad's intermediate stage and the task adapter of the `adapter` arm's target stage. Stage 2
(knowledge composition) loads both frozen beside the frozen encoder and trains only Fuse(squad,
<task>) and a new head. One very small zoo (`python -m zoo build --tiny-test`, in-process) is built
per module, naming the new arm alone, with every training call watched: what the model held before
and after training, and which parameters it trained.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from common.exit_codes import BAD_INPUT
from common.files import sha256_file
from common.paths import REPO
from models.registry import DEFAULT_MODELS, MODELS, resolve
from tests.conftest import build_watched

ARM = "adapter-fusion-squad"
TASK = "xnli"
STAGE = f"{ARM} {TASK}"  # the watched training call of the fusion stage


@pytest.fixture(scope="module")
def fusion2_zoo(tmp_path_factory):
    """`python -m zoo build --models adapter-fusion-squad --tasks xnli`; `seen[desc]`: each training
    call's parameters before and after it trained, the names it trained, and its rate."""
    root = tmp_path_factory.mktemp("fusion2-zoo")
    argv = ["build", "--tiny-test", "--models_dir", str(root), "--models", ARM, "--tasks", TASK]
    seen = build_watched([*argv, "--no_eval", "--quiet"])
    return SimpleNamespace(root=root, seen=seen)


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "zoo.json").read_text())


def _adapter(root: Path, folder: str, name: str) -> dict[str, torch.Tensor]:
    """Adapter `name` saved in zoo folder `folder`, loaded on the encoder: its parameters."""
    from adapters import XLMRobertaAdapterModel

    model = XLMRobertaAdapterModel.from_pretrained(root / "encoder")
    model.load_adapter(str(root / folder / "adapters" / name), with_head=False)
    key = f"adapters.{name}."
    return {n: p.detach() for n, p in model.named_parameters() if key in n}


def _fusion_layer(name: str) -> bool:
    return "adapter_fusion_layer.squad,xnli." in name


# --- the registry and the recipe (no zoo) ------------------------------------------------------------
def test_the_arm_is_registered_as_two_stage_fusion_and_built_only_when_named():
    import argparse

    from models.spec import LEARNING, NEEDS_INTERMEDIATE, ModelSpec
    from research import study
    from zoo.recipe import configure_parser

    spec = MODELS[ARM]
    assert (spec.intermediate, spec.learning, spec.serving) == ("squad", "fusion2", "fusion")
    assert (spec.intermediate_of, spec.adapter_of) == ("adapter-squad", "adapter")
    assert "fusion2" in LEARNING and "fusion2" in NEEDS_INTERMEDIATE
    assert ARM not in DEFAULT_MODELS and study.MODELS == DEFAULT_MODELS
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    assert ARM not in parser.parse_args([]).models.split(",")
    # served like adapter-squad: fusion for targets; retrieval the encoder with adapter-squad's
    # SQuAD stage itself (no folder of its own)
    assert spec.serving_for("classification") == MODELS["adapter-squad"].serving_for("qa") == "fusion"
    assert spec.serving_for("retrieval") == MODELS["adapter-squad"].serving_for("retrieval") == "adapter"
    assert spec.folder("retrieval", "tatoeba") == "adapter-squad/squad"
    assert spec.folder("classification", TASK) == f"{ARM}/{TASK}"
    assert spec.prerequisites() == ("adapter",)
    with pytest.raises(ValueError, match="adapter_of"):
        ModelSpec("x", "squad", "fusion2", "fusion", "two-stage fusion without its task adapter")
    with pytest.raises(ValueError, match="adapter_of"):
        ModelSpec("x", "squad", "fusion", "fusion", "one-stage fusion", adapter_of="adapter")


def test_the_recipe_trains_fusion2_at_the_fusion_rate_of_each_encoder():
    from models.spec import LEARNING
    from zoo.recipe import E5_SMALL, FULL_STEPS, TINY, TINY_TEST

    for sizes in (TINY, TINY_TEST, E5_SMALL, FULL_STEPS):
        lr = dict(sizes.lr)
        assert set(lr) == set(LEARNING) and lr["fusion2"] == lr["fusion"]
    assert dict(E5_SMALL.lr)["fusion2"] == 5e-4 and dict(TINY.lr)["fusion2"] == 1e-3


def test_first_use_builds_the_shared_stages_and_estimates_the_fusion_stage_from_adapter_squads():
    """Stage 1 is two measured stages themselves (adapter-squad/squad, adapter/xnli); the fusion
    stage is estimated from adapter-squad's target stage (the same passes through Fuse(squad,
    xnli), fewer parameters trained), named as the source."""
    from zoo.recipe import build_announcement, stages_for_run

    def plan(task):
        return [(s.folder, s.minutes, s.mirrors) for s in stages_for_run(ARM, task, "e5-small")]

    assert plan("xnli") == [
        ("encoder", 1.25, None),
        ("adapter-squad/squad", 5.0, None),
        ("adapter/xnli", 2.6, None),
        ("adapter-fusion-squad/xnli", 4.8, "adapter-squad/xnli"),
    ]
    assert plan("tydiqa")[2:] == [
        ("adapter/tydiqa", 31.5, None),
        ("adapter-fusion-squad/tydiqa", 27.7, "adapter-squad/tydiqa"),
    ]
    assert plan("pawsx")[3] == ("adapter-fusion-squad/pawsx", None, None)  # PAWS-X: not measured
    assert plan("bucc") == [("encoder", 1.25, None), ("adapter-squad/squad", 5.0, None)]
    line = build_announcement(stages_for_run(ARM, "xnli", "e5-small"), f"{ARM}/xnli")
    assert (
        "building 4 zoo stage(s): encoder e5-small (~1.25 min), adapter-squad squad (~5 min), "
        "adapter xnli (~2.6 min), adapter-fusion-squad xnli (~4.8 min, estimated from "
        "adapter-squad/xnli); about 14 min"
    ) in line


def test_zoo_select_refuses_the_arm_with_one_error_line(tmp_path, capsys):
    """Its task adapter trains on every English training row, the selection's dev rows included:
    a trial would score rows its adapter has seen. Refused before anything is built."""
    from zoo.cli import main as zoo_main

    grid = tmp_path / "grid.toml"
    grid.write_text(
        'encoder = "tiny"\ntask = "xnli"\nmodels = ["adapter", "adapter-fusion-squad"]\n'
        'seeds = [0]\ndata = ["xnli"]\nmax_epochs = 1\n'
        "[lr]\nadapter = [1e-3]\nfusion2 = [1e-3]\n"
    )
    runs = tmp_path / "runs"
    assert zoo_main(["select", "--grid", str(grid), "--runs_dir", str(runs), "--quiet"]) == BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {grid}: key 'models': 'adapter-fusion-squad' cannot be selected: it fuses the task "
        "adapter of the 'adapter' arm's xnli stage, trained on every English training row, this dev "
        "split's included, so its trials would score rows their adapter was trained on"
    ]
    assert not runs.exists()  # nothing built, nothing trained


# --- the built zoo -----------------------------------------------------------------------------------
def test_the_build_reuses_adapter_squads_squad_stage_and_builds_the_adapter_arm_first(fusion2_zoo):
    root, seen = fusion2_zoo.root, fusion2_zoo.seen
    built = sorted(str(p.parent.relative_to(root)) for p in root.rglob(".done"))
    assert built == ["adapter-fusion-squad/xnli", "adapter-squad/squad", "adapter/xnli", "encoder"]
    assert not (root / ARM / "squad").exists()  # no SQuAD stage of its own
    # one training call per stage, stage 1 before stage 2 (the encoder's is pretrain_mlm)
    assert list(seen) == ["squad seq_bn adapter", "adapter xnli", STAGE]
    # adapter-squad, whose SQuAD stage it is, finds it done: building it again trains nothing
    from zoo.recipe import TINY_TEST, build_zoo

    assert build_zoo(root, "tiny", ["adapter-squad", ARM], [], TINY_TEST, progress=False) == {}


def test_the_fusion_stage_trains_the_fusion_layer_and_head_only(fusion2_zoo):
    """Every encoder and adapter parameter is bit for bit what it was before training; every fusion
    parameter and the new head changed; the rate is the recipe's fusion2 rate."""
    from zoo.recipe import TINY_TEST

    watched = fusion2_zoo.seen[STAGE]
    before, after = watched.before, watched.after
    assert before.keys() == after.keys()
    fusion = [n for n in before if _fusion_layer(n)]
    head = [n for n in before if n.startswith(f"heads.{TASK}.")]
    frozen = [n for n in before if n not in fusion and n not in head]
    adapters = [n for n in frozen if ".adapters.squad." in n or f".adapters.{TASK}." in n]
    encoder = [n for n in frozen if n.startswith("roberta.") and n not in adapters]
    assert fusion and head and adapters and encoder
    assert len(fusion) == 5 * 2  # query, key (weight and bias), value (weight) on each of 2 layers
    assert sorted(frozen) == sorted(adapters + encoder)  # nothing else in the model
    assert {n.split(".adapters.")[1].split(".")[0] for n in adapters} == {"squad", TASK}
    assert watched.trainable == sorted(fusion + head)
    assert all(torch.equal(before[n], after[n]) for n in frozen)
    assert all(not torch.equal(before[n], after[n]) for n in fusion + head)
    assert watched.lr == dict(TINY_TEST.lr)["fusion2"]
    training = _manifest(fusion2_zoo.root / ARM / TASK)["training"]
    assert (training["learning"], training["lr"]) == ("fusion2", watched.lr)
    assert (training["steps"], training["train_samples"]) == (TINY_TEST.target_steps, 120)


def test_the_fused_adapters_are_the_stage_1_adapters_bit_for_bit(fusion2_zoo):
    """The task adapter it fuses (as loaded before training, and as saved) is the `adapter` arm's
    saved adapter for the task; the SQuAD adapter is adapter-squad's; the head is a new one."""
    root, watched = fusion2_zoo.root, fusion2_zoo.seen[STAGE]
    for name, stage_1 in ((TASK, f"adapter/{TASK}"), ("squad", "adapter-squad/squad")):
        source = _adapter(root, stage_1, name)
        fused = _adapter(root, f"{ARM}/{TASK}", name)
        assert source and fused.keys() == source.keys()
        assert all(torch.equal(fused[n], source[n]) for n in source), name
        loaded = {n: watched.before[n] for n in source}  # what stage 2 started from
        assert all(torch.equal(loaded[n], source[n]) for n in source), name
        weights = "pytorch_adapter.bin"
        files = [root / f / "adapters" / name / weights for f in (stage_1, f"{ARM}/{TASK}")]
        assert sha256_file(files[0]) == sha256_file(files[1]), name  # the very same file
    # the `adapter` arm's own adapter differs from the SQuAD one: the two are distinct stage-1 outputs
    task_adapter = _adapter(root, f"adapter/{TASK}", TASK)
    squad = _adapter(root, "adapter-squad/squad", "squad")
    pairs = [(n, n.replace(f".adapters.{TASK}.", ".adapters.squad.")) for n in task_adapter]
    assert any(not torch.equal(task_adapter[a], squad[b]) for a, b in pairs)
    # the head: new, not the `adapter` arm's (the task adapter was loaded without it)
    heads = [n for n in watched.before if n.startswith(f"heads.{TASK}.")]
    from adapters import XLMRobertaAdapterModel

    arm = XLMRobertaAdapterModel.from_pretrained(root / "encoder")
    arm.load_adapter(str(root / "adapter" / TASK / "adapters" / TASK), with_head=True)
    arm_head = dict(arm.named_parameters())
    assert all(n in arm_head and not torch.equal(watched.before[n], arm_head[n]) for n in heads)

    manifest = _manifest(root / ARM / TASK)
    assert (manifest["serving"], manifest["adapters"], manifest["fusion"]) == (
        "fusion",
        ["squad", TASK],
        ["squad", TASK],
    )
    assert manifest["frozen"] == ["squad", TASK]
    assert manifest["fused_from"] == {
        "squad": "../../adapter-squad/squad/adapters/squad",
        TASK: f"../../adapter/{TASK}/adapters/{TASK}",
    }
    assert manifest["base"] == "../../encoder"


def test_the_served_model_is_the_saved_checkpoint_on_pytorch_and_onnx_runtime(fusion2_zoo, tmp_path):
    """Served as adapter-squad is (fusion, unmerged: the lean module folds the fusion layer); its
    logits equal the adapters library's own model of the checkpoint, and ONNX Runtime's graph."""
    from models.base import BackendOptions
    from models.onnx_backend import OnnxRuntimeBackend

    root = fusion2_zoo.root
    served = resolve(ARM, TASK, models_dir=root)
    assert (served.serving, served.checkpoint) == ("fusion", root / ARM / TASK)
    assert served.describe()["learning"] == "fusion2"
    tok = served.tokenizer()
    enc = tok(
        ["The cat sat on the mat.", "Der Hund schläft, 你好", "Hi"],
        ["A cat is sitting.", "Where does the dog sleep?", "Yo"],
        padding=True,
        return_tensors="pt",
    )
    ids, mask = enc["input_ids"], enc["attention_mask"]
    direct = _direct_model(root)
    with torch.inference_mode():
        served_out = served.torch_module()(ids, mask)
        library = direct(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(served_out, library, atol=1e-5, rtol=0)
    ort = OnnxRuntimeBackend(served, BackendOptions(threads=1), tmp_path / "onnx")
    got = ort.predict(ids.numpy().astype(np.int64), mask.numpy().astype(np.int64))
    np.testing.assert_allclose(got, served_out.numpy(), atol=1e-4, rtol=0)
    ort.close()


def _direct_model(root: Path):
    """The fusion checkpoint loaded with the adapters library alone (none of models/'s serving)."""
    from adapters import Fuse, XLMRobertaAdapterModel

    ckpt = root / ARM / TASK
    model = XLMRobertaAdapterModel.from_pretrained(root / "encoder")
    model.load_adapter(str(ckpt / "adapters" / "squad"), with_head=False)
    model.load_adapter(str(ckpt / "adapters" / TASK), with_head=True)
    model.load_adapter_fusion(str(ckpt / "fusion"), with_head=False)
    model.set_active_adapters(Fuse("squad", TASK))
    model.active_head = TASK
    return model.eval()


def test_a_task_list_serves_it_in_the_per_task_fusion_form(fusion2_zoo):
    """xnli+tatoeba in one process: the per-task form (fusion is no mixed-batch form, so ONNX
    Runtime may serve it too); each row equals the row through its task's own served module."""
    from harness.multitask import check_options
    from models.base import BackendOptions
    from models.multitask import MultiTaskBackend, resolve_tasks
    from tasks.mixed import parse_task_list

    root = fusion2_zoo.root
    multi = resolve_tasks(ARM, parse_task_list("xnli+tatoeba"), models_dir=root)
    assert multi.form == "fusion" and multi.kinds == ["classification", "retrieval"]
    check_options("onnxruntime", "thread", "fp32", None, ARM, "merged")  # accepted: per-task form
    backend = MultiTaskBackend(multi, BackendOptions())
    tok = multi.models[0].tokenizer()
    enc = tok(
        ["The cat sat on the mat.", "Hi", "Der Hund schläft.", "你好"],
        ["A cat is sitting.", "Yo", "Where?", "Hello"],
        padding=True,
        return_tensors="np",
    )
    ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
    tasks = np.array([0, 1, 1, 0])
    out = backend.predict(ids, mask, tasks)
    assert out.rows == 4
    for (rows, kind, part), served in zip(out.parts, multi.models, strict=True):
        width = int(mask[rows].sum(axis=1).max())
        with torch.inference_mode():
            alone = served.torch_module()(
                torch.from_numpy(ids[rows, :width]), torch.from_numpy(mask[rows, :width])
            )
        assert kind == served.task_kind
        np.testing.assert_allclose(part, alone.numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("task", ["tatoeba", "bucc"])
def test_retrieval_serves_the_encoder_with_adapter_squads_squad_adapter(fusion2_zoo, task):
    root = fusion2_zoo.root
    served = resolve(ARM, task, models_dir=root)
    reference = resolve("adapter-squad", task, models_dir=root)
    pretrained = resolve("full", task, models_dir=root)
    assert served.checkpoint == reference.checkpoint == root / "adapter-squad" / "squad"
    assert (served.serving, served.pooling_layer) == (reference.serving, reference.pooling_layer)
    assert served.serving == "adapter"
    tok = served.tokenizer()
    enc = tok(["The cat sat on the mat.", "Der Hund schläft."], padding=True, return_tensors="pt")
    with torch.inference_mode():
        got = served.torch_module()(enc["input_ids"], enc["attention_mask"])
        want = reference.torch_module()(enc["input_ids"], enc["attention_mask"])
        plain = pretrained.torch_module()(enc["input_ids"], enc["attention_mask"])
    assert got.shape == (2, 64)
    assert torch.equal(got, want)
    assert not torch.allclose(got, plain, atol=1e-4)  # the SQuAD adapter is active


@pytest.mark.slow
def test_an_accuracy_run_on_xnli_scores_what_the_checkpoint_itself_scores(fusion2_zoo, tmp_path):
    """`harness run --model adapter-fusion-squad --task xnli --accuracy`: exit 0, VALID, the 16
    samples asked for, and an accuracy equal to the adapters library's own model of the checkpoint
    on the same rows (the first 16 held-out English rows)."""
    from tasks.data import find_file, read_classification_file
    from tasks.registry import get_task

    count = 16
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "harness", "run", "--model", ARM, "--task", TASK,
           "--models_dir", str(fusion2_zoo.root), "--scenario", "Offline", "--accuracy",
           "--count", str(count), "--languages", "en", "--output_dir", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = {p.parent for p in out.rglob("results.json")}
    assert run_dir == out / "tiny" / "pytorch" / ARM / TASK / "Offline" / "accuracy"
    results = json.loads((run_dir / "results.json").read_text())
    assert (results["validity"], results["exit_status"]) == ("VALID", 0)
    config = json.loads((run_dir / "run_config.json").read_text())
    spec = config["model_spec"]
    assert (spec["model"], spec["learning"], spec["serving"]) == (ARM, "fusion2", "fusion")
    assert config["checkpoint_sha256"] and config["count"] == count
    first_row = config["task_options"]["first_row"]
    log = json.loads((run_dir / "mlperf_log_accuracy.json").read_text())
    assert sorted(entry["qsl_idx"] for entry in log) == list(range(count))
    score = json.loads((run_dir / "accuracy.json").read_text())
    assert (score["samples_scored"], score["count"]) == (count, {"en": count})
    assert score["heldout_rows"] == 1245

    task = get_task(TASK, languages="en")
    examples = read_classification_file(find_file(task.data_dir, "dev-en.tsv"), task.label_names, "en")
    rows = [e for e in examples if e.row >= first_row][:count]
    assert rows[0].row == first_row == 1245
    model = _direct_model(fusion2_zoo.root)
    tok = resolve(ARM, TASK, models_dir=fusion2_zoo.root).tokenizer()
    right = 0
    with torch.inference_mode():
        for e in rows:
            enc = tok(e.text_a, e.text_b, truncation=True, max_length=128, return_tensors="pt")
            right += int(model(**enc).logits.argmax(-1).item() == e.label)
    assert score["accuracy"] == pytest.approx(100.0 * right / count, abs=1e-9)
    assert score["per_language"]["en"] == pytest.approx(100.0 * right / count, abs=1e-9)
