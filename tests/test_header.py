"""The header parser (memzip/format/header.py, docs/format.md §2): every known field is required
and typed, and the error names the field."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest

from memzip.errors import HeaderFormatError
from memzip.format.header import (DecodeSettings, Header, ModelIdentity, TextInfo, VectorLayout, parse_header)

HEX_A = "a" * 64
HEX_B = "0123456789abcdef" * 4


def make_header(**text) -> Header:
    return Header(
        memzip_version="0.2.0",
        model=ModelIdentity(name="tiny", source="hub", hub_id="org/tiny", revision=None, file=None,
                            architecture="LlamaForCausalLM", d_model=8, vocab_size=100,
                            weights_sha256=HEX_A, tokenizer_sha256=HEX_B),
        decode=DecodeSettings(dtype="float32", attn_implementation="sdpa", batch_size=8, margin=0.01,
                              prefix_tokens=[0], infix_tokens=[], device="cpu", torch_version="2.13.0",
                              transformers_version="5.24.0"),
        vectors=VectorLayout(mem_vectors=1, dtype="float16"),
        text=TextInfo(**{"bytes": 12, "sha256": HEX_B, "tokens": 8, "chunks": 2, "name": None, **text}),
        encode={"chunk_tokens": 4, "baselines": {"zstd_bytes": 21, "xz_bytes": 64}},
    )


GOOD = json.loads(make_header().to_json())


def parse(obj) -> Header:
    return parse_header(obj if isinstance(obj, bytes) else json.dumps(obj).encode())


def set_path(obj: dict, path: tuple[str, ...], value) -> dict:
    obj = copy.deepcopy(obj)
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return obj


def del_path(obj: dict, path: tuple[str, ...]) -> dict:
    obj = copy.deepcopy(obj)
    target = obj
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return obj


def known_paths(obj: dict, prefix: tuple = ()) -> list[tuple[str, ...]]:
    paths = []
    for key, value in obj.items():
        paths.append(prefix + (key,))
        if isinstance(value, dict) and key != "encode":
            paths += known_paths(value, prefix + (key,))
    return paths


# optional, or not read for the float engine (null in its headers)
OPTIONAL = {("text", "name"), ("vectors", "code_dims"), ("text", "permissions"), ("text", "mtime_ns"),
            ("decode", "window"), ("decode", "exact"), ("decode", "coding")}
REQUIRED = [p for p in known_paths(GOOD) if p not in OPTIONAL]


def test_round_trip_and_canonical_bytes():
    header = make_header(name="notes.txt")
    raw = header.to_json()
    assert parse(raw) == header
    assert raw == json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()


def test_known_paths_cover_every_dataclass_field():
    fields = {f.name for f in dataclasses.fields(Header)} - {"format_version"}  # read, never written
    for cls, key in ((ModelIdentity, "model"), (DecodeSettings, "decode"), (VectorLayout, "vectors"), (TextInfo, "text")):
        fields |= {f"{key}.{f.name}" for f in dataclasses.fields(cls)}
    fields -= {"model.fingerprint64", "decode.profile", "text.line_endings"}  # format 5 only (test_compact.py)
    assert {".".join(p) for p in known_paths(GOOD)} == fields


@pytest.mark.parametrize("path", REQUIRED, ids=".".join)
def test_missing_field_is_named(path):
    with pytest.raises(HeaderFormatError, match=rf"{'.'.join(path)}.* is missing"):
        parse(del_path(GOOD, path))


def test_optional_fields_may_be_absent():
    header = parse(del_path(del_path(GOOD, ("text", "name")), ("vectors", "code_dims")))
    assert header.text.name is None and header.vectors.code_dims is None


WRONG = [
    (("memzip_version",), 1), (("memzip_version",), None),
    (("encode",), []), (("encode",), None),
    (("model",), []), (("decode",), "x"), (("vectors",), 1), (("text",), [{}]),
    (("model", "name"), None), (("model", "source"), "ftp"), (("model", "hub_id"), 5), (("model", "revision"), {}),
    (("model", "file"), False), (("model", "architecture"), None),
    (("model", "d_model"), 0), (("model", "d_model"), 65537), (("model", "d_model"), "8"), (("model", "d_model"), 8.0),
    (("model", "vocab_size"), 0), (("model", "vocab_size"), 2**31 + 1), (("model", "vocab_size"), True),
    (("model", "weights_sha256"), "A" * 64), (("model", "tokenizer_sha256"), "a" * 63),
    (("model", "weights_sha256"), "a" * 64 + "\n"),
    (("decode", "dtype"), "int8"), (("decode", "attn_implementation"), None),
    (("decode", "batch_size"), 0), (("decode", "batch_size"), 2**16 + 1), (("decode", "batch_size"), "8"),
    (("decode", "margin"), -0.1), (("decode", "margin"), 1000.5), (("decode", "margin"), "0.01"),
    (("decode", "margin"), True), (("decode", "margin"), None),
    (("decode", "prefix_tokens"), [100]), (("decode", "prefix_tokens"), [-1]), (("decode", "prefix_tokens"), [True]),
    (("decode", "prefix_tokens"), [0] * 65), (("decode", "prefix_tokens"), "0"), (("decode", "infix_tokens"), [1.0]),
    (("decode", "device"), 0), (("decode", "torch_version"), None), (("decode", "transformers_version"), 4),
    (("vectors", "mem_vectors"), -1), (("vectors", "mem_vectors"), 1025), (("vectors", "mem_vectors"), [1]),
    (("vectors", "dtype"), "bfloat16"), (("vectors", "dtype"), None), (("vectors", "code_dims"), 0),
    (("text", "bytes"), -1), (("text", "bytes"), 2**50 + 1), (("text", "sha256"), "x" * 64),
    (("text", "tokens"), -1), (("text", "chunks"), 2**24 + 1), (("text", "chunks"), 2.0),
    (("text", "name"), ""), (("text", "name"), "."), (("text", "name"), ".."), (("text", "name"), "a/b"),
    (("text", "name"), "..\\evil"), (("text", "name"), "a\0b"), (("text", "name"), "x" * 256), (("text", "name"), 3),
    (("text", "name"), "\ud800.txt"),
]


@pytest.mark.parametrize("path,value", WRONG, ids=lambda v: ".".join(v) if isinstance(v, tuple) else repr(v)[:20])
def test_wrong_value_is_named(path, value):
    with pytest.raises(HeaderFormatError, match=rf"{'.'.join(path)} must be"):
        parse(set_path(GOOD, path, value))


@pytest.mark.parametrize("path,value", [
    (("vectors", "mem_vectors"), 0), (("vectors", "mem_vectors"), 1024), (("decode", "margin"), 0),
    (("decode", "margin"), 1000), (("decode", "prefix_tokens"), []), (("decode", "infix_tokens"), [99] * 64),
    (("vectors", "code_dims"), None), (("vectors", "code_dims"), 65536), (("text", "name"), "ünïcødé 名前.txt"),
    (("model", "revision"), "abc123"), (("encode",), {}),
])
def test_valid_variants_are_accepted(path, value):
    parse(set_path(GOOD, path, value))


def test_unknown_keys_are_ignored():
    obj = set_path(set_path(GOOD, ("future",), {"x": 1}), ("model", "quantization"), "q4")
    assert parse(obj) == parse(GOOD)


@pytest.mark.parametrize("raw", [
    b"\xff\xfe{}", b"\xef\xbb\xbf{}", b"{", b"not json", b'{"a": 1} {"b": 2}',
    b"[" * 100_000 + b"]" * 100_000,  # deep nesting
    b'{"x": ' + b"9" * 5000 + b"}",  # beyond Python's int-digits limit
    json.dumps(set_path(GOOD, ("decode", "margin"), 0.5)).replace("0.5", "NaN").encode(),
    json.dumps(set_path(GOOD, ("decode", "margin"), 0.5)).replace("0.5", "Infinity").encode(),
])
def test_not_json_is_refused(raw):
    with pytest.raises(HeaderFormatError, match="not valid UTF-8 JSON"):
        parse(raw)


@pytest.mark.parametrize("raw", [b"[]", b'"header"', b"42", b"null", b"[{}]"])
def test_not_an_object_is_refused(raw):
    with pytest.raises(HeaderFormatError, match="must be a JSON object"):
        parse(raw)


def test_groups_follow_the_batch():
    header = make_header()
    assert header.groups == 1
    header.text.chunks, header.decode.batch_size = 17, 8
    assert header.groups == 3
    header.text.chunks = 0
    assert header.groups == 0
