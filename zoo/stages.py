"""The recipe's training stages: one function per (stage, learning kind), chosen through dicts.

Each stage writes one zoo folder in the layout models/loaders.py reads (and documents).
"""

from __future__ import annotations

import copy
import hashlib
import os
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import adapters
import numpy as np
import torch
from adapters import Fuse, LoRAConfig, XLMRobertaAdapterModel
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoTokenizer, get_linear_schedule_with_warmup

from models import loaders
from models.loaders import DONE, activate, add_head, no_setup_warning, write_manifest
from models.registry import TASKS, ModelSpec
from models.spec import INTERMEDIATE, LORA_ALPHA, LORA_RANK
from models.training_device import autocast_bf16_on, training_device
from tasks.data import (
    batch_encode,
    find_file,
    pad_ragged,
    read_classification_file,
    read_snli,
    read_squad,
    to_ragged,
)
from tasks.registry import get_task
from tasks.tydiqa import squad_train_features
from zoo.evaluate import heldout_probe, row_probe
from zoo.pretrain import build_tokenizer, pretrain_mlm, unlabelled_corpus


@dataclass(frozen=True)
class Context:
    """What a stage trains with. `train_rows`: task -> the English rows of its bundled dev file that
    train it (zoo/recipe.py TRAIN_ROWS, or the selection's SELECT_ROWS); `dev_rows`: task -> English
    rows scored after every epoch instead of the held-out probe (curve key "dev": the selection's
    DEV_ROWS); `snli_pairs`: the first N SNLI pairs (tasks.data.read_snli order) added to XNLI's
    training rows, None all of them; `selection`: the dev-split choice a target stage's learning rate
    and epochs come from (zoo/choice.py), recorded in its zoo.json; `train_data`: the training data
    option a target stage of a `--train_data` zoo trains on and its row counts (zoo/recipe.py
    `data_record`), recorded in its zoo.json (None: the default, recorded by its absence); `device`:
    where `train` runs (models/training_device.py; the model comes back to the CPU after it);
    `resume`: the folder where `train` keeps its checkpoints for this stage (zoo/recipe.py
    `resume_dir`, beside the stage's folder), None for none."""

    models_dir: Path
    sizes: Any  # zoo.recipe.Sizes (not imported: the recipe imports this module)
    seed: int
    progress: bool
    squad_path: Path
    train_rows: dict[str, Collection[int]] = field(default_factory=dict)
    encoder_dir: str = ""
    dev_rows: dict[str, Collection[int]] = field(default_factory=dict)
    snli_pairs: int | None = 0
    selection: dict[str, Any] | None = None
    train_data: dict[str, Any] | None = None
    device: str = field(default_factory=training_device)
    resume: Path | None = None

    @property
    def bf16(self) -> bool:
        """Whether `train` autocasts to bf16: the recipe wants it and ctx.device multiplies bf16
        natively (models/training_device.py); the stage records this answer."""
        return autocast_bf16_on(self.device, self.sizes.bf16)


# --- data ------------------------------------------------------------------------------------------
def classification_data(
    task: str, tokenizer, rows: Collection[int], snli_pairs: int | None = 0
) -> dict[str, np.ndarray]:
    """English rows `rows` of the task's bundled dev file (then, for XNLI, the first `snli_pairs` SNLI
    pairs, None all, labelled in XNLI's label order) -> ragged ids + labels."""
    t = get_task(task, languages="en")
    examples = read_classification_file(find_file(t.data_dir, "dev-en.tsv"), t.label_names, "en")
    keep = set(rows)
    examples = [e for e in examples if e.row in keep]
    if snli_pairs != 0:
        if task != "xnli":
            raise ValueError(f"SNLI pairs train XNLI only, not {task}")
        examples += read_snli(t.label_names)[:snli_pairs]
    return _pair_data(tokenizer, examples)


def nli_data(tokenizer) -> dict[str, np.ndarray]:
    """The intermediate NLI task's training pairs: every vendored SNLI pair (tasks.data.read_snli
    order: dev, then test; 19,666 English pairs), labelled in XNLI's label order (0 entailment,
    1 neutral, 2 contradiction) -> ragged ids + labels."""
    return _pair_data(tokenizer, read_snli(TASKS["xnli"].label_names))


def _pair_data(tokenizer, examples: list) -> dict[str, np.ndarray]:
    ids = batch_encode(tokenizer, [e.text_a for e in examples], [e.text_b for e in examples], 128)
    values, offsets = to_ragged(ids)
    return {"input_ids": values, "offsets": offsets, "labels": np.array([e.label for e in examples])}


def qa_data(
    path: Path, tokenizer, max_length: int, questions: Collection[int] | None = None
) -> dict[str, np.ndarray]:
    """SQuAD-format training windows (tasks.tydiqa.squad_train_features) of the file's questions
    (those at indices `questions` in file order, all when None)."""
    examples = read_squad(path, "en")
    if questions is not None:
        examples = [examples[i] for i in sorted(questions)]
    return squad_train_features(
        tokenizer,
        examples,
        max_length,
        128 if max_length > 200 else 48,
        64 if max_length > 200 else 32,
    )


_MEMO: dict[tuple, dict[str, np.ndarray]] = {}  # featurised training data, reused across models


def train_data(ctx: Context, task: str, tokenizer) -> dict[str, np.ndarray]:
    """Training arrays of `task` (or an intermediate task: "squad", "nli"), featurised once per
    (encoder, task, data settings)."""
    sizes = ctx.sizes
    rows = ctx.train_rows.get(task)
    key = (ctx.encoder_dir, task, str(ctx.squad_path), repr(rows), ctx.snli_pairs)
    key += (sizes.qa_max_length, sizes.max_train_examples)
    if key not in _MEMO:
        _MEMO[key] = _subset(_train_data(ctx, task, tokenizer), ctx.sizes.max_train_examples)
    return _MEMO[key]


def _subset(data: dict[str, np.ndarray], n: int | None) -> dict[str, np.ndarray]:
    """The first n samples of ragged training arrays (all when n is None)."""
    if n is None or n >= len(data["offsets"]) - 1:
        return data
    out = {k: v[:n] for k, v in data.items() if k not in ("input_ids", "offsets")}
    out["offsets"] = data["offsets"][: n + 1]
    out["input_ids"] = data["input_ids"][: data["offsets"][n]]
    return out


def _train_data(ctx: Context, task: str, tokenizer) -> dict[str, np.ndarray]:
    if task == "squad":
        return qa_data(ctx.squad_path, tokenizer, ctx.sizes.qa_max_length)
    if task == "nli":
        return nli_data(tokenizer)
    if (
        TASKS[task].kind == "qa"
    ):  # train-en's questions (those of ctx.train_rows where it names the task)
        path = get_task(task, split="train").data_files()[0]
        return qa_data(path, tokenizer, ctx.sizes.qa_max_length, ctx.train_rows.get(task))
    return classification_data(task, tokenizer, ctx.train_rows[task], ctx.snli_pairs)


# --- training loop ---------------------------------------------------------------------------------
def batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, epochs: float) -> list:
    """Row batches for `epochs` passes over the data (a fractional last pass is cut short).

    Each pass shuffles the rows, then sorts chunks of 50 batches by length and cuts them into batches
    (so a batch is padded only to a nearby length), and shuffles the batches: fewer padded tokens
    than random batches, and every row seen once per pass (tests/test_e5.py)."""
    n = len(lengths)
    out: list[np.ndarray] = []
    for _ in range(int(np.ceil(epochs))):
        perm = rng.permutation(n)
        chunk = 50 * batch_size
        epoch: list[np.ndarray] = []
        for lo in range(0, n, chunk):
            part = perm[lo : lo + chunk]
            part = part[np.argsort(lengths[part], kind="stable")]
            epoch += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
        out += [epoch[i] for i in rng.permutation(len(epoch))]
    return out[: max(1, round(epochs * int(np.ceil(n / batch_size))))]


SAVE_EVERY = 500  # steps between checkpoints where no epoch ends sooner (step-planned stages)


def resume_key(model: nn.Module, data: dict, lr: float, ctx: Context, desc: str, plan: dict) -> dict:
    """What a checkpoint must match to be resumed: the stage's training settings, a digest of its
    data and of the trainable parameters it starts from (a different start is another training)."""
    digest = hashlib.sha256()
    for key in sorted(data):
        digest.update(key.encode() + np.ascontiguousarray(np.asarray(data[key])).tobytes())
    start = hashlib.sha256()
    for name, p in model.named_parameters():
        if p.requires_grad:
            start.update(name.encode() + p.detach().cpu().float().numpy().tobytes())
    return {
        "desc": desc, "lr": lr, **plan, "seed": ctx.seed, "batch_size": ctx.sizes.batch_size,
        "warmup": ctx.sizes.warmup, "bf16": ctx.bf16, "device": ctx.device,
        "data": digest.hexdigest(), "start": start.hexdigest(),
    }  # fmt: skip


def train(
    model: nn.Module,
    data: dict[str, np.ndarray],
    lr: float,
    ctx: Context,
    desc: str,
    steps: int = 0,
    epochs: float = 0.0,
    probes: dict[str, Callable[[nn.Module], float]] | None = None,
    schedule_epochs: float = 0.0,
    record: dict[str, Any] | None = None,
) -> list[dict[str, float]]:
    """AdamW + linear warm-up (ctx.sizes.warmup of the steps) and decay on the parameters with
    requires_grad, padded per batch; label arrays in `data` are passed to the model by name (labels /
    start_positions...). `epochs` > 0: length-bucketed passes over the data (`batches`); else `steps`
    random batches. `schedule_epochs` > `epochs`: the warm-up and decay are those of that many
    epochs, and training stops after `epochs` of them (early stopping: the first `epochs` epochs of
    a longer run, batch for batch). ctx.sizes.bf16: autocast matmuls to bfloat16 (fp32 master
    weights; 1.7-2x faster on CPUs with AMX: docs/zoo.md) where ctx.device has native bf16, else
    fp32 (models/training_device.py; the stage records which). Trains on ctx.device and leaves the
    model on the CPU. Returns the training curve: per
    epoch (or at the end) the mean loss and, for each of `probes` (name -> evaluate(model) -> float),
    its figure under that name.

    ctx.resume: after every epoch (every SAVE_EVERY steps where no epoch ends sooner) and at the
    end, the trainable parameters, the optimizer, schedule and random state, and the curve so far
    go to `<ctx.resume>/<desc>.pt`; a call that finds one made with the same `resume_key`
    continues after its last step, as the uninterrupted training would have (tests/
    test_training_loop.py), or returns at once where it had finished. `record` (a dict) gets
    "resumed_at_step" and "earlier_s", the wall seconds the checkpoint's training had taken."""
    torch.manual_seed(ctx.seed)
    rng = np.random.default_rng(ctx.seed)
    device = torch.device(ctx.device)
    bf16 = ctx.bf16
    label_keys = [k for k in ("labels", "start_positions", "end_positions") if k in data]
    checkpoint = ctx.resume / f"{desc.replace('/', '_')}.pt" if ctx.resume is not None else None
    key = None
    if checkpoint is not None:
        plan_args = {"steps": steps, "epochs": epochs, "schedule_epochs": schedule_epochs}
        key = resume_key(model, data, lr, ctx, desc, plan_args)
    model.to(device)
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    n = len(data["offsets"]) - 1
    if epochs > 0:
        per_epoch = int(np.ceil(n / ctx.sizes.batch_size))
        schedule = batches(
            np.diff(data["offsets"]), ctx.sizes.batch_size, rng, max(epochs, schedule_epochs)
        )
        plan = schedule[: max(1, round(epochs * per_epoch))]
    else:
        plan = schedule = [rng.integers(0, n, ctx.sizes.batch_size) for _ in range(steps)]
        per_epoch = len(plan)
    total = len(schedule)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, max(1, int(total * ctx.sizes.warmup)), total)
    curve: list[dict[str, float]] = []
    losses: list[float] = []
    done, earlier_s = 0, 0.0
    state = None
    if checkpoint is not None and checkpoint.is_file():
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=False)  # our own file
        except Exception as exc:  # noqa: BLE001  (any damage: train from the start, say why)
            print(f"[models] {desc}: {checkpoint} cannot be read ({exc}): starting over", flush=True)
    if state is not None:
        if isinstance(state, dict) and state.get("key") == key:
            with torch.no_grad():
                for name, p in named:
                    p.copy_(state["params"][name])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            torch.set_rng_state(state["torch_rng"])
            if device.type == "cuda":  # dropout draws from the device's own generator there
                torch.cuda.set_rng_state(state["cuda_rng"], device)
            done, earlier_s = state["step"], state["elapsed_s"]
            curve, losses = state["curve"], state["losses"]
            print(
                f"[models] {desc}: resuming after step {done} of {len(plan)} ({checkpoint})", flush=True
            )
        else:
            print(
                f"[models] {desc}: {checkpoint} was made with other settings: starting over", flush=True
            )
    if record is not None:
        record |= {"resumed_at_step": done, "earlier_s": earlier_s}
    t0 = time.perf_counter()

    def save(step: int) -> None:
        state = {
            "key": key, "step": step, "elapsed_s": earlier_s + time.perf_counter() - t0,
            "params": {name: p.detach().cpu() for name, p in named}, "opt": opt.state_dict(),
            "sched": sched.state_dict(), "torch_rng": torch.get_rng_state(), "curve": curve,
            "losses": losses,
        }  # fmt: skip
        if device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(device)
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = checkpoint.with_name(checkpoint.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, checkpoint)  # a kill mid-write leaves the last whole checkpoint

    model.train()
    bar = tqdm(
        plan[done:], desc=desc, disable=None if ctx.progress else True, unit="step"
    )  # None: TTY only
    for step, rows in enumerate(bar, done + 1):
        ids, mask = pad_ragged(data["input_ids"], data["offsets"], rows, 1)
        labels = {k: torch.from_numpy(np.asarray(data[k])[rows]).long().to(device) for k in label_keys}
        ids, mask = torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, attention_mask=mask, **labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        point_due = step % per_epoch == 0 or step == len(plan)
        if point_due:
            point = {"epoch": round(step / per_epoch, 2), "step": step, "loss": float(np.mean(losses))}
            if probes:
                model.eval()
                point |= {name: float(probe(model)) for name, probe in probes.items()}
                model.train()
            curve.append(point)
            losses = []
            if ctx.progress:
                print(f"[models] {desc}: {point}", flush=True)
        if checkpoint is not None and (point_due or step % SAVE_EVERY == 0):
            save(step)
    model.eval()
    model.to("cpu")  # the stages merge, fuse and save on the CPU
    return curve


def per_stage(pairs: tuple[tuple[str, float], ...], stage: str, learning: str) -> float:
    """A Sizes entry of (key, value) pairs for a target stage: its "<task>/<learning>" key, else its
    task's, else 0."""
    table = dict(pairs)
    return table.get(f"{stage}/{learning}", table.get(stage, 0.0))


def fit(model: nn.Module, data: dict, ctx: Context, learning: str, stage: str, desc: str, tok=None):
    """Train with the recipe's plan for (stage, learning): epochs or steps (and the schedule they are
    cut from), learning rate, and the curve for target tasks: the dev rows' figure where ctx.dev_rows
    names the task (the selection's trials), else the held-out probe (ctx.sizes.curve). stage is
    an intermediate task (models/spec.py INTERMEDIATE: Sizes.<stage>_epochs / <stage>_steps) or a
    target task name."""
    sizes = ctx.sizes
    lr = dict(sizes.lr)[learning]
    if stage in INTERMEDIATE:
        plan = {"epochs": getattr(sizes, f"{stage}_epochs"), "steps": getattr(sizes, f"{stage}_steps")}
    else:
        plan = {"epochs": per_stage(sizes.target_epochs, stage, learning), "steps": sizes.target_steps}
        if schedule := per_stage(sizes.target_schedule, stage, learning):
            plan["schedule_epochs"] = schedule
    probes = {}
    if stage in ctx.dev_rows and tok is not None:
        probes["dev"] = row_probe(stage, tok, ctx.dev_rows[stage])
    elif sizes.curve and stage not in INTERMEDIATE and tok is not None:
        probes["heldout"] = heldout_probe(stage, tok)
    if sizes.freeze_word_embeddings:
        for name, p in model.named_parameters():
            if name.endswith("word_embeddings.weight"):
                p.requires_grad_(False)
    start, resumed = time.perf_counter(), {}
    curve = train(model, data, lr, ctx, desc, probes=probes, record=resumed, **plan)
    # wall time, held-out probes included; a resumed training adds its checkpoint's
    seconds = round(time.perf_counter() - start + resumed["earlier_s"], 1)
    log = {"learning": learning, "lr": lr, **plan, "bf16": ctx.bf16, "seed": ctx.seed, "curve": curve}
    if ctx.device != "cpu":  # the CPU recorded by its absence: the records made before GPUs trained
        log["device"] = ctx.device
    log["train_s"] = seconds
    if resumed["resumed_at_step"]:
        log["resumed_at_step"] = resumed["resumed_at_step"]  # after a killed build
    log["train_samples"] = len(data["offsets"]) - 1  # rows (QA: windows) trained on
    if ctx.selection is not None and stage not in INTERMEDIATE:
        log["selection"] = ctx.selection
    if ctx.train_data is not None and stage not in INTERMEDIATE:
        log["train_data"] = ctx.train_data  # the option's rows; train_samples: after any cap
    return log


def only_train(model: nn.Module, prefixes: tuple[str, ...]) -> None:
    """requires_grad on exactly the parameters whose name contains one of `prefixes`."""
    for name, p in model.named_parameters():
        p.requires_grad_(any(s in name for s in prefixes))


# --- LoRA -> plain -----------------------------------------------------------------------------------
def merge_lora(model: nn.Module, name: str, plain_cls) -> nn.Module:
    """Merge LoRA `name` into the weights and return a plain transformers model of the same class.

    Activate first, merge second (set_active_adapters after a merge silently un-merges: docs/zoo.md,
    "The adapters library"); the merged weights are copied into a fresh model, so no LoRA module is
    left in the graph.
    """
    activate(model, name)
    model.merge_adapter(name)
    config = copy.deepcopy(model.config)
    if hasattr(config, "adapters"):
        del config.adapters  # a plain checkpoint: no adapters section in config.json
    plain = plain_cls.from_config(config)
    keys = plain.state_dict().keys()
    state = model.state_dict()
    plain.load_state_dict({k: state[k] for k in keys}, strict=True)
    return plain.eval()


def _plain_class(task: str):
    return loaders._plain_class(TASKS[task].kind)


def _head_kwargs(task: str) -> dict[str, Any]:
    t = TASKS[task]
    return {"num_labels": t.num_labels} if t.kind == "classification" else {}


def _save_plain(model: nn.Module, tokenizer, out: Path, **manifest: Any) -> None:
    if hasattr(model.config, "adapters"):
        del model.config.adapters  # a plain checkpoint: no adapters section in config.json
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    write_manifest(out, **manifest)


def _tokenizer(ctx: Context):
    return AutoTokenizer.from_pretrained(ctx.encoder_dir)


def _base_ref(ctx: Context, out: Path) -> str:
    """The frozen encoder as zoo.json records it: relative path inside the zoo, else as given."""
    enc = Path(ctx.encoder_dir)
    return os.path.relpath(enc.resolve(), out.resolve()) if enc.exists() else ctx.encoder_dir


# --- stage 1: tiny encoder ---------------------------------------------------------------------------
def pretrain(ctx: Context, out: Path, config: dict[str, Any]) -> None:
    sentences = unlabelled_corpus(max_per_file=ctx.sizes.max_corpus_lines, seed=ctx.seed)
    tok = build_tokenizer(out, sentences, ctx.sizes.vocab_size, ctx.sizes.char_coverage, ctx.seed)
    pretrain_mlm(
        tok, sentences, config, out, ctx.sizes.pretrain_steps, seed=ctx.seed, progress=ctx.progress
    )
    write_manifest(out, stage="encoder", serving="plain", sentences=len(sentences), config=config)


# --- stage 2: intermediate task (SQuAD, NLI) ----------------------------------------------------------
# intermediate task -> (head kind, labels): SQuAD-format extractive QA; NLI on SNLI's three labels
INTERMEDIATE_HEADS = {"squad": ("qa", 0), "nli": ("classification", 3)}


def _intermediate_head(name: str) -> tuple[str, dict[str, Any], str]:
    """(head kind, the plain class's head keyword arguments, the plain head's parameter prefix)."""
    kind, labels = INTERMEDIATE_HEADS[name]
    kwargs = {"num_labels": labels} if kind == "classification" else {}
    return kind, kwargs, "qa_outputs." if kind == "qa" else "classifier."


def intermediate_full(ctx: Context, name: str, out: Path, data: dict, tok) -> None:
    kind, kwargs, _ = _intermediate_head(name)
    model = loaders._plain_class(kind).from_pretrained(ctx.encoder_dir, **kwargs)
    log = fit(model, data, ctx, "full", name, f"{name} full")
    _save_plain(model, tok, out, stage=name, serving="plain", training=log)


def intermediate_adapter(ctx: Context, name: str, out: Path, data: dict, tok) -> None:
    """seq_bn adapter `name` (+ its head) on the frozen encoder: what AdapterFusion fuses
    (learning "fusion", "fusion2") or the target stage trains further (learning "adapter-seq")."""
    kind, labels = INTERMEDIATE_HEADS[name]
    model = XLMRobertaAdapterModel.from_pretrained(ctx.encoder_dir)
    model.add_adapter(name, config="seq_bn")
    add_head(model, kind, name, labels)
    activate(model, name)
    only_train(model, (f"adapters.{name}.", f"heads.{name}."))
    log = fit(model, data, ctx, "adapter", name, f"{name} seq_bn adapter")
    (out / "adapters" / name).mkdir(parents=True)
    model.save_adapter(str(out / "adapters" / name), name, with_head=True)
    tok.save_pretrained(out)
    write_manifest(
        out, stage=name, serving="adapter", base=_base_ref(ctx, out), adapters=[name], training=log
    )


def intermediate_lora(ctx: Context, name: str, out: Path, data: dict, tok) -> None:
    kind, kwargs, head = _intermediate_head(name)
    plain_cls = loaders._plain_class(kind)
    model = plain_cls.from_pretrained(ctx.encoder_dir, **kwargs)
    adapters.init(model)
    model.add_adapter(name, config=LoRAConfig(r=LORA_RANK, alpha=LORA_ALPHA))
    activate(model, name)
    only_train(model, (f"loras.{name}.", head))
    log = fit(model, data, ctx, "lora", name, f"{name} LoRA")
    _save_plain(
        merge_lora(model, name, plain_cls),
        tok,
        out,
        stage=name,
        serving="merged",
        merged=[name],
        training=log,
    )


# target learning kind -> how its intermediate stage trains (the adapter kinds: a seq_bn adapter)
INTERMEDIATE_STAGES = {
    "full": intermediate_full,
    "fusion": intermediate_adapter,
    "adapter-seq": intermediate_adapter,
    "lora": intermediate_lora,
    "fusion2": intermediate_adapter,
}


def intermediate(ctx: Context, spec: ModelSpec, out: Path) -> None:
    """The intermediate stage of `spec` (its `intermediate` task) -> <models_dir>/<MODEL>/<task>."""
    torch.manual_seed(ctx.seed)  # the new heads' initial weights: one stage, one seed
    tok = _tokenizer(ctx)
    data = train_data(ctx, spec.intermediate, tok)
    INTERMEDIATE_STAGES[spec.learning](ctx, spec.intermediate, out, data, tok)


# --- stage 3: target task ------------------------------------------------------------------------------
def _intermediate_dir(ctx: Context, spec: ModelSpec) -> Path:
    """The intermediate stage `spec` starts from: its own, or the one it reuses (`intermediate_of`)."""
    return ctx.models_dir / str(spec.intermediate_folder())


def _target_model(src: str, spec: ModelSpec, task: str) -> nn.Module:
    """The plain model of `task` on the encoder in `src` (the intermediate stage, or the encoder).
    A classification head that the intermediate stage trained (NLI's) is not carried into the
    target: a classification target (XNLI, PAWS-X) gets a new output layer, as each task has its
    own head in Phang et al.'s setup, and a QA target its 2 outputs (start, end), not the stage's 3
    labels. `from_pretrained` keeps whatever else matches: a SQuAD stage's QA head goes on into
    TyDiQA (full-squad, lora-squad), as it always has."""
    cls, kwargs = _plain_class(task), _head_kwargs(task)
    if not spec.intermediate or INTERMEDIATE_HEADS[spec.intermediate][0] != "classification":
        return cls.from_pretrained(src, **kwargs)
    kwargs.setdefault("num_labels", 2)  # QA: start and end logits
    model = cls.from_pretrained(src, ignore_mismatched_sizes=True, **kwargs)  # PAWS-X: 2 labels
    if TASKS[task].kind == "classification":
        model.classifier.apply(model._init_weights)
    return model


def target_full(ctx: Context, spec: ModelSpec, task: str, out: Path, data: dict, tok) -> None:
    src = str(_intermediate_dir(ctx, spec)) if spec.intermediate else ctx.encoder_dir
    model = _target_model(src, spec, task)
    log = fit(model, data, ctx, "full", task, f"{spec.name} {task}", tok)
    _save_plain(model, tok, out, stage=task, serving="plain", source=src, training=log)


def target_adapter(ctx: Context, spec: ModelSpec, task: str, out: Path, data: dict, tok) -> None:
    model = XLMRobertaAdapterModel.from_pretrained(ctx.encoder_dir)
    model.add_adapter(task, config="seq_bn")
    _train_target_adapter(ctx, spec, task, out, data, tok, model)


def target_adapter_seq(ctx: Context, spec: ModelSpec, task: str, out: Path, data: dict, tok) -> None:
    """Sequential adapter training: the intermediate stage's seq_bn adapter, loaded under the task's
    name (its head left behind), trained further on the target with a fresh head; encoder frozen.
    Served like `adapter`: one adapter, `adapters/<task>`."""
    src = _intermediate_dir(ctx, spec) / "adapters" / str(spec.intermediate)
    model = XLMRobertaAdapterModel.from_pretrained(ctx.encoder_dir)
    model.load_adapter(str(src), load_as=task, with_head=False)
    source = os.path.relpath(src.resolve(), out.resolve())  # zoo.json: where the adapter started
    _train_target_adapter(ctx, spec, task, out, data, tok, model, initialised_from=source)


def _train_target_adapter(
    ctx: Context, spec: ModelSpec, task: str, out: Path, data: dict, tok, model, **manifest: Any
) -> None:
    """Train adapter `task` of `model` and a fresh head on the target; save both (serving
    "adapter")."""
    add_head(model, TASKS[task].kind, task, TASKS[task].num_labels)
    activate(model, task)
    only_train(model, (f"adapters.{task}.", f"heads.{task}."))
    log = fit(model, data, ctx, spec.learning, task, f"{spec.name} {task}", tok)
    (out / "adapters" / task).mkdir(parents=True)
    model.save_adapter(str(out / "adapters" / task), task, with_head=True)
    tok.save_pretrained(out)
    write_manifest(
        out,
        stage=task,
        serving="adapter",
        base=_base_ref(ctx, out),
        adapters=[task],
        training=log,
        **manifest,
    )


def target_fusion(ctx: Context, spec: ModelSpec, task: str, out: Path, data: dict, tok) -> None:
    """Target adapter trained jointly with Fuse(<intermediate>, task); the intermediate adapter
    (squad) stays frozen."""
    inter = str(spec.intermediate)
    model = XLMRobertaAdapterModel.from_pretrained(ctx.encoder_dir)
    model.load_adapter(str(_intermediate_dir(ctx, spec) / "adapters" / inter), with_head=False)
    model.add_adapter(task, config="seq_bn")
    add_head(model, TASKS[task].kind, task, TASKS[task].num_labels)
    fuse = Fuse(inter, task)
    model.add_adapter_fusion(fuse)
    activate(model, fuse)
    model.active_head = task
    only_train(model, (f"adapters.{task}.", f"adapter_fusion_layer.{inter},{task}.", f"heads.{task}."))
    log = fit(model, data, ctx, "fusion", task, f"{spec.name} {task}", tok)
    _save_fusion(ctx, model, fuse, task, out, tok, training=log)


def target_fusion2(ctx: Context, spec: ModelSpec, task: str, out: Path, data: dict, tok) -> None:
    """Two-stage AdapterFusion (Pfeiffer et al. 2021), its second stage (knowledge composition):
    the intermediate stage's adapter (squad) and the task adapter trained first on the target
    alone (stage 1, knowledge extraction: the target stage of `spec.adapter_of`, the `adapter`
    arm) are loaded, their heads left behind, and frozen beside the frozen encoder; only
    Fuse(<intermediate>, task) and a new head train (the library's `train_adapter_fusion`). Saved
    and served like `target_fusion`'s stage (serving "fusion"); zoo.json's `fused_from` names the
    two adapters' folders."""
    inter = str(spec.intermediate)
    sources = {
        inter: _intermediate_dir(ctx, spec),
        task: ctx.models_dir / str(spec.adapter_of) / task,
    }
    for name, stage in sources.items():
        if not (stage / DONE).exists():
            raise ValueError(
                f"{stage}: not built, and {spec.name} {task} fuses its adapter {name!r}: build it "
                f"first (python -m zoo build --models {spec.name} --tasks {task} builds both)"
            )
    model = XLMRobertaAdapterModel.from_pretrained(ctx.encoder_dir)
    for name, stage in sources.items():
        model.load_adapter(str(stage / "adapters" / name), load_as=name, with_head=False)
    add_head(model, TASKS[task].kind, task, TASKS[task].num_labels)
    fuse = Fuse(inter, task)
    model.add_adapter_fusion(fuse)
    with no_setup_warning():  # it activates Fuse(inter, task)
        model.train_adapter_fusion(fuse)  # encoder and adapters frozen, the fusion layers trainable
    model.active_head = task
    trained = (f"adapter_fusion_layer.{inter},{task}.", f"heads.{task}.")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    wrong = [n for n in trainable if not any(t in n for t in trained)]
    head = any(n.startswith(trained[1]) for n in trainable)
    if wrong or not head:  # never an adapter nor the encoder; always the head
        raise RuntimeError(f"{spec.name} {task}: trainable besides fusion {wrong[:3]}, head {head}")
    log = fit(model, data, ctx, spec.learning, task, f"{spec.name} {task}", tok)
    fused_from = {
        name: os.path.relpath((stage / "adapters" / name).resolve(), out.resolve())
        for name, stage in sources.items()
    }
    frozen = [inter, task]
    _save_fusion(ctx, model, fuse, task, out, tok, training=log, frozen=frozen, fused_from=fused_from)


def _save_fusion(ctx: Context, model, fuse, task: str, out: Path, tok, **manifest: Any) -> None:
    """An AdapterFusion target stage (serving "fusion"): both adapters (the target's head with the
    target's adapter), the fusion layer, the tokenizer and zoo.json."""
    names = list(fuse.children)
    for name in names:
        (out / "adapters" / name).mkdir(parents=True)
        model.save_adapter(str(out / "adapters" / name), name, with_head=name == task)
    (out / "fusion").mkdir()
    model.save_adapter_fusion(str(out / "fusion"), fuse)
    tok.save_pretrained(out)
    write_manifest(
        out,
        stage=task,
        serving="fusion",
        base=_base_ref(ctx, out),
        adapters=names,
        fusion=names,
        **manifest,
    )


def target_lora(ctx: Context, spec: ModelSpec, task: str, out: Path, data: dict, tok) -> None:
    """LoRA on the target, merged: on the intermediate stage (whose LoRA is merged there already),
    or on the pretrained encoder for a model without an intermediate task (`lora`)."""
    src = str(_intermediate_dir(ctx, spec)) if spec.intermediate else ctx.encoder_dir
    model = _target_model(src, spec, task)
    adapters.init(model)
    model.add_adapter(task, config=LoRAConfig(r=LORA_RANK, alpha=LORA_ALPHA))
    activate(model, task)
    head = "qa_outputs." if TASKS[task].kind == "qa" else "classifier."
    only_train(model, (f"loras.{task}.", head))
    log = fit(model, data, ctx, "lora", task, f"{spec.name} {task}", tok)
    _save_plain(
        merge_lora(model, task, _plain_class(task)),
        tok,
        out,
        stage=task,
        serving="merged",
        merged=[*filter(None, [spec.intermediate]), task],
        training=log,
    )


TARGET_STAGES = {
    "full": target_full,
    "adapter": target_adapter,
    "fusion": target_fusion,
    "adapter-seq": target_adapter_seq,
    "lora": target_lora,
    "fusion2": target_fusion2,
}


def target(ctx: Context, spec: ModelSpec, task: str, out: Path) -> None:
    torch.manual_seed(ctx.seed)
    tok = _tokenizer(ctx)
    TARGET_STAGES[spec.learning](ctx, spec, task, out, train_data(ctx, task, tok), tok)
