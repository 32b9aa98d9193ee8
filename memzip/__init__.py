"""memzip: a lossless archiver that codes text with a frozen language model, optionally steered by
trainable [mem] vectors (Kuratov et al. 2025, "Cramming 1568 Tokens into a Single Vector").

    import memzip
    blob = memzip.compress(data)            # bytes -> .memz bytes, the embedded model
    assert memzip.decompress(blob) == data  # verified against the archive's SHA-256
    model = memzip.Model("embedded")        # a handle: the model loads once, for many calls

The library is `memzip.api` (these, and files) over `memzip.pipeline` (bytes in memory) and the
engines (memzip/engines.py); `memzip.cli` is a thin command line over the API. `memzip.format`
reads and writes `.memz` files without torch; docs/format.md is its specification and
docs/architecture.md the map of the rest.
"""

__version__ = "0.8.0"

__all__ = ["Model", "compress", "decompress", "__version__"]


def __getattr__(name: str):
    # memzip.compress, memzip.decompress and memzip.Model come from memzip.api on first use, so
    # that `import memzip` stays instant (the CLI's `info` and `stats` never load torch)
    if name in ("Model", "compress", "decompress"):
        from memzip import api

        return getattr(api, name)
    raise AttributeError(f"module 'memzip' has no attribute {name!r}")
