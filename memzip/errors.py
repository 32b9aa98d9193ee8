"""Every failure memzip expects has its own exception class under `MemzipError`.

Each error carries a one-line message (what is wrong) and a hint (what to do). The CLI prints
both on stderr and exits with `exit_code`; a traceback is printed only with MEMZIP_DEBUG=1.
Library users can catch `MemzipError` alone, or one specific class.
"""

from __future__ import annotations


class MemzipError(Exception):
    """Base of every error memzip raises on purpose."""

    exit_code = 1
    default_hint = ""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = self.default_hint if hint is None else hint

    def __str__(self) -> str:
        return self.message


# --- usage and files --------------------------------------------------------------------------


class UsageError(MemzipError):
    """The command line asks for something impossible (bad option value, conflicting options)."""

    exit_code = 2


class InputFileError(MemzipError):
    """The input file is missing, a directory, or unreadable."""

    exit_code = 2


class Interrupted(MemzipError):
    """The user pressed Ctrl-C (or the process got SIGINT); work done so far is kept."""

    exit_code = 130


class OutputExistsError(MemzipError):
    """The output path already exists and --force was not given."""

    exit_code = 3
    default_hint = "Pass --force to overwrite it, or choose another path with -o."


class OutputWriteError(MemzipError):
    """The output could not be written (read-only directory, full disk)."""

    exit_code = 3


# --- models -----------------------------------------------------------------------------------


class ModelNotFoundError(MemzipError):
    """The model named by -m (or by an archive) is not available on this machine."""

    exit_code = 4


class ModelLoadError(MemzipError):
    """The model exists but could not be loaded or is not a causal language model."""

    exit_code = 4


class ModelOutputError(MemzipError):
    """The model's output cannot be used (non-finite logits)."""

    exit_code = 4


class ModelMismatchError(MemzipError):
    """The model available now differs from the one the archive was made with."""

    exit_code = 5
    default_hint = "Extract with the exact model named in `memzip info`, or pass --force to try anyway."


# --- the container (see docs/format.md) ---------------------------------------------------------


class ContainerError(MemzipError):
    """Base of every problem found while reading a .memz file."""

    exit_code = 6
    default_hint = "The file is not a valid .memz archive; restore it from a good copy."


class NotAnArchiveError(ContainerError):
    """The file does not start with the .memz magic bytes."""

    default_hint = "Check the file name: this is not a file made by `memzip compress`."


class UnsupportedVersionError(ContainerError):
    """The format version is newer (or older) than this memzip can read."""

    default_hint = "Upgrade memzip (pip install -U memzip) to read this archive."


class TruncatedArchiveError(ContainerError):
    """The file ends before the lengths in its preamble say it should."""

    default_hint = "The file was cut short (interrupted copy or download); restore it from a good copy."


class TrailingDataError(ContainerError):
    """There are bytes after the end of the archive."""


class HeaderTooLargeError(ContainerError):
    """A declared size is beyond the format's limits (would allocate unbounded memory)."""


class ChecksumMismatchError(ContainerError):
    """The archive's SHA-256 trailer does not match its content: the bytes were altered."""

    default_hint = "The archive is corrupted (bit rot or a bad copy); restore it from a good copy."


class HeaderFormatError(ContainerError):
    """The header is not valid UTF-8 JSON, or a field is missing or has the wrong type."""


class PayloadFormatError(ContainerError):
    """The zstd payload or the safetensors inside it is malformed or disagrees with the header."""


# --- decoding ---------------------------------------------------------------------------------


class VerificationError(MemzipError):
    """Decoded content does not match its recorded checksum (a chunk, or the whole text)."""

    exit_code = 7
