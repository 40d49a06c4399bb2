"""Loading a resolved model: checkpoint layout, tokenizer, and one loader per serving form.

Zoo layout (written by zoo/recipe.py; `zoo.json` in each folder is the manifest, `.done` the marker):
  <models_dir>/encoder/                     tiny pretrained encoder (AutoModel) + tokenizer
  <models_dir>/<MODEL>/squad/ or nli/       intermediate stage (served for retrieval tasks; a MODEL
                                            with `intermediate_of` serves that MODEL's stage)
  <models_dir>/<MODEL>/<TASK>/              target stage (xnli, pawsx, tydiqa)
Forms:
  plain / merged: a `save_pretrained` folder (model + tokenizer): plain AutoModelFor... loads it.
  adapter / fusion: tokenizer + `adapters/<name>/` (save_adapter, target head saved with its adapter)
                    + `fusion/` (save_adapter_fusion) + zoo.json naming the frozen base encoder
                    ("base": a path relative to the folder, an absolute path, or a hub id).
Integrity: zoo.json records the sha256 of every file of its folder ("files"), written by
`write_manifest` at the end of each stage; `find_checkpoint` verifies them (and the base encoder's)
before anything loads, and a file that fails to load is named too: either way a `CheckpointError`,
one line naming the file and the command that rebuilds it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open
from torch import nn

from common.files import sha256_file
from common.paths import BUILD
from models.encoders import ENCODERS, EncoderSpec, get_encoder, xlmr_config
from models.fusion import fold_fusion_layers
from models.modules import wrap

if TYPE_CHECKING:
    from models.spec import ModelSpec
    from tasks.base import Task

MANIFEST = "zoo.json"
DONE = ".done"
_CONFIG_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
)


class CheckpointError(ValueError):
    """A checkpoint file is damaged (checksum mismatch, unreadable); the message names the file."""


# --- manifests, integrity and checkpoint discovery ---------------------------------------------------
def _checkpoint_files(folder: Path) -> list[Path]:
    """The files a manifest covers: all of the folder's, except the manifest and the .done marker."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name not in (MANIFEST, DONE))


def write_manifest(folder: Path, **fields: Any) -> None:
    """zoo.json of a finished stage: `fields` plus "files" = {relative path: sha256} of every file
    in the folder (call it last, once every file is saved)."""
    folder = Path(folder)
    files = {p.relative_to(folder).as_posix(): sha256_file(p) for p in _checkpoint_files(folder)}
    text = json.dumps({**fields, "files": files}, indent=2, sort_keys=True) + "\n"
    (folder / MANIFEST).write_text(text)


def rebuild_hint(folder: Path, build: Path | None = None) -> str:
    """How to rebuild a zoo folder (a stage of `make models`; `build`: the repository's build/),
    or what to do with another one."""
    folder = Path(folder)
    try:
        stage = read_manifest(folder).get("stage")
    except ValueError:
        stage = None
    if stage is None:
        return f"replace the checkpoint in {folder} (it was not built by `make models`)"
    root = folder.parent if stage == "encoder" else folder.parent.parent
    build = build or BUILD
    command = f"python -m zoo build --models_dir {root}"
    for enc in ENCODERS.values():
        if root.resolve() == enc.default_models_dir(build).resolve():
            command = "make models" + ("" if enc.name == "tiny" else f" ENCODER={enc.name}")
    return f"rebuild it: rm -rf {folder} && {command}"


def verify_checkpoint(folder: Path) -> None:
    """CheckpointError when a file zoo.json lists is missing or its sha256 differs (folders
    without recorded checksums, e.g. real checkpoints given by --weights, are not checked)."""
    folder = Path(folder)
    try:
        files = read_manifest(folder).get("files") or {}
    except ValueError:  # json.JSONDecodeError
        raise CheckpointError(f"{folder / MANIFEST}: not valid JSON; {rebuild_hint(folder)}") from None
    for name, digest in sorted(files.items()):
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (listed in {MANIFEST}); {rebuild_hint(folder)}")
        if sha256_file(path) != digest:
            raise CheckpointError(
                f"{path}: sha256 differs from the one {MANIFEST} recorded (the file is damaged); "
                f"{rebuild_hint(folder)}"
            )


def _damaged_file(folder: Path) -> Path | None:
    """The first file of a checkpoint folder that cannot be parsed (safetensors, JSON), if any."""
    for path in _checkpoint_files(folder):
        try:
            if path.suffix == ".safetensors":
                with safe_open(str(path), framework="pt") as f:
                    for key in f.keys():  # reads every tensor: a truncated file fails here
                        f.get_slice(key)[:]
            elif path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
        except Exception:  # noqa: BLE001 - any parse failure means this file is the damaged one
            return path
    return None


def loading(folder: Path | None, what: str, fn: Callable[[], Any]) -> Any:
    """fn(), with a failure to read the checkpoint in `folder` (or its base encoder) turned into one
    CheckpointError line naming the damaged file (or the folder) and how to rebuild it."""
    try:
        return fn()
    except Exception as e:
        if folder is None or isinstance(e, CheckpointError):
            raise
        folders = dict.fromkeys([Path(folder), Path(base_source(Path(folder)))])
        damaged = [(f, bad) for f in folders if f.is_dir() and (bad := _damaged_file(f)) is not None]
        if not damaged and not isinstance(e, (OSError, ValueError, EOFError)):
            raise  # not a damaged file: a bug, shown as one
        where, bad = damaged[0] if damaged else (Path(folder), Path(folder))
        lines = str(e).strip().splitlines()
        first = lines[0] if lines else type(e).__name__
        raise CheckpointError(
            f"{bad}: cannot load the {what} ({type(e).__name__}: {first}); {rebuild_hint(where)}"
        ) from None


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


def base_source(folder: Path) -> str:
    """Where the frozen encoder of an adapter-form checkpoint lives (path or hub id)."""
    base = read_manifest(folder).get("base")
    if base is None:
        return str(folder)
    cand = (Path(folder) / base).resolve()
    return str(cand) if cand.exists() else base


def find_checkpoint(spec: ModelSpec, target: type[Task], root: Path, weights: str | Path | None) -> Path:
    """The checkpoint folder served for (spec, target): `weights` if given, else the zoo's; its
    files (and its base encoder's) verified against their manifests (`verify_checkpoint`)."""
    if weights is not None:
        path = Path(weights)
        if not path.is_dir():
            raise FileNotFoundError(
                f"--weights {path}: not a directory (expected a zoo-style checkpoint)"
            )
    else:
        path = root / spec.folder(target.kind, target.name)
        if not (path / DONE).exists() and not (path / "config.json").exists():
            raise FileNotFoundError(
                f"no checkpoint for model {spec.name!r} task {target.name!r} at {path}: build the zoo "
                "with `python -m zoo build` (make models), or pass --weights PATH, or "
                "weights='random'"
            )
    verify_checkpoint(path)
    base = Path(base_source(path))
    if base.is_dir() and base.resolve() != path.resolve():
        verify_checkpoint(base)
    return path


def encoder_config_of(enc: EncoderSpec, checkpoint: Path | None) -> dict[str, Any]:
    """The encoder's XLM-R config values: from the checkpoint (or its base) when there is one."""
    if checkpoint is not None:
        for folder in (Path(checkpoint), Path(base_source(Path(checkpoint)))):
            cfg = folder / "config.json"
            if cfg.is_file():
                values = json.loads(cfg.read_text())
                return {**enc.config, **{k: values[k] for k in _CONFIG_KEYS if k in values}}
    return dict(enc.config)


# --- tokenizer ---------------------------------------------------------------------------------------
def load_tokenizer(served: ServedModel):
    """The checkpoint's tokenizer. Random weights: a real XLM-R tokenizer for the real shapes (the
    encoder's own from a local dir or the Hugging Face cache, else XLM-R's genuine tokenizer that
    comes with e5-small, converted on first use), so speed runs see XLM-R's token lengths; the tiny
    zoo's tokenizer for tiny shapes."""
    # lazy: transformers takes seconds to import; resolving and checking a checkpoint does not need it
    from transformers import AutoTokenizer  # noqa: PLC0415

    if served.checkpoint is not None:
        ckpt = str(served.checkpoint)
        return loading(served.checkpoint, "tokenizer", lambda: AutoTokenizer.from_pretrained(ckpt))
    enc = get_encoder(served.encoder)
    candidates = [enc.source] if enc.source else []
    candidates.append(str(served.models_dir / "encoder"))
    if enc.name != "tiny":
        candidates.append(str(get_encoder("e5-small").default_models_dir(BUILD) / "encoder"))
    errors = []
    for source in candidates:
        try:  # local files / the HF cache only: a speed study must not stall on network retries
            return AutoTokenizer.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError) as e:
            errors.append(f"{source}: {type(e).__name__}")
    # real shapes: XLM-R's tokenizer from the e5-small download; tiny: the tiny zoo's (built here);
    # zoo.recipe.tokenizer_for builds it (loading never trains or downloads itself)
    build = "python -m zoo build --models '' --no_eval --encoder "
    build += f"tiny --models_dir {served.models_dir}" if enc.name == "tiny" else "e5-small"
    raise FileNotFoundError(
        "no tokenizer for random weights; tried " + "; ".join(errors) + f". Build it: {build}"
    )


# --- model construction, one function per serving form ---------------------------------------------
def _plain_class(task_kind: str):
    # lazy: transformers takes seconds to import; resolving and checking a checkpoint does not need it
    from transformers import (  # noqa: PLC0415
        AutoModel,
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
    )

    return {
        "classification": AutoModelForSequenceClassification,
        "qa": AutoModelForQuestionAnswering,
        "retrieval": AutoModel,
    }[task_kind]


def _config(served: ServedModel, attn: str):
    extra = {"num_labels": served.num_labels} if served.task_kind == "classification" else {}
    return xlmr_config(served.encoder_config, attn_implementation=attn, **extra)


def _kw(served: ServedModel) -> dict[str, Any]:
    return {"add_pooling_layer": False} if served.task_kind == "retrieval" else {}


def load_plain(served: ServedModel, attn: str) -> nn.Module:
    """plain / merged: a transformers model (random init with the real shapes when no checkpoint)."""
    cls = _plain_class(served.task_kind)
    if served.checkpoint is None:
        torch.manual_seed(0)
        return cls.from_config(_config(served, attn), **_kw(served))
    return cls.from_pretrained(str(served.checkpoint), attn_implementation=attn, **_kw(served))


def adapter_names(served: ServedModel) -> list[str]:
    """Adapters active when serving: the target's (a sequential adapter, "adapter-seq", is saved
    under the target's name too), behind Fuse(squad, target) for fusion; retrieval uses the
    intermediate stage's adapter alone."""
    if served.task_kind == "retrieval":
        return [served.spec.intermediate or "squad"]
    if served.serving == "fusion":
        return [served.spec.intermediate or "squad", served.task]
    return [served.task]


@contextmanager
def no_setup_warning() -> Iterator[None]:
    """Silence the adapters library's spurious "none are activated" warning while a setup is set:
    set_active_adapters (also called by train_adapter_fusion) first resets the old setup through a
    forward context, which warns on every call. The warning stays on for real forward passes, where
    it would mean a bug."""
    log = logging.getLogger("adapters.model_mixin")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def activate(model: nn.Module, setup: Any) -> None:
    """model.set_active_adapters(setup), without the library's spurious warning (`no_setup_warning`)."""
    with no_setup_warning():
        model.set_active_adapters(setup)


def load_adapter_model(served: ServedModel, attn: str) -> nn.Module:
    """adapter / fusion: XLMRobertaAdapterModel on the frozen base + adapters (+ fusion) + head.

    Activation order matters (docs/zoo.md, "The adapters library"): set_active_adapters before
    anything else reads the setup.
    """
    # lazy: adapters (with transformers) takes seconds to import; only the adapter forms need it
    from adapters import Fuse, XLMRobertaAdapterModel  # noqa: PLC0415

    names = adapter_names(served)
    head = None if served.task_kind == "retrieval" else served.task
    if served.checkpoint is None:
        torch.manual_seed(0)
        model = XLMRobertaAdapterModel(_config(served, attn))
        for name in names:
            model.add_adapter(name, config="seq_bn")
        add_head(model, served.task_kind, head, served.num_labels)
        if len(names) > 1:
            model.add_adapter_fusion(Fuse(*names))
    else:
        ckpt = Path(served.checkpoint)
        model = XLMRobertaAdapterModel.from_pretrained(base_source(ckpt), attn_implementation=attn)
        for name in names:
            model.load_adapter(str(ckpt / "adapters" / name), with_head=name == head)
        if len(names) > 1:
            model.load_adapter_fusion(str(ckpt / "fusion"), with_head=False)
    activate(model, Fuse(*names) if len(names) > 1 else names[0])
    if head is not None:
        model.active_head = head
    return model.base_model if served.task_kind == "retrieval" else model


def add_head(model: nn.Module, task_kind: str, name: str | None, num_labels: int) -> None:
    """Add the flex head of a task kind to an XLMRobertaAdapterModel (none for retrieval)."""
    if task_kind == "classification":
        model.add_classification_head(name, num_labels=num_labels, overwrite_ok=True)
    elif task_kind == "qa":
        model.add_qa_head(name, overwrite_ok=True)


LOADERS: dict[str, Callable[[Any, str], nn.Module]] = {
    "plain": load_plain,
    "merged": load_plain,
    "adapter": load_adapter_model,
    "fusion": load_adapter_model,
}


def load_model(served: ServedModel, attn_implementation: str = "sdpa", lean: bool = True) -> nn.Module:
    """The underlying transformers/adapters model (eval mode), before wrapping. lean (the served
    form): adapter models without the library's no-op per-layer dispatch (models/dispatch_free.py), and
    AdapterFusion layers replaced by their exact fold (models/fusion.py); lean=False keeps the
    library's modules as they are (before/after measurements)."""
    model = loading(
        served.checkpoint, "model", lambda: LOADERS[served.serving](served, attn_implementation)
    ).eval()
    if lean and served.serving in ("adapter", "fusion"):
        # lazy: dispatch_free imports adapters (seconds); only the adapter forms need it
        from models.dispatch_free import strip_adapter_dispatch  # noqa: PLC0415

        strip_adapter_dispatch(model)
        fold_fusion_layers(model)
    return model


def build_module(served: ServedModel, attn_implementation: str = "sdpa", lean: bool = True) -> nn.Module:
    """The served module (models/modules.py) for `served`, eval mode, gradients off."""
    return wrap(served.task_kind, load_model(served, attn_implementation, lean), served.pooling_layer)


# --- the resolved model (models.registry.resolve makes it) -----------------------------------------
@dataclass(frozen=True)
class ServedModel:
    """A resolved (model, task, encoder, weights): everything a backend needs to build the network.

    checkpoint: the folder loaded (None for random weights); base_source: where the frozen encoder of
    adapter forms (and random/real tokenizers) comes from. Output of `torch_module()` per task kind:
    classification [B, num_labels] logits, qa [B, 2, L] start/end logits, retrieval [B, hidden].
    """

    name: str
    task: str
    task_kind: str
    encoder: str  # tiny | base | large
    model_kind: str  # tiny | real | random
    checkpoint: Path | None
    pooling_layer: int
    num_labels: int
    spec: ModelSpec
    serving: str
    models_dir: Path
    encoder_config: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def tokenizer(self):
        """The XLM-R fast tokenizer saved with the checkpoint (random weights: see load_tokenizer)."""
        return load_tokenizer(self)

    def torch_module(self, attn_implementation: str = "sdpa", lean: bool = True):
        """nn.Module in eval mode: forward(input_ids, attention_mask) -> float tensor (see class doc).
        lean=False keeps the adapters library's per-layer dispatch (models/dispatch_free.py)."""
        return build_module(self, attn_implementation=attn_implementation, lean=lean)

    def task_options(self) -> dict[str, Any]:
        """Options for `tasks.registry.get_task` that the encoder's conventions set: the retrieval
        input prefix of an embedding model (e5's "query: "); none otherwise."""
        prefix = get_encoder(self.encoder).retrieval_prefix
        return {"prefix": prefix} if self.task_kind == "retrieval" and prefix else {}

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for run_config.json."""
        return {
            "model": self.name,
            "task": self.task,
            "task_kind": self.task_kind,
            "encoder": self.encoder,
            "model_kind": self.model_kind,
            "intermediate": self.spec.intermediate,
            "learning": self.spec.learning,
            "serving": self.serving,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "pooling_layer": self.pooling_layer if self.task_kind == "retrieval" else None,
            **self.task_options(),
            "num_labels": self.num_labels,
        }

    def check_for_accuracy(self) -> None:
        """Raise ValueError if these weights cannot give meaningful accuracy (random weights)."""
        if self.model_kind == "random":
            raise ValueError(
                f"model {self.name!r} on {self.task!r} uses random weights (model_kind='random', "
                f"encoder {self.encoder!r}): fine for speed studies, meaningless for accuracy. "
                "Build the zoo (`python -m zoo build`) or pass a trained checkpoint with "
                "--weights PATH."
            )

    def with_pooling_layer(self, layer: int) -> ServedModel:
        """The same model pooling another hidden_states layer (retrieval)."""
        n = int(self.encoder_config["num_hidden_layers"])
        if not 0 <= layer <= n:
            raise ValueError(f"pooling layer {layer} outside 0..{n} for encoder {self.encoder!r}")
        return replace(self, pooling_layer=layer)
