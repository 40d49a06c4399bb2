"""The NLI intermediate stage (SNLI) and the study's missing arms: full-nli, adapter-nli and
adapter-seq-squad (a sequential adapter: the intermediate adapter trained further on the target) and
lora (LoRA without an intermediate task).

One very small zoo (`python -m zoo build --tiny-test`, in-process) is built per module, with every
training call watched: what each stage's model held before training, and what it trained on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from common.paths import REPO
from models.registry import DEFAULT_MODELS, MODELS, resolve
from tasks.xnli import XnliTask
from tests.conftest import build_watched

NEW = ("full-nli", "adapter-nli", "adapter-seq-squad", "lora")
TARGETS = ("xnli", "tydiqa")


@pytest.fixture(scope="module")
def nli_zoo(tmp_path_factory):
    """The new arms and `full` (for the parameter count) on XNLI and TyDiQA; `seen[desc]`: each
    training call's parameters before it trained, the names it trained, its data and rate."""
    root = tmp_path_factory.mktemp("nli-zoo")
    argv = ["build", "--tiny-test", "--models_dir", str(root), "--models", ",".join(("full", *NEW))]
    seen = build_watched([*argv, "--tasks", ",".join(TARGETS), "--no_eval", "--quiet"])
    return SimpleNamespace(root=root, seen=seen)


def _manifest(folder) -> dict:
    return json.loads((folder / "zoo.json").read_text())


def _inputs(tok) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tok(
        ["The cat sat on the mat.", "Der Hund schläft, 你好", "Hi"],
        ["A cat is sitting.", "Where does the dog sleep?", "Yo"],
        padding=True,
        return_tensors="pt",
    )
    return enc["input_ids"], enc["attention_mask"]


# --- the registry and the recipe (no zoo) ------------------------------------------------------------
def test_the_registry_names_the_new_arms_and_the_defaults_stay_the_studys_five():
    from models.spec import INTERMEDIATE, LEARNING, ModelSpec
    from research import study
    from zoo.recipe import configure_parser

    assert list(MODELS) == [*DEFAULT_MODELS, *NEW, "adapter-fusion-squad"]  # tests/test_fusion2.py
    assert DEFAULT_MODELS == ("full", "full-squad", "adapter", "adapter-squad", "lora-squad")
    assert "nli" in INTERMEDIATE and "adapter-seq" in LEARNING
    specs = {m: (MODELS[m].intermediate, MODELS[m].learning, MODELS[m].serving) for m in NEW}
    assert specs == {
        "full-nli": ("nli", "full", "plain"),
        "adapter-nli": ("nli", "adapter-seq", "adapter"),
        "adapter-seq-squad": ("squad", "adapter-seq", "adapter"),
        "lora": (None, "lora", "merged"),
    }
    # retrieval serves the intermediate stage's encoder ("encoder": the pretrained encoder itself)
    retrieval = {
        m: (MODELS[m].serving_for("retrieval"), MODELS[m].folder("retrieval", "bucc")) for m in NEW
    }
    assert retrieval == {
        "full-nli": ("plain", "full-nli/nli"),
        "adapter-nli": ("adapter", "adapter-nli/nli"),
        "adapter-seq-squad": ("adapter", "adapter-seq-squad/squad"),
        "lora": ("plain", "encoder"),
    }
    assert all(MODELS[m].folder("classification", "xnli") == f"{m}/xnli" for m in NEW)
    with pytest.raises(ValueError, match="needs an intermediate task"):
        ModelSpec("x", None, "adapter-seq", "adapter", "a sequential adapter from nothing")
    with pytest.raises(ValueError, match="not in"):
        ModelSpec("x", "mnli", "full", "plain", "an intermediate task the zoo does not train")
    # `make models` and the study keep their five arms; the new ones are built when named
    assert study.MODELS == DEFAULT_MODELS
    import argparse

    parser = argparse.ArgumentParser()
    configure_parser(parser)
    assert parser.parse_args([]).models == ",".join(DEFAULT_MODELS)


def test_the_recipe_trains_the_sequential_adapter_at_the_adapter_rate_and_snli_in_one_pass():
    from models.spec import LEARNING
    from zoo.recipe import E5_SMALL, FULL_STEPS, TINY, TINY_TEST

    for sizes in (TINY, TINY_TEST, E5_SMALL, FULL_STEPS):
        lr = dict(sizes.lr)
        assert set(lr) == set(LEARNING) and lr["adapter-seq"] == lr["adapter"]
    assert dict(E5_SMALL.lr)["adapter-seq"] == 1e-3
    assert (E5_SMALL.nli_epochs, E5_SMALL.squad_epochs) == (1.0, 1.0)
    assert FULL_STEPS.nli_epochs == 1.0
    assert (TINY.nli_steps, TINY.squad_steps) == (50, 50)
    assert (TINY_TEST.nli_steps, TINY_TEST.squad_steps) == (6, 6)


def test_first_use_announces_the_new_stages_as_estimates():
    """No new stage is measured: one that trains what a measured stage trains (from another start)
    takes that stage's minutes, named as the source; an NLI stage the XNLI stage that trains the same
    parameters, scaled by rows x epochs (one epoch over 19,666 pairs against five over 1,245 rows:
    2.6 x 19,666 / 6,225 = 8.2 min)."""
    from zoo.recipe import build_announcement, stages_for_run

    def plan(model, task):
        return [(s.folder, s.minutes, s.mirrors) for s in stages_for_run(model, task, "e5-small")]

    assert plan("full-nli", "xnli") == [
        ("encoder", 1.25, None),
        ("full-nli/nli", 8.2, "full/xnli scaled by rows x epochs"),
        ("full-nli/xnli", 2.8, "full-squad/xnli"),
    ]
    assert plan("adapter-nli", "tydiqa")[1:] == [
        ("adapter-nli/nli", 8.2, "adapter/xnli scaled by rows x epochs"),
        ("adapter-nli/tydiqa", 31.5, "adapter/tydiqa"),
    ]
    assert plan("adapter-seq-squad", "bucc")[1:] == [
        ("adapter-seq-squad/squad", 5.0, "adapter-squad/squad")
    ]
    assert plan("adapter-seq-squad", "xnli")[2] == ("adapter-seq-squad/xnli", 2.6, "adapter/xnli")
    assert plan("lora", "tydiqa") == [
        ("encoder", 1.25, None),
        ("lora/tydiqa", 38.7, "lora-squad/tydiqa"),
    ]
    assert plan("lora", "tatoeba") == [("encoder", 1.25, None)]
    assert plan("adapter-squad", "xnli")[2] == ("adapter-squad/xnli", 4.8, None)  # measured: its own
    line = build_announcement(stages_for_run("full-nli", "xnli", "e5-small"), "full-nli/xnli")
    assert (
        "encoder e5-small (~1.25 min), full-nli nli (~8.2 min, estimated from full/xnli scaled by "
        "rows x epochs), full-nli xnli (~2.8 min, estimated from full-squad/xnli); about 12 min"
    ) in line


def test_the_nli_data_is_every_snli_pair_in_xnli_label_order(tiny_tokenizer):
    from zoo.stages import nli_data

    data = nli_data(tiny_tokenizer)
    labels = data["labels"]
    assert len(data["offsets"]) - 1 == len(labels) == 19666
    # SNLI's published label counts, dev + test, as XNLI orders its labels
    assert XnliTask.label_names == ("entailment", "neutral", "contradiction")
    assert Counter(labels.tolist()) == {0: 3329 + 3368, 1: 3235 + 3219, 2: 3278 + 3237}
    assert labels[:2].tolist() == [1, 0]  # the first dev lines: neutral, entailment
    first = data["input_ids"][data["offsets"][0] : data["offsets"][1]].tolist()
    expected = tiny_tokenizer(
        "Two women are embracing while holding to go packages .",
        "The sisters are hugging goodbye while holding to go packages after just eating lunch .",
    )["input_ids"]
    assert first == expected


# --- the built zoo -----------------------------------------------------------------------------------
def test_the_build_makes_each_arms_stages_and_no_others(nli_zoo):
    root = nli_zoo.root
    built = sorted(str(p.parent.relative_to(root)) for p in root.rglob(".done"))
    intermediate = ["adapter-nli/nli", "adapter-seq-squad/squad", "full-nli/nli"]
    targets = [f"{m}/{t}" for m in ("full", *NEW) for t in TARGETS]
    assert built == sorted(["encoder", *intermediate, *targets])  # lora: no intermediate stage


def test_the_nli_stages_train_on_snli_rows_with_three_labels(nli_zoo):
    from transformers import AutoModelForSequenceClassification

    from tasks.data import read_snli
    from zoo.recipe import TINY_TEST

    root, seen = nli_zoo.root, nli_zoo.seen
    snli = read_snli(XnliTask.label_names)
    for desc, folder in (("nli full", "full-nli/nli"), ("nli seq_bn adapter", "adapter-nli/nli")):
        data = seen[desc].data
        assert len(data["offsets"]) - 1 == TINY_TEST.max_train_examples == 120  # the first 120 pairs
        assert data["labels"].tolist() == [e.label for e in snli[:120]]
        assert set(data["labels"].tolist()) == {0, 1, 2}
        training = _manifest(root / folder)["training"]
        assert (training["train_samples"], training["steps"]) == (120, TINY_TEST.nli_steps)
        assert _manifest(root / folder)["stage"] == "nli"
    assert seen["nli full"].lr == dict(TINY_TEST.lr)["full"]
    assert seen["nli seq_bn adapter"].lr == dict(TINY_TEST.lr)["adapter"]
    clf = AutoModelForSequenceClassification.from_pretrained(root / "full-nli" / "nli")
    assert clf.config.num_labels == 3
    trained = seen["nli seq_bn adapter"].trainable
    assert any("adapters.nli." in n for n in trained) and any("heads.nli." in n for n in trained)
    assert all("adapters.nli." in n or "heads.nli." in n for n in trained)  # the encoder frozen
    manifest = _manifest(root / "adapter-nli" / "nli")
    assert (manifest["serving"], manifest["adapters"]) == ("adapter", ["nli"])


def _adapter(root, folder, name) -> dict[str, torch.Tensor]:
    """Adapter `name` saved in zoo folder `folder`, loaded on the encoder: its parameters, the
    adapter's name in them written as {}."""
    from adapters import XLMRobertaAdapterModel

    model = XLMRobertaAdapterModel.from_pretrained(root / "encoder")
    model.load_adapter(str(root / folder / "adapters" / name), with_head=False)
    key = f"adapters.{name}."
    return {n.replace(key, "adapters.{}."): p.detach() for n, p in model.named_parameters() if key in n}


@pytest.mark.parametrize(("model", "inter"), [("adapter-nli", "nli"), ("adapter-seq-squad", "squad")])
def test_the_sequential_adapter_starts_as_the_intermediate_adapter_then_trains_on(nli_zoo, model, inter):
    """The target stage's adapter holds, before its training, exactly the intermediate stage's
    adapter (loaded under the task's name); after it, other weights; only it and a fresh head train."""
    from zoo.recipe import TINY_TEST

    root, seen = nli_zoo.root, nli_zoo.seen
    start = _adapter(root, f"{model}/{inter}", inter)
    assert start
    for task in TARGETS:
        watched = seen[f"{model} {task}"]
        key = f"adapters.{task}."
        before = {n.replace(key, "adapters.{}."): p for n, p in watched.before.items() if key in n}
        assert before.keys() == start.keys()
        assert all(torch.equal(before[n], start[n]) for n in start), (model, task)
        after = _adapter(root, f"{model}/{task}", task)
        assert after.keys() == start.keys()
        assert sum(not torch.equal(after[n], start[n]) for n in start) > len(start) // 2
        assert not any(f"adapters.{inter}." in n or f"heads.{inter}." in n for n in watched.before)
        assert all(key in n or f"heads.{task}." in n for n in watched.trainable)
        assert watched.lr == dict(TINY_TEST.lr)["adapter-seq"] == dict(TINY_TEST.lr)["adapter"]
        manifest = _manifest(root / model / task)
        assert (manifest["serving"], manifest["adapters"]) == ("adapter", [task])
        assert manifest["initialised_from"] == f"../{inter}/adapters/{inter}"
        assert manifest["training"]["lr"] == watched.lr


def test_full_nli_starts_from_the_nli_encoder_with_a_fresh_head(nli_zoo):
    from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification

    root, seen = nli_zoo.root, nli_zoo.seen
    nli_stage = AutoModelForSequenceClassification.from_pretrained(root / "full-nli" / "nli")
    nli = dict(nli_stage.named_parameters())
    for task in TARGETS:
        before = seen[f"full-nli {task}"].before
        encoder = [n for n in before if n.startswith("roberta.")]
        assert encoder and all(torch.equal(before[n], nli[n]) for n in encoder), task
        assert _manifest(root / "full-nli" / task)["source"] == str(root / "full-nli" / "nli")
    # XNLI's classifier is new, not SNLI's (same shape, other weights)
    before = seen["full-nli xnli"].before
    head = [n for n in before if n.startswith("classifier.") and n.endswith("weight")]
    assert head and all(before[n].shape == nli[n].shape for n in head)
    assert not any(torch.equal(before[n], nli[n]) for n in head)
    # TyDiQA's QA head has its 2 outputs (start, end), not SNLI's 3 labels
    qa = AutoModelForQuestionAnswering.from_pretrained(root / "full-nli" / "tydiqa")
    assert (qa.config.num_labels, qa.qa_outputs.out_features) == (2, 2)


def test_lora_trains_from_the_pretrained_encoder_and_serves_fulls_graph(nli_zoo):
    from transformers import AutoModel, AutoModelForSequenceClassification

    root, seen = nli_zoo.root, nli_zoo.seen
    assert MODELS["lora"].intermediate is None
    pretrained = AutoModel.from_pretrained(root / "encoder", add_pooling_layer=False)
    encoder = dict(pretrained.named_parameters())
    watched = seen["lora xnli"]
    base = {n.removeprefix("roberta."): p for n, p in watched.before.items() if n.startswith("roberta.")}
    assert set(encoder) <= set(base)
    assert all(torch.equal(base[n], encoder[n]) for n in encoder)  # the pretrained encoder's weights
    assert watched.trainable and all("loras.xnli." in n or "classifier." in n for n in watched.trainable)
    manifest = _manifest(root / "lora" / "xnli")
    assert (manifest["serving"], manifest["merged"]) == ("merged", ["xnli"])
    merged = AutoModelForSequenceClassification.from_pretrained(root / "lora" / "xnli").state_dict()
    query = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(merged[f"roberta.{query}"], encoder[query])  # the update merged in

    lora, full = resolve("lora", "xnli", models_dir=root), resolve("full", "xnli", models_dir=root)
    assert (lora.serving, full.serving) == ("merged", "plain")
    modules = [s.torch_module() for s in (lora, full)]
    counts = [sum(p.numel() for p in m.parameters()) for m in modules]
    assert counts[0] == counts[1]
    assert [type(m).__name__ for m in modules[0].modules()] == [
        type(m).__name__ for m in modules[1].modules()
    ]
    assert not any("lora" in n.lower() for n, _ in modules[0].named_parameters())


@pytest.mark.parametrize(
    ("model", "lora_form", "form"),
    [
        ("adapter-nli", "merged", "adapter"),
        ("adapter-seq-squad", "merged", "adapter"),
        ("lora", "unmerged", "lora"),
    ],
)
def test_a_task_list_of_a_new_arm_serves_mixed_batches_like_its_single_task_models(
    nli_zoo, model, lora_form, form
):
    """XNLI and TyDiQA rows in one batch: the sequential adapters in the adapter form (each task's
    adapter row by row), `lora --lora_form unmerged` on one backbone, the pretrained encoder its LoRA
    was trained on, so each task's update comes back at rank 8 (not 16 against another task's
    weights). Every row equals the row alone through its task's single-task model."""
    from models.base import BackendOptions
    from models.multitask import MultiTaskBackend, resolve_tasks
    from models.spec import LORA_RANK
    from tasks.mixed import parse_task_list
    from tests.test_multitask import _batch, _rows_alone

    root = nli_zoo.root
    task_list = parse_task_list("+".join(TARGETS))
    multi = resolve_tasks(model, task_list, models_dir=root, lora_form=lora_form)
    assert multi.form == form
    backend = MultiTaskBackend(multi, BackendOptions())
    if form == "lora":
        assert backend.module.rank == LORA_RANK
    ids, mask = _batch(multi.models[0].tokenizer(), rows=6)
    tasks = np.array([0, 1, 1, 0, 0, 1])
    out = backend.predict(ids, mask, tasks)
    alone = _rows_alone(model, root, ids, mask, tasks, TARGETS)
    served = []
    for rows, kind, part in out.parts:
        for j, r in enumerate(rows.tolist()):
            got = part[j][:, : int(mask[r].sum())] if kind == "qa" else part[j]
            assert got.shape == alone[r].shape
            np.testing.assert_allclose(got, alone[r], atol=1e-5, rtol=0)
            served.append(r)
    assert sorted(served) == list(range(6))


@pytest.mark.parametrize(
    ("model", "stage", "serving"),
    [
        ("full-nli", "nli", "plain"),
        ("adapter-nli", "nli", "adapter"),
        ("adapter-seq-squad", "squad", "adapter"),
        ("lora", None, "plain"),
    ],
)
def test_retrieval_serves_the_intermediate_stage_encoder(nli_zoo, model, stage, serving):
    """Tatoeba (retrieval) serves the encoder after the intermediate stage: full-nli the SNLI-tuned
    encoder, the sequential adapters the encoder with the intermediate adapter, lora the pretrained
    encoder (it has no intermediate stage)."""
    from transformers import AutoModel

    from models.loaders import load_model

    root = nli_zoo.root
    served = resolve(model, "tatoeba", models_dir=root)
    assert served.checkpoint == (root / model / stage if stage else root / "encoder")
    assert served.serving == serving
    pretrained = resolve("full", "tatoeba", models_dir=root)
    assert pretrained.checkpoint == root / "encoder"
    ids, mask = _inputs(served.tokenizer())
    with torch.inference_mode():
        got = served.torch_module()(ids, mask)
        plain = pretrained.torch_module()(ids, mask)
    if stage is None:
        assert torch.equal(got, plain)
        return
    assert not torch.allclose(got, plain, atol=1e-4)
    if model == "full-nli":  # the SNLI-tuned weights themselves, not the pretrained ones
        weights = dict(load_model(served).named_parameters())
        stage_model = AutoModel.from_pretrained(root / model / stage, add_pooling_layer=False)
        nli = dict(stage_model.named_parameters())
        enc = dict(load_model(pretrained).named_parameters())
        assert weights.keys() == nli.keys() == enc.keys()
        assert all(torch.equal(weights[n], nli[n]) for n in nli)
        assert sum(not torch.equal(weights[n], enc[n]) for n in enc) > len(enc) // 2


@pytest.mark.slow
@pytest.mark.parametrize("model", NEW)
def test_a_tiny_offline_run_of_each_new_arm_completes(nli_zoo, model, tmp_path):
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "harness", "run", "--model", model, "--task", "xnli",
           "--models_dir", str(nli_zoo.root), "--scenario", "Offline", "--count", "8",
           "--duration", "1", "--languages", "en", "--allow_invalid",
           "--output_dir", str(out)]  # fmt: skip
    env = {**os.environ, "XLMR_HARNESS_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (results,) = out.rglob("results.json")
    config = json.loads((results.parent / "run_config.json").read_text())
    assert (config["model"], config["task"], config["count"]) == (model, "xnli", 8)
    spec = config["model_spec"]
    assert (spec["intermediate"], spec["learning"], spec["serving"]) == (
        MODELS[model].intermediate,
        MODELS[model].learning,
        MODELS[model].serving,
    )
    assert config["checkpoint_sha256"]  # served from the zoo's stage, checked
    assert json.loads(results.read_text())["exit_status"] == 0
