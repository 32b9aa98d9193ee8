"""memzip: a lossless archiver that stores text as [mem] vectors of a frozen language model.

Library first: `memzip.archive.compress_bytes` / `extract_archive` do the work; `memzip.cli`
is a thin command line over them. See docs/format.md for the container and README.md for use.
"""

__version__ = "0.1.0"
