"""Task lists (`--task xnli+pawsx+tydiqa`): the union QSL, mixed packing, the serving forms against
single-task models, per-task scores equal to single-task runs, and bad input (docs/multitask.md).

One very small zoo (2 layers, hidden 64) is built once per session (tests/conftest.py
`multitask_zoo`): full and adapter for XNLI, PAWS-X and TyDiQA, lora-squad and adapter-squad for
XNLI and PAWS-X only (so one task list lacks a checkpoint)."""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common.exit_codes import BAD_INPUT
from common.paths import REPO
from models.base import BackendOptions
from models.multitask import MixedBottleneck, MultiTaskBackend, parameter_memory, resolve_tasks
from models.registry import resolve
from models.spec import LORA_RANK
from sut.base import pack_mixed
from tasks.mixed import MixedOutput, MixedTask, parse_task_list, split_log
from tasks.mixed import main as mixed_main
from tasks.qsl import QuerySampleLibrary

TASKS = ("xnli", "pawsx", "tydiqa")
LIST = "+".join(TASKS)
COUNT = 24  # samples of each task (the first 24 of each task's own qsl order)


@pytest.fixture(scope="session")
def zoo(multitask_zoo):
    """tests/conftest.py's task-list zoo (built once per session, shared with test_multitask_onnx)."""
    return multitask_zoo


def _batch(tokenizer, rows: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """A padded batch of sentence pairs of different lengths."""
    pairs = [
        ("a cat sat on the mat", "dog"),
        ("hello world", "one two three four five six"),
        ("un deux trois", "quatre"),
        ("the end is near and far away from here", "yes"),
    ]
    pairs = [pairs[i % len(pairs)] for i in range(rows)]
    enc = tokenizer([a for a, _ in pairs], [b for _, b in pairs], padding=True, return_tensors="np")
    return enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)


def _rows_alone(model: str, zoo: Path, ids, mask, tasks, names=TASKS) -> dict[int, np.ndarray]:
    """Each row run alone (no padding) through its task's single-task served module."""
    singles = {k: resolve(model, t, models_dir=zoo).torch_module() for k, t in enumerate(names)}
    out = {}
    with torch.inference_mode():
        for r in range(len(ids)):
            n = int(mask[r].sum())
            one = singles[int(tasks[r])](
                torch.from_numpy(ids[r : r + 1, :n]), torch.from_numpy(mask[r : r + 1, :n])
            )
            out[r] = one[0].numpy()
    return out


@pytest.mark.parametrize("model", ["adapter", "full"])
def test_mixed_batch_rows_equal_each_row_alone_through_its_single_task_model(zoo, model):
    """The adapter form runs XNLI, PAWS-X and TyDiQA rows in ONE backbone pass, each row through its
    own adapter and head; the full form one sub-batch per task: every row equals the row alone."""
    multi = resolve_tasks(model, parse_task_list(LIST), models_dir=zoo)
    assert multi.form == {"adapter": "adapter", "full": "plain"}[model]
    backend = MultiTaskBackend(multi, BackendOptions())
    ids, mask = _batch(multi.models[0].tokenizer())
    tasks = np.array([0, 1, 2, 2, 0, 1, 0, 2, 1])
    out = backend.predict(ids, mask, tasks)
    alone = _rows_alone(model, zoo, ids, mask, tasks)
    assert sorted(k for _, k, _ in out.parts) == ["classification", "classification", "qa"]
    assert out.rows == len(ids)
    widths = {}
    for rows, kind, part in out.parts:
        for j, r in enumerate(rows.tolist()):
            n = int(mask[r].sum())
            got = part[j][:, :n] if kind == "qa" else part[j]
            assert got.shape == alone[r].shape
            np.testing.assert_allclose(got, alone[r], atol=1e-5, rtol=0)
            widths[r] = got.size
    assert [widths[r] for r in (0, 1)] == [3, 2]  # XNLI 3 logits, PAWS-X 2
    assert widths[2] == 2 * int(mask[2].sum())  # TyDiQA: start and end logits per token


@pytest.mark.parametrize("model", ["adapter-squad", "lora-squad"])
def test_fusion_and_merged_forms_serve_rows_like_single_task_models(zoo, model):
    """Merged LoRA: one merged copy per task. AdapterFusion: one model per task, the parameters equal
    to the first task's (frozen backbone, shared SQuAD adapter) stored once."""
    from models.multitask import tie_equal_parameters

    multi = resolve_tasks(model, parse_task_list("xnli+pawsx"), models_dir=zoo)
    backend = MultiTaskBackend(multi, BackendOptions())
    ids, mask = _batch(multi.models[0].tokenizer(), rows=6)
    tasks = np.array([1, 0, 0, 1, 1, 0])
    out = backend.predict(ids, mask, tasks)
    alone = _rows_alone(model, zoo, ids, mask, tasks, ("xnli", "pawsx"))
    for rows, _, part in out.parts:
        for j, r in enumerate(rows.tolist()):
            np.testing.assert_allclose(part[j], alone[r], atol=1e-5, rtol=0)
    singles = [resolve(model, t, models_dir=zoo).torch_module() for t in ("xnli", "pawsx")]
    each = [parameter_memory(m)["parameter_bytes"] for m in singles]
    shared = {n: p for n, p in singles[0].named_parameters()}
    equal = sum(
        p.numel() * 4
        for n, p in singles[1].named_parameters()
        if n in shared and shared[n].shape == p.shape and torch.equal(shared[n], p)
    )
    got = backend.memory()["parameter_bytes"]
    if model == "adapter-squad":
        assert equal > each[1] / 2 and got == sum(each) - equal  # 89% of PAWS-X's module here
        assert tie_equal_parameters(singles[1], singles[0]) > 0
    else:  # fine-tuned through LoRA on every layer and merged: nothing left equal but frozen parts
        assert got == sum(each)


def test_unmerged_lora_form_serves_rows_like_the_merged_models(zoo):
    """lora-squad with --lora_form unmerged: ONE backbone (the SQuAD stage the tasks' LoRA was trained
    on), each task's query/value update read back from its merged weights at rank 8, mixed batches.
    Every row equals the row alone through its task's merged model; the update rows are exact."""
    from models.multitask import MixedLoRALinear

    multi = resolve_tasks(
        "lora-squad", parse_task_list("xnli+pawsx"), models_dir=zoo, lora_form="unmerged"
    )
    assert multi.form == "lora"
    backend = MultiTaskBackend(multi, BackendOptions())
    ids, mask = _batch(multi.models[0].tokenizer(), rows=6)
    tasks = np.array([1, 0, 0, 1, 1, 0])
    out = backend.predict(ids, mask, tasks)
    alone = _rows_alone("lora-squad", zoo, ids, mask, tasks, ("xnli", "pawsx"))
    assert sorted(r for rows, _, _ in out.parts for r in rows.tolist()) == list(range(6))
    for rows, _, part in out.parts:
        for j, r in enumerate(rows.tolist()):
            np.testing.assert_allclose(part[j], alone[r], atol=1e-5, rtol=0)
    layers = [m for m in backend.module.modules() if isinstance(m, MixedLoRALinear)]
    cfg = multi.models[0].encoder_config
    assert len(layers) == 2 * cfg["num_hidden_layers"]  # query and value of every layer
    assert layers[0].a.shape == (2, cfg["hidden_size"], LORA_RANK)
    assert backend.describe()["form"] == "lora"


def test_unmerged_lora_memory_grows_by_one_update_and_head_per_task(zoo):
    """Synthetic tasks (xnli@K) in the unmerged LoRA form: each adds rank-8 A and B for Q and V of
    every layer and one classification head, nothing else."""

    served = resolve("lora-squad", "xnli", models_dir=zoo)
    h, layers = served.encoder_config["hidden_size"], served.encoder_config["num_hidden_layers"]
    update_bytes = layers * 2 * 4 * (h * LORA_RANK + LORA_RANK * h)
    head_bytes = 4 * (h * h + h + h * 3 + 3)
    sizes = {}
    for k in (1, 4):
        multi = resolve_tasks(
            "lora-squad", parse_task_list(f"xnli@{k}"), models_dir=zoo, lora_form="unmerged"
        )
        sizes[k] = MultiTaskBackend(multi, BackendOptions()).memory()["parameter_bytes"]
    assert sizes[4] - sizes[1] == 3 * (update_bytes + head_bytes)
    single = parameter_memory(served.torch_module())["parameter_bytes"]
    assert sizes[1] == single + update_bytes  # one backbone and head, plus one update


def _by_row(out: MixedOutput) -> dict[int, np.ndarray]:
    return {r: part[j] for rows, _, part in out.parts for j, r in enumerate(rows.tolist())}


def test_unmerged_lora_add_task_serves_the_new_task_and_leaves_the_others(zoo):
    """MixedLoRAForm.add_task appends one more task's update to every MixedLoRALinear stack and its
    head: a random update (with a copy of a head), then XNLI's own update read back from its merged
    checkpoint (`one_more_lora_task`). Each new task's rows equal the row alone through a reference
    to 1e-5: the SQuAD stage with that update merged into its query and value weights, then the
    head; XNLI's merged model. The tasks served before answer exactly as before, and each addition
    grows resident memory by exactly one update and one head. An update of another rank is refused
    with nothing changed."""
    from transformers import AutoModel

    from models.multitask import one_more_lora_task, random_lora_update

    multi = resolve_tasks(
        "lora-squad", parse_task_list("xnli+pawsx"), models_dir=zoo, lora_form="unmerged"
    )
    backend = MultiTaskBackend(multi, BackendOptions())
    form = backend.module
    cfg = multi.models[0].encoder_config
    h, layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    update_bytes = layers * 2 * 4 * (h * LORA_RANK + LORA_RANK * h)  # Q and V: A [H, 8], B [8, H]
    head_bytes = 4 * (h * h + h + h * 3 + 3)  # a 3-label classification head
    ids, mask = _batch(multi.models[0].tokenizer(), rows=8)
    old = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    before = _by_row(backend.predict(ids, mask, old))
    sizes = [backend.memory()["parameter_bytes"]]

    update = random_lora_update(form.backbone, form.rank, torch.Generator().manual_seed(5))
    head = copy.deepcopy(form.heads[0])
    bad = {name: (a[:, :4], b[:4]) for name, (a, b) in update.items()}  # rank 4 onto rank 8 stacks
    with pytest.raises(ValueError, match=rf"does not stack onto A \(2, {h}, {LORA_RANK}\)"):
        form.add_task(bad, head, "classification")
    assert backend.memory()["parameter_bytes"] == sizes[0] and len(form.heads) == 2
    form.add_task(update, head, "classification")  # task 2
    sizes.append(backend.memory()["parameter_bytes"])
    xnli = resolve("lora-squad", "xnli", models_dir=zoo)
    form.add_task(*one_more_lora_task(form, xnli, seed=0), "classification")  # task 3
    sizes.append(backend.memory()["parameter_bytes"])
    assert [sizes[1] - sizes[0], sizes[2] - sizes[1]] == [update_bytes + head_bytes] * 2
    assert form.layers["encoder.layer.1.attention.self.value"].a.shape == (4, h, LORA_RANK)

    again = _by_row(backend.predict(ids, mask, old))  # the same batch: the same computation
    for r in range(len(ids)):
        np.testing.assert_array_equal(again[r], before[r])
    tasks = np.array([0, 1, 2, 3, 0, 1, 3, 2])
    after = _by_row(backend.predict(ids, mask, tasks))
    for r in (0, 1, 4, 5):  # the old tasks' rows in a batch shared with the new tasks
        np.testing.assert_allclose(after[r], before[r], atol=1e-5, rtol=0)
    stage = AutoModel.from_pretrained(
        str(Path(xnli.checkpoint).parent / "squad"), add_pooling_layer=False
    ).eval()
    with torch.no_grad():  # the random update merged into the frozen backbone's weights
        for name, (a, b) in update.items():
            stage.get_submodule(name).weight += (a @ b).T
    merged_xnli = xnli.torch_module()
    with torch.inference_mode():
        for r in (2, 7, 3, 6):
            n = int(mask[r].sum())
            one = torch.from_numpy(ids[r : r + 1, :n]), torch.from_numpy(mask[r : r + 1, :n])
            if tasks[r] == 2:
                want = head(stage(input_ids=one[0], attention_mask=one[1]).last_hidden_state)[0]
            else:
                want = merged_xnli(*one)[0]
            np.testing.assert_allclose(after[r], want.numpy(), atol=1e-5, rtol=0)


def test_unmerged_lora_on_random_weights_gives_each_task_its_own_head(zoo):
    """--weights random (speed studies): a list of tasks of different kinds keeps each task's head
    and output shape (XNLI 3 logits, TyDiQA start and end logits per token). The zoo gives only
    the tokenizer (random weights need no checkpoint; the tiny tokenizer is the zoo's)."""
    multi = resolve_tasks(
        "lora-squad",
        parse_task_list("xnli+tydiqa"),
        weights="random",
        models_dir=zoo,
        lora_form="unmerged",
    )
    backend = MultiTaskBackend(multi, BackendOptions())
    ids, mask = _batch(multi.models[0].tokenizer(), rows=4)
    out = backend.predict(ids, mask, np.array([0, 1, 1, 0]))
    shapes = {kind: part.shape for _, kind, part in out.parts}
    assert shapes == {"classification": (2, 3), "qa": (2, 2, ids.shape[1])}


def test_low_rank_update_is_exact_at_the_rank_and_refuses_more():
    from models.multitask import LORA_TOLERANCE, low_rank_update

    g = torch.Generator().manual_seed(3)
    b, a = torch.randn(48, 8, generator=g) * 0.1, torch.randn(8, 32, generator=g) * 0.1
    delta = b @ a  # a Linear weight change [out 48, in 32] of rank 8
    left, right = low_rank_update(delta, 8, "x")
    assert left.shape == (32, 8) and right.shape == (8, 48)
    x = torch.randn(5, 32, generator=g)
    torch.testing.assert_close(x @ left @ right, x @ delta.T, atol=1e-6, rtol=0)
    with pytest.raises(ValueError) as err:
        low_rank_update(delta, 7, "task pawsx's encoder.layer.0.attention.self.query")
    residual = float(torch.linalg.svdvals(delta.double())[7])
    assert residual > LORA_TOLERANCE
    assert str(err.value).startswith(
        "task pawsx's encoder.layer.0.attention.self.query differs from the base by more than a "
        "rank-7 update (residual "
    )
    assert str(err.value).endswith("not a LoRA of that base; serve the list merged")


@pytest.mark.parametrize(
    ("model", "task", "says"),
    [
        ("adapter", "xnli+pawsx", "--lora_form unmerged serves a LoRA model (lora-squad); 'adapter'"),
        ("lora-squad", "xnli", "--lora_form unmerged serves a task list's LoRA updates"),
    ],
)
def test_lora_form_unmerged_needs_a_lora_task_list(model, task, says, capsys):
    from harness.runner import configure_parser, main

    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(["--model", model, "--task", task, "--lora_form", "unmerged"])
    assert main(args) == BAD_INPUT
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and says in errors[0], errors


def test_mixed_bottleneck_layer_equals_each_task_adapter(zoo):
    """The stacked layer (one batched matmul per projection) against each task's library adapter."""
    from models.loaders import load_model

    adapters = []
    for task in TASKS:
        model = load_model(resolve("adapter", task, models_dir=zoo), lean=False)
        adapters.append(model.base_model.encoder.layer[1].output.adapters[task])
    layer = MixedBottleneck([*adapters, None])  # a 4th task without an adapter here: zero
    x = torch.randn(
        8, 5, adapters[0].adapter_down[0].in_features, generator=torch.Generator().manual_seed(1)
    )
    rows = torch.tensor([0, 1, 2, 3, 2, 1, 0, 3])
    with torch.inference_mode():
        got = layer(x, rows)
        for b, k in enumerate(rows.tolist()):
            want = (
                torch.zeros_like(x[b])
                if k == 3
                else adapters[k].adapter_up(adapters[k].adapter_down(x[b]))
            )
            torch.testing.assert_close(
                got[b], want * (1.0 if k == 3 else adapters[k].scaling), atol=1e-5, rtol=0
            )
    assert float(got[3].abs().max()) == 0.0 and float(got[7].abs().max()) == 0.0


def test_resident_memory_one_backbone_against_one_model_per_task(zoo):
    """Synthetic tasks (xnli@K): the adapter form adds exactly one adapter stack row and one head per
    task; the full form one whole model per task."""
    served = resolve("adapter", "xnli", models_dir=zoo)
    h, layers = served.encoder_config["hidden_size"], served.encoder_config["num_hidden_layers"]
    r = h // 16  # seq_bn: reduction factor 16
    adapter_bytes = layers * 4 * (h * r + r + r * h + h)
    head_bytes = 4 * (h * h + h + h * 3 + 3)  # dense + out_proj of a 3-label classification head
    sizes = {}
    for model in ("adapter", "full"):
        for k in (1, 4):
            multi = resolve_tasks(model, parse_task_list(f"xnli@{k}"), models_dir=zoo)
            sizes[model, k] = MultiTaskBackend(multi, BackendOptions()).memory()["parameter_bytes"]
    assert sizes["adapter", 4] - sizes["adapter", 1] == 3 * (adapter_bytes + head_bytes)
    assert sizes["full", 4] == 4 * sizes["full", 1]
    single = parameter_memory(resolve("full", "xnli", models_dir=zoo).torch_module())["parameter_bytes"]
    assert sizes["full", 1] == single


def test_union_qsl_batches_carry_each_rows_task(zoo):
    tokenizer = resolve("full", "xnli", models_dir=zoo).tokenizer()
    mixed = MixedTask.build(LIST, languages="en", count=COUNT)
    fs = mixed.features(tokenizer)
    singles = [t.features(tokenizer) for t in mixed.tasks]
    assert mixed.counts == [COUNT] * 3 and mixed.starts == [0, COUNT, 2 * COUNT] and len(fs) == 3 * COUNT
    for k, single in enumerate(singles):
        for j in (0, COUNT - 1):
            np.testing.assert_array_equal(fs.ids(mixed.starts[k] + j), single.ids(j))
    qsl = QuerySampleLibrary(fs)
    qsl.load_query_samples(list(range(len(fs))))
    batch = qsl.batch(np.array([0, COUNT, 2 * COUNT + 5, 3]))
    assert batch.tasks.tolist() == [0, 1, 2, 0] and len(batch.inputs) == 3
    assert fs.extra["task_row"][2 * COUNT + 5] == 5
    synthetic = MixedTask.build("xnli@4", languages="en", count=10).features(tokenizer)
    assert synthetic.extra["task"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]


def test_pack_mixed_puts_every_rows_response_back_in_row_order():
    import ctypes

    cls = np.arange(6, dtype=np.float32).reshape(2, 3)
    qa = np.arange(2 * 2 * 4, dtype=np.float32).reshape(2, 2, 4)
    qa[1, 0, 0] = np.nan  # part row 1 = batch row 0
    lengths = np.array([4, 3, 2, 3])
    out = MixedOutput([(np.array([3, 0]), "qa", qa), (np.array([1, 2]), "classification", cls)])
    packed = pack_mixed(out, lengths)
    assert packed.sizes == [2 * 4 * 4, 3 * 4, 3 * 4, 2 * 3 * 4]

    def response(r: int) -> np.ndarray:
        raw = (ctypes.c_float * (packed.sizes[r] // 4)).from_address(packed.addresses[r])
        return np.array(raw, dtype=np.float32)

    np.testing.assert_array_equal(response(0), qa[1, :, :4].ravel())
    np.testing.assert_array_equal(response(1), cls[0])
    np.testing.assert_array_equal(response(2), cls[1])
    np.testing.assert_array_equal(response(3), qa[0, :, :3].ravel())
    assert packed.nonfinite == 1
    with pytest.raises(ValueError, match="^mixed output answers row 4 of a batch of 5 0 times"):
        pack_mixed(out, np.array([4, 3, 2, 4, 1]))


def test_split_log_gives_each_task_its_own_qsl_indices(tmp_path):
    log = tmp_path / "mlperf_log_accuracy.json"
    entries = [{"seq_id": i, "qsl_idx": q, "data": "00"} for i, q in enumerate([0, 5, 3, 7, 9])]
    log.write_text(json.dumps(entries))
    per = split_log(log, [0, 3, 7], [3, 4, 3])
    assert [[e["qsl_idx"] for e in p] for p in per] == [[0], [2, 0], [0, 2]]
    with pytest.raises(ValueError, match="outside this run's tasks"):
        split_log(log, [0, 3], [3, 4])


# --- bad input: one `error:` line, exit 3, before LoadGen starts ----------------------------------
def _run(out: Path, *flags: str, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "harness", "run", "--output_dir", str(out), *flags]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _errors(proc: subprocess.CompletedProcess) -> list[str]:
    """The `error:` lines (inside a run folder the tee copies stderr to stdout)."""
    lines = (proc.stdout + proc.stderr).splitlines()
    return [line for line in lines if line.startswith("error:")]


@pytest.mark.parametrize(
    ("task", "says"),
    [
        ("xnli+pawz", "unknown task 'pawz'. Did you mean 'pawsx'?"),
        ("xnli+pawsx+xnli", "names xnli more than once; name each task once"),
        ("xnli+", "an empty name in the list"),
        ("xnli@0", "K in 1..1024"),
    ],
)
def test_bad_task_lists_are_one_error_line_and_exit_3(task, says, capsys):
    import argparse

    from harness.runner import configure_parser, main

    parser = argparse.ArgumentParser()
    configure_parser(parser)
    assert main(parser.parse_args(["--model", "adapter", "--task", task])) == BAD_INPUT
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and says in errors[0]


@pytest.mark.slow
def test_bad_input_exits_3_before_loadgen(tmp_path, zoo):
    cases = {
        ("adapter", "xnli+xnli"): "names xnli more than once",
        ("lora-squad", LIST): "model 'lora-squad' has no checkpoint for task 'tydiqa'",
        ("adapter", "xnli+tatoeba"): "tatoeba pools an intermediate layer of the plain encoder",
    }
    for (model, task), says in cases.items():
        proc = _run(tmp_path, "--model", model, "--task", task, "--models_dir", str(zoo), "--count", "4")
        assert proc.returncode == BAD_INPUT, proc.stderr[-2000:]
        errors = _errors(proc)
        assert len(errors) == 1 and says in errors[0], proc.stdout[-2000:] + proc.stderr[-2000:]
        assert not list(tmp_path.rglob("mlperf_log_summary.txt"))  # LoadGen never started
    assert "Run tatoeba on its own, or use a per-task form" in errors[0]


# --- LoadGen runs: per-task scores of a mixed run equal single-task runs on the same samples -------
VARIANT = Path("tiny", "pytorch")  # the run folder's encoder and backend (harness/run_folder.py)


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "accuracy.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("model", ["adapter", "full"])
def test_mixed_accuracy_run_scores_equal_single_task_runs(tmp_path, zoo, model):
    common = [
        *f"--model {model} --languages en --count {COUNT} --accuracy".split(),
        "--models_dir",
        str(zoo),
    ]
    proc = _run(tmp_path / "mixed", *common, "--task", LIST)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    mixed_dir = tmp_path / "mixed" / VARIANT / model / LIST / "Offline" / "accuracy"
    mixed = _metrics(mixed_dir)
    assert list(mixed) == list(TASKS)
    for task in TASKS:
        proc = _run(tmp_path / task, *common, "--task", task)
        assert proc.returncode == 0, proc.stderr[-3000:]
        single = _metrics(tmp_path / task / VARIANT / model / task / "Offline" / "accuracy")
        keys = ("exact_match", "f1") if task == "tydiqa" else ("accuracy",)
        for key in keys:
            assert mixed[task][key] == single[key], (task, key)
        assert mixed[task]["per_language"] == single["per_language"]
        # the per-task folder's log is an ordinary accuracy log: accuracy_<task>.py scores it alone
        script = subprocess.run(
            [
                sys.executable,
                f"accuracy_{task}.py",
                str(mixed_dir / task / "mlperf_log_accuracy.json"),
                "--languages",
                "en",
                *(["--heldout_rows"] if task != "tydiqa" else []),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert script.returncode == 0, script.stderr
        assert json.loads(script.stdout.splitlines()[-1])[keys[0]] == single[keys[0]]
    again = subprocess.run(
        [sys.executable, "accuracy_mixed.py", str(mixed_dir / "mlperf_log_accuracy.json")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )  # the whole log again, offline: the same final line per task
    assert again.returncode == 0, again.stderr
    finals = [json.loads(line) for line in again.stdout.splitlines() if line.startswith("{")]
    assert [f[key] for f, key in zip(finals, ("accuracy", "accuracy", "f1"), strict=True)] == [
        mixed[t][key] for t, key in zip(TASKS, ("accuracy", "accuracy", "f1"), strict=True)
    ]
    results = json.loads((mixed_dir / "results.json").read_text())
    cfg = json.loads((mixed_dir / "run_config.json").read_text())
    assert results["validity"] == "VALID" and cfg["model_spec"]["tasks"] == list(TASKS)
    assert [p["count"] for p in cfg["task_options"]["tasks"]] == [COUNT] * 3


@pytest.mark.slow
def test_unmerged_lora_accuracy_run_scores_like_the_merged_form(tmp_path, zoo):
    """`--lora_form unmerged` through a whole run (each task's options are prepared as its own
    single-task run's, served merged: the flag applies to the list only): exit 0, VALID, and every
    task's accuracy within one sample of the merged form's on the same samples (unmerged LoRA
    serves each update at rank 8, equal to the merged weights to LORA_TOLERANCE, not bit for bit)."""
    common = ["--model", "lora-squad", "--task", "xnli+pawsx", "--models_dir", str(zoo)]
    common += f"--languages en --count {COUNT} --accuracy".split()
    scores = {}
    for form in ("merged", "unmerged"):
        proc = _run(tmp_path / form, *common, "--lora_form", form)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        run_dir = tmp_path / form / VARIANT / "lora-squad" / "xnli+pawsx" / "Offline" / "accuracy"
        assert json.loads((run_dir / "results.json").read_text())["validity"] == "VALID"
        cfg = json.loads((run_dir / "run_config.json").read_text())
        assert cfg["model_spec"]["form"] == ("lora" if form == "unmerged" else "merged")
        scores[form] = _metrics(run_dir)
    for task in ("xnli", "pawsx"):
        gap = abs(scores["unmerged"][task]["accuracy"] - scores["merged"][task]["accuracy"])
        assert gap <= 100 / COUNT + 1e-9, (task, scores)


@pytest.mark.slow
def test_mixed_offline_performance_run_is_valid_and_synthetic_accuracy_is_refused(tmp_path, zoo):
    flags = f"--model adapter --task {LIST} --languages en --count {COUNT} --duration 1".split()
    # Offline's one query is 1.1 x target_qps x 1 s samples: 5,500 outlast the 1 s min duration on
    # any 2-core machine by construction (the tiny model's user.conf rate would not on a quiet one)
    conf = tmp_path / "user.conf"
    conf.write_text((REPO / "user.conf").read_text() + "adapter.Offline.target_qps = 5000\n")
    proc = _run(tmp_path, *flags, "--models_dir", str(zoo), "--user_conf", str(conf))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    res = json.loads(
        (tmp_path / VARIANT / "adapter" / LIST / "Offline" / "performance" / "results.json").read_text()
    )
    assert res["validity"] == "VALID" and res["loadgen_errors"] == 0 and res["sut_failure"] is None
    assert int(res["summary"]["samples_per_query"]) >= 3 * COUNT
    proc = _run(
        tmp_path, *"--model adapter --task xnli@4 --accuracy --count 4".split(), "--models_dir", str(zoo)
    )
    assert (
        proc.returncode == BAD_INPUT and "synthetic tasks are randomly initialised" in _errors(proc)[0]
    )


def test_languages_go_to_each_task_that_has_them():
    from harness.config import RunConfig
    from tasks.mixed import task_languages

    tasks = parse_task_list("xnli+tatoeba+tydiqa")
    assert task_languages(tasks, "de,deu,en") == [["de", "en"], ["deu"], ["en"]]
    assert task_languages(tasks, None) == [None, None, None]
    with pytest.raises(ValueError, match="--languages xx: no task of xnli\\+tatoeba\\+tydiqa has it"):
        task_languages(tasks, "de,xx")
    with pytest.raises(ValueError, match="leaves tatoeba, tydiqa no language; add one of tatoeba: afr,"):
        task_languages(tasks, "de")
    assert RunConfig(model="full", task="xnli+tatoeba", languages="de,deu").languages == "de,deu"


def test_bench_multitask_command_writes_its_tables(tmp_path, zoo):
    """`python -m bench multitask`, the command behind reports/multitask.md's tables, end to end
    on the tiny zoo: parameter bytes per (form, K) are the backends' own, K whole models are K x one,
    and every side divided by itself in the same rounds is exactly 1."""
    out = tmp_path / "multitask.md"
    argv = [
        "--models_dir",
        str(zoo),
        "--ks",
        "1,2",
        "--rounds",
        "2",
        "--samples",
        "8",
        "--out",
        str(out),
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "multitask", *argv], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    lines = text.splitlines()
    assert (
        lines[0] == f"Model kind: tiny zoo {zoo}. Command: `python -m bench multitask {' '.join(argv)}`."
    )
    tables = [t for t in text.split("\n\n") if t.startswith("| ")]
    memory = {
        (r[0], r[1]): r for r in (line.strip("| ").split(" | ") for line in tables[0].splitlines()[2:])
    }
    size = {
        (form, k): MultiTaskBackend(
            resolve_tasks(form, parse_task_list(f"xnli@{k}"), models_dir=zoo), BackendOptions()
        ).memory()["parameter_bytes"]
        for form in ("adapter", "full")
        for k in (1, 2)
    }
    for (form, k), nbytes in size.items():  # parameter MB and the ratio to one whole model
        row = memory[(form, str(k))]
        assert row[2:4] == [f"{nbytes / 1e6:.2f}", f"{nbytes / size['full', 1]:.3f}"], text
    assert memory[("full", "2")][3] == "2.000"  # K whole models
    tput = [line.strip("| ").split(" | ") for line in tables[1].splitlines()[2:]]
    assert [r[:2] for r in tput] == [  # every side in one group of rounds
        ["adapter", "1"],
        ["adapter", "2"],
        ["full", "1"],
        ["full", "2"],
        ["adapter single-task", "1 (plain)"],
        ["full single-task", "1 (plain)"],
    ], text
    # a side divided by itself in the same rounds is exactly 1
    assert tput[4][3] == "1.000 [1.000, 1.000]" and tput[5][4] == "1.000 [1.000, 1.000]", text
    # against full fine-tuning at the same K: per GB = the samples/s ratio x full's bytes / adapter's
    versus = [line.strip("| ").split(" | ") for line in tables[2].splitlines()[2:]]
    assert [r[:2] for r in versus] == [["adapter", "1"], ["adapter", "2"]], text
    for _, k, ratio, per_gb, who, server, server_who in versus:
        scale = size["full", int(k)] / size["adapter", int(k)]
        assert float(per_gb.split()[0]) == pytest.approx(float(ratio.split()[0]) * scale, abs=2e-3)
        assert who in ("adapter ahead", "full ahead", "not separated")
        assert (server, server_who) == ("-", "-")  # no LoadGen runs
    assert scale == pytest.approx(1.9, abs=0.1)  # K = 2: two whole models against one backbone


def test_bench_multitask_measures_the_lora_forms(tmp_path, zoo):
    """`--forms lora-merged,lora-unmerged`: merged LoRA holds one whole model per task (K = 2: twice
    one lora-squad model, nothing shared), unmerged LoRA one backbone and head plus one rank-8 update
    per task (K = 2 minus K = 1: exactly one update and one head, the report's "bytes per added
    task"); the throughput groups gain the single-task LoRA model, and its ratio column."""
    from bench.multitask import FORMS

    out = tmp_path / "multitask.md"
    argv = ["--models_dir", str(zoo), "--forms", "lora-merged,lora-unmerged", "--ks", "1,2"]
    argv += ["--tput_ks", "2", "--rounds", "1", "--samples", "8", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "multitask", *argv], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    rows = [line.strip("| ").split(" | ") for line in text.splitlines() if line.startswith("| ")]
    tables = [t for t in text.split("\n\n") if t.startswith("| ")]
    memory = {
        (r[0], r[1]): r for r in (line.strip("| ").split(" | ") for line in tables[0].splitlines()[2:])
    }
    size = {}
    for form in ("lora-merged", "lora-unmerged"):
        for k in (1, 2):
            f = FORMS[form]
            multi = resolve_tasks(
                f.model, parse_task_list(f"xnli@{k}"), models_dir=zoo, lora_form=f.lora_form
            )
            size[form, k] = MultiTaskBackend(multi, BackendOptions()).memory()["parameter_bytes"]
    served = resolve("lora-squad", "xnli", models_dir=zoo)
    h, layers = served.encoder_config["hidden_size"], served.encoder_config["num_hidden_layers"]
    update_bytes = layers * 2 * 4 * (h * LORA_RANK + LORA_RANK * h)
    head_bytes = 4 * (h * h + h + h * 3 + 3)
    one_model = parameter_memory(served.torch_module())["parameter_bytes"]
    assert size["lora-merged", 1] == one_model and size["lora-merged", 2] == 2 * one_model
    assert size["lora-unmerged", 1] == one_model + update_bytes
    assert size["lora-unmerged", 2] - size["lora-unmerged", 1] == update_bytes + head_bytes
    header = next(r for r in rows if r[0] == "form" and "bytes per added task" in r)
    assert header[2:5] == ["parameter MB", "x one full model", "bytes per added task"], text
    for (form, k), nbytes in size.items():  # the report's rows are the backends' own bytes
        row = memory[(form, str(k))]
        assert row[2:4] == [f"{nbytes / 1e6:.2f}", "-"], text  # no full row: no ratio
        assert float(row[7]) >= 0  # the time to add one more task
    assert memory[("lora-merged", "2")][4] == str(one_model)  # one more whole model
    assert memory[("lora-unmerged", "2")][4] == str(update_bytes + head_bytes)
    assert memory[("lora-merged", "1")][4] == memory[("lora-unmerged", "1")][4] == "-"
    ratios = next(r for r in rows if r[:3] == ["form", "K", "samples/s"])[3:]
    assert ratios == ["/ adapter single-task", "/ full single-task", "/ lora single-task"], text
    assert len(tables) == 2, text  # no full form: no table against full fine-tuning
    tput = [line.strip("| ").split(" | ") for line in tables[1].splitlines()[2:]]
    singles = ["adapter single-task", "full single-task", "lora single-task"]
    assert [r[:2] for r in tput] == [
        ["lora-merged", "2"],
        ["lora-unmerged", "2"],
        *([name, "1 (plain)"] for name in singles),
    ], text
    assert tput[4][5] == "1.000", text  # lora single-task / itself (one round: one value)


def test_bench_multitask_refuses_an_unknown_form(capsys):
    from bench import multitask

    parser = argparse.ArgumentParser()
    multitask.configure_parser(parser)
    args = parser.parse_args(["--models_dir", "Z", "--forms", "adapter,lora"])
    assert multitask.main(args) == BAD_INPUT
    assert capsys.readouterr().err.startswith(
        "error: --forms: unknown form 'lora'. Did you mean 'lora-merged'? Known: adapter, full, "
        "lora-merged, lora-unmerged"
    )


def test_bench_multitask_loadgen_rows_are_each_runs_own_figures(tmp_path, monkeypatch):
    """`--loadgen_ks` with the child runs faked: one `harness run --task xnli@K` per scenario, form
    and task, each with the common Server and Offline target_qps lines; a run without results is
    listed with its exit status and no figures; the report's LoadGen table shows the runs' figures."""
    import argparse
    from types import SimpleNamespace

    from bench import multitask
    from harness.results import Results

    launched = {}

    def fake_launch(cfg, lines, name, runs_dir, **changes):
        launched[name] = (cfg.task, cfg.scenario, cfg.count, cfg.duration_s, lines)
        ok, r = cfg.scenario != "SingleStream", name.endswith("-r1")  # round 2 is slower
        res = Results(
            validity="VALID",
            samples_per_second=40.0 + 4 * r,
            latency_ns={"p90": 5e6 + 1e6 * r, "p99": 7e6 + 2e6 * r},
        )
        return SimpleNamespace(rc=0 if ok else 2, results=res if ok else None)

    monkeypatch.setattr(multitask, "launch_with_conf", fake_launch)
    monkeypatch.setattr(multitask, "built", lambda cfg: cfg)
    parser = argparse.ArgumentParser()
    multitask.configure_parser(parser)
    flags = ["--models_dir", str(tmp_path), "--samples", "8", "--loadgen_s", "3", "--server_qps", "20"]
    flags += ["--offline_qps", "100", "--runs_dir", str(tmp_path / "R"), "--loadgen_rounds", "2"]
    args = parser.parse_args(flags)
    rows = multitask.loadgen_table(args, ["adapter"], [16])
    runs = [
        f"{s}-adapter-{t}" for s in ("Offline", "Server", "SingleStream") for t in ("xnli", "xnlix16")
    ]
    # round 2 starts one run later: a drift in machine speed does not always hit the same run first
    assert list(launched) == runs + [f"{n}-r1" for n in runs[1:] + runs[:1]]
    task, scenario, count, duration, lines = launched["Server-adapter-xnlix16"]
    assert (task, scenario, count, duration) == ("xnli@16", "Server", 8, 3.0)
    assert [line.split(".", 1)[1] for line in lines] == [
        "Server.target_qps = 20.0",
        "Offline.target_qps = 100.0",
    ]
    assert rows[0] == {
        "scenario": "Offline",
        "form": "adapter",
        "task": "xnli",
        "round": 0,
        "exit": 0,
        "validity": "VALID",
        "samples_per_s": 40.0,
        "p90_ms": 5.0,
        "p99_ms": 7.0,
    }
    assert rows[-1]["exit"] == 2 and rows[-1]["validity"] == "-" and rows[-1]["p99_ms"] is None
    memory = [{"form": "adapter", "k": 1, "parameter_bytes": 2e6, "peak_rss_mib": 300.0}]
    memory[0] |= {"rss_before_mib": 200.0, "build_s": 1.5, "add_task_s": 0.1}
    text = multitask.report(args, memory, {}, rows, "cmd")
    row = "| Offline | adapter | xnli@16 | 2/2 | 42.00 [40.00, 44.00] | 5.50 [5.00, 6.00] | "
    assert row + "8.00 [7.00, 9.00] |" in text, text
    assert "| SingleStream | adapter | xnli | 0/2 | - | - | - |" in text
    assert "2 round(s), median [min, max] over rounds; min duration 3 s, the first 8 XNLI" in text
    assert "Server at target_qps 20 for every side" in text


def test_bench_multitask_says_where_a_one_backbone_form_overtakes_full():
    """The table against full fine-tuning: per GB = each round's samples/s ratio x the exact bytes
    ratio; Server p99 pairs rounds in which both runs measured a p99 (a run without results drops
    out); a verdict needs the whole range on one side of 1."""
    from bench import multitask

    gb = 10**9
    memory = [
        {"form": "adapter", "k": 1, "parameter_bytes": 1.0 * gb},
        {"form": "adapter", "k": 4, "parameter_bytes": 1.0 * gb},
        {"form": "full", "k": 1, "parameter_bytes": 1.0 * gb},
        {"form": "full", "k": 4, "parameter_bytes": 4.0 * gb},
        {"form": "adapter", "k": 2, "parameter_bytes": 1.0 * gb},  # memory only: no row
        {"form": "full", "k": 2, "parameter_bytes": 2.0 * gb},
    ]
    tput = {
        "adapter K=1": {"rounds": [8.0, 9.0, 10.0]},
        "adapter K=4": {"rounds": [8.0, 8.0, 8.0]},
        "full K=1": {"rounds": [10.0, 10.0, 10.0]},
        "full K=4": {"rounds": [4.0, 5.0, 6.0]},
    }

    def server(form, task, rnd, p99, validity="VALID"):
        return {"scenario": "Server", "form": form, "task": task, "round": rnd, "p99_ms": p99,
                "validity": validity}  # fmt: skip

    loadgen = [
        server("adapter", "xnli", 0, 50.0),
        server("adapter", "xnli", 1, 60.0),
        server("full", "xnli", 0, 40.0),
        server("full", "xnli", 1, 45.0, "INVALID"),  # too short for early stopping: measured
        server("adapter", "xnli@4", 0, 50.0),
        server("adapter", "xnli@4", 1, None, "-"),  # no results
        server("full", "xnli@4", 0, 100.0),
        server("full", "xnli@4", 1, 100.0),
    ]
    text = "\n".join(multitask.overtaking(memory, tput, loadgen))
    assert "| adapter | 1 | 0.900 [0.800, 1.000] | 0.900 [0.800, 1.000] | not separated | " in text
    assert "0.775 [0.750, 0.800] | full ahead |" in text  # 40/50 and 45/60
    # K = 4: 8/4, 8/5, 8/6 x 4 GB / 1 GB; Server: round 1's adapter run without results drops out
    assert (
        "| adapter | 4 | 1.600 [1.333, 2.000] | 6.400 [5.333, 8.000] | adapter ahead | 2.000 | " in text
    )
    assert text.rstrip().endswith("| adapter ahead |"), text
    assert "| adapter | 2 |" not in text
    assert multitask.overtaking(memory[2:], tput, loadgen) == []  # no one-backbone form


def test_bench_multitask_loadgen_runs_serve_each_form_as_harness_run_names_it(tmp_path, monkeypatch):
    """The LoadGen runs of the LoRA forms are `harness run --model lora-squad` with --lora_form
    unmerged for lora-unmerged's task lists (one task, `xnli`, is served merged by every form), and
    with --shape the runs take random weights at that encoder's shapes, as the other tables do."""
    from types import SimpleNamespace

    from bench import multitask

    launched = {}

    def fake_launch(cfg, lines, name, runs_dir, **changes):
        launched[name] = (cfg.model, cfg.lora_form, cfg.task, cfg.encoder, cfg.weights)
        return SimpleNamespace(rc=2, results=None)

    monkeypatch.setattr(multitask, "launch_with_conf", fake_launch)
    monkeypatch.setattr(multitask, "built", lambda cfg: cfg)
    parser = argparse.ArgumentParser()
    multitask.configure_parser(parser)
    args = parser.parse_args(["--models_dir", str(tmp_path), "--shape", "e5-small"])
    rows = multitask.loadgen_table(args, ["lora-merged", "lora-unmerged"], [4])
    assert [r["form"] for r in rows[:4]] == ["lora-merged"] * 2 + ["lora-unmerged"] * 2
    random = ("e5-small", "random")
    assert {n: v for n, v in launched.items() if n.startswith("Server-")} == {
        "Server-lora-merged-xnli": ("lora-squad", "merged", "xnli", *random),
        "Server-lora-merged-xnlix4": ("lora-squad", "merged", "xnli@4", *random),
        "Server-lora-unmerged-xnli": ("lora-squad", "merged", "xnli", *random),
        "Server-lora-unmerged-xnlix4": ("lora-squad", "unmerged", "xnli@4", *random),
    }


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (None, "no task list's run_config.json"),  # no file beside the log
        ('{"task_options": {}}', "no task list's run_config.json"),  # a single-task run's
        ("[" * 100_000, "not a JSON object (needed for the task list)"),  # nested too deep
    ],
)
def test_accuracy_mixed_refuses_a_log_without_a_task_lists_config_in_one_line(
    tmp_path, capsys, config, message
):
    log = tmp_path / "mlperf_log_accuracy.json"
    log.write_text("[]")
    if config is not None:
        (tmp_path / "run_config.json").write_text(config)
    assert mixed_main([str(log)]) == BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'run_config.json'}: {message}") and err.count("\n") == 1
