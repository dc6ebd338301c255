"""One owner per output directory, and the leftovers of owners that were killed.

``nmt train --out DIR`` and ``nmt prep --out DIR`` hold :func:`owner` for their whole run:
an exclusive ``fcntl.flock`` on ``.DIR.lock`` beside the directory (outside it, so it is
neither a model file nor part of a prep's fingerprinted contents). The kernel lets go of
the lock when its process ends, however it ends, so a lock file left by a ``kill -9``
blocks nobody: only a live holder does, and a second process is told its pid.

Temporary files of :func:`nmt_cli.writing.atomic_file` are flock'ed by their writer as well;
:func:`remove_stale` deletes the ones no live process holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from nmt_cli.errors import NmtError

TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # what tempfile.mkstemp makes for atomic_file


def lock_path(directory: Path) -> Path:
    """``.NAME.lock`` beside ``directory`` (resolved: every path to it shares one lock)."""
    directory = directory.resolve()
    return directory.parent / f".{directory.name}.lock"


@contextlib.contextmanager
def owner(directory: Path | str, take: bool = True) -> Iterator[None]:
    """Hold ``directory`` for this process; a one-line error naming the holder's pid if
    another process holds it. ``take=False`` (a torchrun rank other than 0: rank 0 holds
    it for the whole run) does nothing."""
    if not take:
        yield
        return
    directory = Path(directory)
    path = lock_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)  # an OSError here is the environment's: cli.py reports it
    fd = _acquire(path, directory)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # still holding it: a process waiting on this inode retries (see _acquire)
        os.close(fd)


def _acquire(path: Path, directory: Path) -> int:
    """The locked descriptor of ``path``, which is then the file under that name (a holder
    that removes it on release leaves an inode a waiting process must not keep)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise NmtError(
                f"{directory}: in use by another nmt process (pid {holder}); wait for it to end or choose another --out"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
            return fd
        os.close(fd)


def temp_names(path: Path) -> re.Pattern:
    """The names :func:`nmt_cli.writing.atomic_file` gives the temporary copies of ``path``, beside it."""
    return re.compile(rf"^\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp$")


def build_names(directory: Path) -> re.Pattern:
    """The names :func:`nmt_cli.writing.atomic_dir` gives the temporary and the replaced copies
    of ``directory``, beside it."""
    return re.compile(rf"^\.{re.escape(directory.name)}\.[a-z0-9_]{{8}}\.(tmp|old)$")


def remove_stale(directory: Path, names: re.Pattern = TEMP_NAME) -> None:
    """Delete the files (and directories) in ``directory`` whose names match ``names`` and
    that no live process holds a lock on: what a killed writer left behind."""
    with contextlib.suppress(OSError):
        for path in directory.iterdir():
            if names.match(path.name) and _unheld(path):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()


def _unheld(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
