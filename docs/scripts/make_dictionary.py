"""Print the sample that format 3's zstd dictionary was built from (memzip/format/dictionary.py).

Run once, when format 3 was fixed: it compresses a short text in each kind of archive with the
embedded model and prints their header JSON and their payloads' safetensors headers, most common
last (zstd finds the dictionary's last bytes cheapest to refer to). The dictionary must never
change afterwards: this script documents where its bytes came from.

    python docs/scripts/make_dictionary.py > /tmp/dictionary.txt
"""

import json
import struct
from pathlib import Path

import memzip

from memzip.pipeline import compress_bytes
from memzip.format.container import encode_archive
from memzip.models import load_model, resolve_model
from memzip.options import CompressOptions

TEXT = (Path(memzip.__file__).parent / "data" / "book.txt").read_bytes()[:3000]


def parts(archive) -> tuple[bytes, bytes]:
    encode_archive(archive)  # for its checks of the arrays
    from safetensors.numpy import save

    payload = save({k: v for k, v in archive.arrays.items() if v.size or k not in (
        "escape_positions", "escape_bytes", "patch_ops", "patch_text")})
    (length,) = struct.unpack_from("<Q", payload)
    return archive.header.to_json(), payload[8:8 + length]


def main() -> None:
    loaded = load_model(resolve_model("embedded"), device="cpu", dtype="float32")
    samples = []
    cases = [
        ("float", CompressOptions(engine="float", store_fallback=False), TEXT),
        ("vectors", CompressOptions(mem_vectors=1, vector_dtype="int4", max_steps=2, chunk_tokens=32,
                                    store_fallback=False), TEXT),
        ("stored", CompressOptions(), bytes(range(256)) * 2),
        ("bytes", CompressOptions(store_fallback=False), TEXT[:1000] + b"\xff\xfe caf\xe9\r\n"),
        ("model-only", CompressOptions(streams=2, store_fallback=False), TEXT),
    ]
    for name, options, data in cases:
        archive, _ = compress_bytes(data, loaded, options, name="book.txt", permissions=0o644,
                                    mtime_ns=1764633600000000000)
        header, tensors = parts(archive)
        samples.append(tensors)
        samples.append(header)
    print(json.dumps([s.decode() for s in samples], indent=1))


if __name__ == "__main__":
    main()
