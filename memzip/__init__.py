"""memzip: a lossless archiver that codes text with a frozen language model, optionally steered by
trainable [mem] vectors (Kuratov et al. 2025, "Cramming 1568 Tokens into a Single Vector").

The library is `memzip.api` (files) over `memzip.pipeline` (bytes in memory); `memzip.cli` is a
thin command line over the API. `memzip.format` reads and writes `.memz` files without torch;
docs/format.md is its specification.
"""

__version__ = "0.3.0"
