"""Failures of the system, as a user meets them: a full disk, a read-only place, /proc as
output, stdout closed or on /dev/full. Each is one line naming the path and the OS's
reason, exit code 1, and no half-written file under a real name.

CI cannot mount a full or read-only file system, so those writes are made to fail the
way the OS fails them (an OSError with its errno); stdout's cases run real processes.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import TEST_PAIRS, assert_error_ends, make_pairs, run_prep, run_train, write_corpus, write_lines
from typer.testing import CliRunner

from nmt_cli import writing
from nmt_cli.cli import app

REASON = {errno.ENOSPC: "no space left on device", errno.EROFS: "read-only file system"}


def assert_env_error(result, *fragments: str) -> str:
    return assert_error_ends(result, 1, *fragments)


class _FillingFile:
    """A file on a disk that fills after ``room`` bytes: the bytes that fit are written."""

    def __init__(self, file, code: int, room: int):
        self.file, self.code, self.room = file, code, room

    def write(self, data):
        if len(data) > self.room:
            self.file.write(data[: self.room])
            self.file.flush()
            raise OSError(self.code, os.strerror(self.code))
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.file.__exit__(*exc)


@pytest.fixture
def fill_disk(monkeypatch):
    """``fill_disk(pattern, code, room)``: files whose real name matches ``pattern``,
    written through ``atomic_file`` or ``open`` (to write or to append), fail with ``code``
    after ``room`` bytes."""

    def install(pattern: str, code: int = errno.ENOSPC, room: int = 100) -> None:
        def matching(fd: int) -> bool:
            name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
            return fnmatch.fnmatch(name, f".{pattern}.*.tmp") or fnmatch.fnmatch(name, pattern)

        real_fdopen, real_open = os.fdopen, open

        def fdopen(fd, *args, **kwargs):
            file = real_fdopen(fd, *args, **kwargs)
            return _FillingFile(file, code, room) if matching(fd) else file

        def opener(path, mode="r", *args, **kwargs):
            file = real_open(path, mode, *args, **kwargs)
            return _FillingFile(file, code, room) if ("w" in mode or "a" in mode) and matching(file.fileno()) else file

        monkeypatch.setattr(os, "fdopen", fdopen)
        monkeypatch.setattr("io.open", opener)  # pathlib's writes
        monkeypatch.setattr("builtins.open", opener)

    return install


def translate(*args):
    return CliRunner().invoke(app, ["translate", *map(str, args)])


@pytest.fixture
def source(tmp_path) -> Path:
    return write_lines(tmp_path / "src.de", [de for de, _ in make_pairs(TEST_PAIRS, 3)])


# ------------------------------------------------------------------------ full disk


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_translate_output_on_a_full_disk_keeps_the_old_file(tmp_path, trained, source, fill_disk, code):
    out = tmp_path / "out.en"
    out.write_text("old translations\n")
    fill_disk("out.en", code)
    line = assert_env_error(translate("-m", trained / "best.pt", source, "-o", out, "-q"))
    assert line == f"nmt: error: {out}: {REASON[code]}"
    assert out.read_text() == "old translations\n"
    assert sorted(os.listdir(tmp_path)) == ["out.en", "src.de"]  # no temporary file left


def test_checkpoint_write_on_a_full_disk(tmp_path, prepped, fill_disk):
    out = tmp_path / "model"
    fill_disk("ckpt-*.pt", room=4096)
    line = assert_env_error(run_train(prepped, out, "--set", "train.max_steps=2"))
    assert line == f"nmt: error: {out / 'ckpt-0000002.pt'}: no space left on device"
    assert not list(out.glob("*.pt")) and not list(out.glob(".*.tmp"))


def test_metrics_append_on_a_full_disk(tmp_path, prepped, fill_disk):
    out = tmp_path / "model"
    fill_disk("metrics.jsonl", room=0)
    line = assert_env_error(run_train(prepped, out, "--set", "train.max_steps=2"))
    assert line == f"nmt: error: {out / 'metrics.jsonl'}: no space left on device"


def test_prep_on_a_full_disk_leaves_the_old_prep(tmp_path, fill_disk):
    write_corpus(tmp_path)
    out = tmp_path / "out"
    assert run_prep(tmp_path).exit_code == 0
    before = (out / "manifest.json").read_bytes()
    write_corpus(tmp_path, valid=make_pairs(10, 9))
    fill_disk("manifest.json")
    line = assert_env_error(run_prep(tmp_path, "--force"))
    assert line == f"nmt: error: {out}: no space left on device"
    assert (out / "manifest.json").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["data", "out"]  # no temporary directory left


# ------------------------------------------------------------- places that refuse files


def test_output_in_proc_names_the_real_problem(trained, source):
    line = assert_env_error(translate("-m", trained / "best.pt", source, "-o", "/proc/out.txt", "-q"))
    assert "cannot create a file in /proc" in line and "does not exist" not in line


def test_read_only_file_system(tmp_path, trained, source, monkeypatch):
    def refuse(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    out = tmp_path / "out.en"
    assert_env_error(
        translate("-m", trained / "best.pt", source, "-o", out, "-q"),
        f"{out}: cannot write in {tmp_path} (read-only file system)",
    )
    write_corpus(tmp_path)
    assert_env_error(run_prep(tmp_path), f"{tmp_path / 'out'}: cannot write in {tmp_path} (read-only file system)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in read-only directories")
def test_read_only_directory(tmp_path, trained, source):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert_env_error(
        translate("-m", trained / "best.pt", source, "-o", locked / "out.en", "-q"),
        f"{locked / 'out.en'}: cannot write in {locked} (permission denied)",
    )


# ------------------------------------------------------------------- stdout (processes)


def _nmt(args: list, shell_redirect: str = "", **kwargs) -> subprocess.CompletedProcess:
    command = " ".join([sys.executable, "-m", "nmt_cli", *map(str, args)]) + shell_redirect
    return subprocess.run(command, shell=True, stderr=subprocess.PIPE, text=True, timeout=120, **kwargs)


@pytest.mark.parametrize(
    "args",
    [["translate", "-q", "-m", "{model}", "{src}"], ["info", "{model}"], ["--version"]],
    ids=["translate", "info", "version"],
)
@pytest.mark.parametrize(
    "where, reason",
    [(" >&-", "bad file descriptor"), (" >/dev/full", "no space left on device")],
    ids=["closed", "dev-full"],
)
def test_stdout_that_cannot_be_written(trained, source, args, where, reason):
    if where == " >/dev/full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    done = _nmt([a.format(model=trained / "best.pt", src=source) for a in args], where)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()] and done.stderr.startswith(
        f"nmt: error: <stdout>: {reason}"
    )


def test_a_reader_gone_is_a_quiet_exit(trained, tmp_path):
    many = write_lines(tmp_path / "many.de", [de for de, _ in make_pairs(400, 5)] * 10)
    done = _nmt(
        ["translate", "-q", "--beam", "1", "-m", trained / "best.pt", many],
        " | head -1 >/dev/null; exit ${PIPESTATUS[0]}",
        executable="/bin/bash",
    )
    assert done.stderr == "" and done.returncode in (0, 1)


def test_train_runs_with_stdout_closed(tmp_path, prepped):
    from conftest import TINY_RECIPE

    done = _nmt(
        [
            "train",
            TINY_RECIPE,
            "--data",
            prepped,
            "--out",
            tmp_path / "m",
            "--device",
            "cpu",
            "--set",
            "train.max_steps=2",
            "--threads",
            "1",
        ],
        " >&-",
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m" / "best.pt").is_file()


# --------------------------------------------------------------------------- durability


def test_published_files_are_synced_before_their_rename(tmp_path, monkeypatch):
    """A checkpoint or a prep directory on disk before the rename that publishes it, and
    the rename itself after: atomic across a crash and durable across a power loss."""

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(
        os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))), real_fsync(fd))[1]
    )
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("rename", str(b))), real_replace(a, b))[1])
    with writing.atomic_file(tmp_path / "ckpt.pt", "wb") as f:
        f.write(b"weights")
    with writing.atomic_dir(tmp_path / "prep") as tmp:
        (tmp / "manifest.json").write_text("{}")
    file_synced = [i for i, (kind, name) in enumerate(events) if kind == "fsync" and ".ckpt.pt." in name]
    manifest_synced = [i for i, (kind, name) in enumerate(events) if kind == "fsync" and name.endswith("manifest.json")]
    renames = {name: i for i, (kind, name) in enumerate(events) if kind == "rename"}
    assert file_synced and file_synced[0] < renames[str(tmp_path / "ckpt.pt")]
    assert manifest_synced and manifest_synced[0] < renames[str(tmp_path / "prep")]
    dir_synced = [i for i, (kind, name) in enumerate(events) if kind == "fsync" and name == str(tmp_path)]
    assert dir_synced and dir_synced[-1] > renames[str(tmp_path / "prep")]
