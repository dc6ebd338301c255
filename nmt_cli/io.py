"""Files in: plain or gzipped text, strict UTF-8 with line numbers, input chunks, hashes.

Every stage reads text through :func:`read_lines` (one decoded line at a time, so memory
does not grow with the file); results are written through ``writing.py``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import select
import stat
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from nmt_cli.errors import NmtError, warn

REPLACEMENT = "\ufffd"
_CHUNK = 1 << 20


def input_path(prefix: str | Path, lang: str) -> Path:
    """``PREFIX.LANG`` or, failing that, ``PREFIX.LANG.gz`` (fairseq-style prefixes)."""
    plain = Path(f"{prefix}.{lang}")
    for path in (plain, Path(f"{plain}.gz")):
        if path.is_file():
            return path
        if path.is_dir():
            raise NmtError(f"{path}: is a directory, not a text file")
    raise NmtError(f"{plain}: no such file (nor {plain}.gz)")


class _HashingReader:
    """A read-only file wrapper that feeds every byte it reads into a digest."""

    def __init__(self, raw: BinaryIO, digest):
        self.raw, self.digest = raw, digest

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        return data

    def readable(self) -> bool:
        return True

    def __iter__(self) -> Iterator[bytes]:
        pending = b""
        while chunk := self.read(_CHUNK):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line + b"\n"
        if pending:
            yield pending


def _is_gzip(stream: BinaryIO) -> bool:
    """Whether the opened file starts with gzip's magic bytes, peeked at, not consumed, so a
    pipe (``<(zcat ref.gz)``, a FIFO) is read once and whole."""
    return stream.peek(2)[:2] == b"\x1f\x8b"


@contextlib.contextmanager
def _open_bytes(path: Path, digest=None) -> Iterator[BinaryIO]:
    """Open a plain or gzipped file (told apart by magic bytes) as a stream of byte lines.

    With ``digest`` (a hashlib object), every byte of the file on disk is fed into it.
    """
    try:
        raw = open(path, "rb")
    except FileNotFoundError:
        raise NmtError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise NmtError(f"{path}: is a directory, not a text file") from None
    except PermissionError:
        raise NmtError(f"{path}: permission denied") from None
    with raw:
        source = raw if digest is None else _HashingReader(raw, digest)
        if _is_gzip(raw):
            with gzip.GzipFile(fileobj=source, mode="rb") as gz:  # type: ignore[arg-type]
                yield gz  # type: ignore[misc]
        else:
            yield source  # type: ignore[misc]
        if digest is not None:
            while source.read(_CHUNK):  # bytes after the gzip stream still count
                pass


def decode_line(raw: bytes, path: Path | str, lineno: int, on_invalid: str, hint: str = "") -> tuple[str, bool]:
    """Decode one line of bytes; returns (text without newline, whether bytes were replaced).

    ``on_invalid`` is ``"error"`` (a one-line :class:`NmtError` naming file and line) or
    ``"replace"`` (invalid bytes become U+FFFD).
    """
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):  # CRLF, also on a last line without newline
        raw = raw[:-1]
    try:
        text = raw.decode("utf-8")
        replaced = False
    except UnicodeDecodeError as e:
        if on_invalid != "replace":
            raise NmtError(
                f"{path}:{lineno}: invalid UTF-8 (byte 0x{raw[e.start]:02x} at byte {e.start + 1}){hint}"
            ) from None
        text, replaced = raw.decode("utf-8", errors="replace"), True
    if lineno == 1 and text.startswith("\ufeff"):
        text = text[1:]
    return text, replaced


def read_lines(path: Path | str, on_invalid: str = "error", hint: str = "") -> Iterator[str]:
    """Yield the decoded lines of a plain or gzipped UTF-8 file, one at a time."""
    path = Path(path)
    try:
        with _open_bytes(path) as f:
            for lineno, raw in enumerate(f, 1):
                yield decode_line(raw, path, lineno, on_invalid, hint)[0]
    except (OSError, EOFError, zlib.error) as e:  # truncated or corrupt .gz
        raise NmtError(f"{path}: cannot read: {e}") from None


@contextlib.contextmanager
def open_input(path: str | Path | None) -> Iterator[tuple[BinaryIO, str, bool]]:
    """``(stream, name, interactive)`` for a text input: a plain or gzipped file, or stdin
    for ``-``/``None``. ``interactive`` is true for pipes and terminals, whose writer may be
    waiting for our output before it sends more (see :func:`line_chunks`)."""
    if path in (None, "-"):
        mode = os.fstat(sys.stdin.fileno()).st_mode
        interactive = not stat.S_ISREG(mode)  # unbuffered then, so that select() sees all there is
        yield sys.stdin.buffer.raw if interactive else sys.stdin.buffer, "<stdin>", interactive
        return
    with _open_bytes(Path(path)) as f:
        yield f, str(path), False


def line_chunks(stream: BinaryIO, max_lines: int, interactive: bool) -> Iterator[list[bytes]]:
    """Raw lines (newline removed) in lists of at most ``max_lines``.

    Memory stays bounded by the chunk size. When ``interactive``, a chunk is also handed
    out as soon as no more input is waiting, so a process that writes a line and waits for
    its translation before writing the next is answered at once instead of stalling.
    """
    read = getattr(stream, "read1", stream.read)
    pending, lines = b"", []
    while True:
        if interactive and lines and not _waiting(stream):
            yield lines
            lines = []
        data = read(1 << 16)
        if not data:
            break
        *complete, pending = (pending + data).split(b"\n")
        lines.extend(complete)
        while len(lines) >= max_lines:
            yield lines[:max_lines]
            lines = lines[max_lines:]
    if pending:
        lines.append(pending)
    if lines:
        yield lines


def checked(items: Iterator, name: str) -> Iterator:
    """``items`` with read errors (a truncated or corrupt .gz, an I/O error) as one-line errors."""
    try:
        yield from items
    except (OSError, EOFError, zlib.error) as e:
        raise NmtError(f"{name}: cannot read: {e}") from None


def _waiting(stream: BinaryIO) -> bool:
    """Whether reading ``stream`` (unbuffered) would return at once."""
    try:
        return bool(select.select([stream], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def paired_lines(src: str | Path, tgt: str | Path) -> Iterator[tuple[str, str]]:
    """Lines of two parallel files, streamed together; a length mismatch names both counts."""
    left, right = read_lines(src), read_lines(tgt)
    count = 0
    while True:
        a, b = next(left, None), next(right, None)
        if a is None or b is None:
            break
        yield a, b
        count += 1
    rest_left = (a is not None) + sum(1 for _ in left)
    rest_right = (b is not None) + sum(1 for _ in right)
    if rest_left or rest_right:
        raise NmtError(f"{src} has {count + rest_left} lines but {tgt} has {count + rest_right}")


@dataclass
class FileInfo:
    """What :func:`scan_file` learns about an input in one streaming pass."""

    path: str
    sha256: str  # of the bytes on disk (the .gz itself for gzipped files)
    lines: int
    invalid_utf8_lines: int


def scan_file(path: Path | str, on_invalid: str = "error", hint: str = "") -> FileInfo:
    """Hash, count and UTF-8-check a file in one pass, without holding it in memory."""
    path = Path(path)
    digest = hashlib.sha256()
    lines = invalid = 0
    try:
        with _open_bytes(path, digest) as f:
            for lines, raw in enumerate(f, 1):
                if decode_line(raw, path, lines, on_invalid, hint)[1]:
                    invalid += 1
                    if invalid <= 5:
                        warn(f"{path}:{lines}: invalid UTF-8 replaced with U+FFFD")
    except (OSError, EOFError, zlib.error) as e:  # truncated or corrupt .gz
        raise NmtError(f"{path}: cannot read: {e}") from None
    if invalid > 5:
        warn(f"{path}: {invalid} lines in all had invalid UTF-8 replaced with U+FFFD")
    return FileInfo(str(path.resolve()), digest.hexdigest(), lines, invalid)


def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
