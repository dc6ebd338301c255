"""Files out, whole or not at all: every stage writes its results through
:func:`atomic_file` or :func:`atomic_dir` (a temporary name in the same directory,
renamed into place only when complete), so an interrupted command never leaves a
half-written output behind; a device, FIFO, pipe or open descriptor given as the output
(/dev/null, ``-o >(gzip > x.gz)``, /dev/stdout) is written straight into. stdout's write
errors name ``<stdout>`` (:func:`named_stdout`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from nmt_cli import lock
from nmt_cli.errors import EnvError, NmtError, os_reason

_FD_DIR = re.compile(r"/proc/(\d+)(?:/task/\d+)?/fd")  # a process's open descriptors, as links


@contextlib.contextmanager
def atomic_file(path: Path | str, mode: str = "w", encoding: str | None = "utf-8"):
    """Write to a temporary file beside ``path``; rename it over ``path`` on success only.

    A symlink's target is what gets replaced, so the link stays a link. One of this
    process's descriptors (/dev/stdout, the pipe /dev/fd/63 behind ``-o >(gzip > x.gz)``)
    and what is there and is no regular file (a device such as /dev/null, a FIFO) are
    written straight into instead: a renamed file would replace them.
    """
    path = Path(path)
    if path.is_dir():
        raise NmtError(f"{path}: is a directory; give a file name")
    if written_through(path):
        with _write_through(path, mode, encoding) as f:
            yield f
        return
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    with _replacing(path, target, mode, encoding) as f:
        yield f


def written_through(path: Path) -> bool:
    """Whether :func:`atomic_file` writes straight into ``path``: one of this process's open
    descriptors (/dev/stdout, /dev/fd/63), or what exists and, its symlinks followed, is a
    device, FIFO or socket, which no renamed file may replace."""
    if _own_descriptor(path) is not None:
        return True
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:  # not there (yet), or a dangling or looping link
        return False


def _own_descriptor(path: Path) -> int | None:
    """The descriptor of this process that ``path`` or a link on its way names (/dev/stdout
    is /proc/self/fd/1), or None. Its file is the one the shell opened for us (``>> log``,
    a socket): to be written as it is, even where it is a regular file."""
    for _ in range(40):  # as many links as the kernel follows
        owner = _FD_DIR.fullmatch(os.path.realpath(path.parent))
        if owner and int(owner[1]) == os.getpid() and path.name.isdigit():
            return int(path.name)
        if not path.is_symlink():
            return None
        path = path.parent / os.readlink(path)
    return None


@contextlib.contextmanager
def _write_through(path: Path, mode: str, encoding: str | None):
    """Write into an open descriptor, a device, FIFO or socket as it is: no temporary file, no rename."""
    own = _own_descriptor(path)
    try:
        # a copy of our own descriptor keeps its offset and O_APPEND; no O_CREAT: never make a file in its place
        fd = os.dup(own) if own is not None else os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise EnvError(f"{path}: cannot open for writing ({os_reason(e)})") from None
    f = os.fdopen(fd, mode, encoding=None if "b" in mode else encoding)
    try:
        yield f
        f.close()  # flushes: a full device (/dev/full) says so here
    except BaseException as e:
        with contextlib.suppress(OSError):  # the first error is the one to report
            f.close()
        _raise_write_failure(e, path)
        raise


@contextlib.contextmanager
def _replacing(path: Path, target: Path, mode: str, encoding: str | None):
    """Write a temporary file beside ``target`` (``path`` or, for a symlink, what it points
    to) and rename it over ``target`` on success only; errors name ``path``."""
    lock.remove_stale(target.parent, lock.temp_names(target))  # what a killed writer of this file left
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    except FileNotFoundError as e:
        if target.parent.is_dir():  # /proc: there, but no files can be made in it
            raise EnvError(f"{path}: cannot create a file in {target.parent} ({os_reason(e)})") from None
        raise NmtError(f"{path}: directory {target.parent} does not exist") from None
    except OSError as e:
        raise EnvError(f"{path}: cannot write in {target.parent} ({os_reason(e)})") from None
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
    held = os.dup(fd)  # its flock lasts until the rename: lock.remove_stale tells a live write from a leftover
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename publishes it: durable across a power loss
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        _raise_write_failure(e, path)
        raise
    finally:
        os.close(held)


@contextlib.contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Build a directory under a temporary name beside ``path``, then swap it into place.

    An existing ``path`` is replaced only after the new one is complete (the caller
    decides whether replacing it is allowed); on any error or Ctrl-C the temporary
    directory is removed and ``path`` is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise EnvError(f"{path}: cannot write in {path.parent} ({os_reason(e)})") from None
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give what mkdir() would
    try:
        yield tmp
        _fsync_tree(tmp)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            try:
                os.replace(path, old / "x")
                try:
                    os.replace(tmp, path)
                except BaseException:
                    os.replace(old / "x", path)  # the old one back in its place
                    raise
            finally:
                shutil.rmtree(old, ignore_errors=True)  # the replaced directory, or an empty one
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        _raise_write_failure(e, path)
        raise


def _raise_write_failure(error: BaseException, path: Path) -> None:
    """A write that the system refused (disk full, read-only, I/O error) as a one-line
    :class:`EnvError` naming ``path``. OSErrors that name their own file pass as they are,
    and so does a reader gone (EPIPE); torch.save reports its writer's OSError as the
    context of a RuntimeError."""
    cause = error if isinstance(error, OSError) else error.__context__
    if isinstance(cause, OSError) and cause.filename is None and cause.errno not in (None, errno.EPIPE):
        raise EnvError(f"{path}: {os_reason(cause)}") from None


def _fsync_tree(root: Path) -> None:
    """Every file under ``root``, and the directories holding them, on disk."""
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))


def _fsync_dir(directory: Path) -> None:
    """A directory's entries (a rename into it) on disk; some file systems cannot."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


class _Stdout(io.RawIOBase):
    """stdout's file descriptor, whose write errors name ``<stdout>``, so that a full
    device or a closed descriptor is reported like any other file's failure."""

    def __init__(self, fd: int | None):
        self.fd = fd  # None: the process was started with stdout closed (>&-)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self.fd is not None and os.isatty(self.fd)

    def fileno(self) -> int:
        if self.fd is None:
            raise OSError(errno.EBADF, "Bad file descriptor (stdout is closed)", "<stdout>")
        return self.fd

    def write(self, data) -> int:
        try:
            return os.write(self.fileno(), data)
        except OSError as e:
            raise OSError(e.errno, e.strerror, "<stdout>") from None


def named_stdout() -> TextIO:
    """A text stdout on the same descriptor (or on none, when it is closed), with the
    same encoding and buffering, whose write errors name ``<stdout>``."""
    old = sys.stdout
    if old is None:
        return io.TextIOWrapper(io.BufferedWriter(_Stdout(None)), encoding="utf-8")
    return io.TextIOWrapper(
        io.BufferedWriter(_Stdout(old.fileno())),
        encoding=old.encoding,
        errors=old.errors,
        line_buffering=old.line_buffering,
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
