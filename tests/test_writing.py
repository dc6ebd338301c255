"""writing.py: outputs written whole or not at all, and written straight into where the
output is a device, FIFO, pipe or open descriptor."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from nmt_cli import writing
from nmt_cli.errors import EnvError


@pytest.mark.parametrize("mode, content", [("w", "new text\n"), ("wb", b"\x00\x01")])
def test_atomic_file_writes(tmp_path, mode, content):
    path = tmp_path / "f"
    with writing.atomic_file(path, mode) as f:
        f.write(content)
        assert not path.exists()  # only renamed into place at the end
    assert (path.read_bytes() if "b" in mode else path.read_text()) == content
    assert os.listdir(tmp_path) == ["f"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_file_keeps_old_file_on_error(tmp_path, error):
    path = tmp_path / "f"
    path.write_text("old\n")
    with pytest.raises(error):
        with writing.atomic_file(path) as f:
            f.write("half")
            raise error()
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["f"]


def test_atomic_file_removes_what_a_killed_writer_of_that_file_left(tmp_path):
    import fcntl

    left = tmp_path / ".out.txt.abcd1234.tmp"  # a kill -9 mid-write
    live = tmp_path / ".out.txt.live5678.tmp"  # another writer, still writing: its flock is held
    other = tmp_path / ".other.txt.abcd1234.tmp"  # another file's: not this write's business
    for path in (left, live, other):
        path.write_text("half")
    holder = os.open(live, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        with writing.atomic_file(tmp_path / "out.txt") as f:
            f.write("whole\n")
        assert not left.exists() and live.exists() and other.exists()
    finally:
        os.close(holder)
    assert (tmp_path / "out.txt").read_text() == "whole\n"


def test_atomic_file_writes_into_a_fifo_and_leaves_it_one(tmp_path):
    """A FIFO (or any device) is written straight into: a file renamed over it would
    replace it, and its reader would wait forever."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    box: list[bytes] = []
    reader = threading.Thread(target=lambda: box.append(fifo.read_bytes()), daemon=True)
    reader.start()
    with writing.atomic_file(fifo) as f:
        f.write("through the pipe\n")
    reader.join(10)
    assert box == [b"through the pipe\n"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.listdir(tmp_path) == ["pipe"]  # no temporary file beside it


@pytest.mark.skipif(not os.path.isdir("/dev/fd"), reason="no /dev/fd here")
def test_atomic_file_writes_into_a_pipe_by_its_dev_fd_name():
    """What bash's process substitution hands over: ``-o >(gzip > x.gz)`` is ``/dev/fd/63``."""
    read, write = os.pipe()
    try:
        with writing.atomic_file(f"/dev/fd/{write}", "wb") as f:
            f.write(b"\x00\x01")
        os.close(write)
        write = -1
        with os.fdopen(read, "rb") as pipe:
            read = -1
            assert pipe.read() == b"\x00\x01"
    finally:
        for fd in (read, write):
            if fd >= 0:
                os.close(fd)


@pytest.mark.skipif(not os.path.isdir("/dev/fd"), reason="no /dev/fd here")
def test_atomic_file_writes_into_an_open_descriptor_on_a_regular_file(tmp_path):
    """``{ echo head; nmt translate -o /dev/stdout; echo tail; } >> log``: the log the
    shell opened is written where it stands, not replaced by a new file of that name."""
    log = tmp_path / "log"
    log.write_text("old\n")
    inode = log.stat().st_ino
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"head\n")
        with writing.atomic_file(f"/dev/fd/{fd}") as f:
            f.write("body\n")
        os.write(fd, b"tail\n")
    finally:
        os.close(fd)
    assert log.read_text() == "old\nhead\nbody\ntail\n"
    assert log.stat().st_ino == inode and os.listdir(tmp_path) == ["log"]


@pytest.mark.parametrize("existing", [True, False], ids=["existing", "new"])
def test_atomic_file_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path, existing):
    target_dir = tmp_path / "real"
    target_dir.mkdir()
    target = target_dir / "out.txt"
    if existing:
        target.write_text("old\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    with writing.atomic_file(link) as f:
        f.write("new\n")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new\n"
    assert os.listdir(target_dir) == ["out.txt"] and sorted(os.listdir(tmp_path)) == ["link.txt", "real"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_a_full_device_is_a_one_line_error_and_stays_a_device():
    with pytest.raises(EnvError) as e:
        with writing.atomic_file("/dev/full") as f:
            f.write("x\n")
    assert str(e.value) == "/dev/full: no space left on device"
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_atomic_dir_creates_and_replaces(tmp_path):
    out = tmp_path / "sub" / "out"
    with writing.atomic_dir(out) as tmp:
        assert tmp.parent == out.parent and tmp.name.startswith(".out.") and tmp.name.endswith(".tmp")
        (tmp / "a").write_text("1")
        assert not out.exists()
    assert [p.name for p in out.iterdir()] == ["a"]
    with writing.atomic_dir(out) as tmp:
        (tmp / "b").write_text("2")
    assert [p.name for p in out.iterdir()] == ["b"]
    assert os.listdir(out.parent) == ["out"]  # no .tmp or .old left


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
def test_atomic_dir_removes_its_temp_dir_on_error(tmp_path, error, existing):
    out = tmp_path / "out"
    if existing:
        out.mkdir()
        (out / "keep").write_text("old")
    with pytest.raises(error):
        with writing.atomic_dir(out) as tmp:
            (tmp / "partial").write_text("x")
            raise error()
    assert not tmp.exists()
    assert os.listdir(tmp_path) == (["out"] if existing else [])
    if existing:
        assert [p.name for p in out.iterdir()] == ["keep"] and (out / "keep").read_text() == "old"


@pytest.mark.parametrize("failing", [1, 2], ids=["moving-the-old-aside", "moving-the-new-in"])
def test_a_refused_swap_leaves_the_old_directory_and_no_debris(tmp_path, monkeypatch, failing):
    out = tmp_path / "prep"
    out.mkdir()
    (out / "old.txt").write_text("old")
    real, calls = os.replace, []

    def replace(a, b):
        calls.append(b)
        if len(calls) == failing:
            raise PermissionError(13, "Permission denied")
        return real(a, b)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(EnvError, match="prep: permission denied"):
        with writing.atomic_dir(out) as tmp:
            (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prep"] and os.listdir(out) == ["old.txt"]
