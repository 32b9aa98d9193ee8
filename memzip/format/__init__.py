"""The `.memz` format: everything needed to read and write archives, and nothing that needs a model.

numpy, zstandard and safetensors only; this package never imports torch
(tests/test_format.py checks it), so `memzip info` and `memzip stats` stay fast and a reader
can be written without a deep-learning stack. docs/format.md is the specification.

- `header`: the header dataclasses and their parser;
- `container`: framing, compression, checksums, payload validation (`Archive`);
- `vectors`: how [mem] vectors are stored (dtypes, bit packing, random-subspace codes);
- `residual`: the choices the decoder makes, entropy-coded (with `arithmetic`);
- `dictionary`: the zstd dictionary of format version 2.
"""
