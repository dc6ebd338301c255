"""One owner per output directory (nmt_cli/lock.py): a second `nmt train` into the same
--out is refused with the holder's pid, a lock or a half-written file left by a kill -9
blocks nothing, and the resumed run logs each step once."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_RECIPE, hold_in_child, sets

from nmt_cli import checkpoint, lock
from nmt_cli.errors import NmtError

ROOT = Path(__file__).resolve().parents[1]


def test_a_second_owner_is_told_the_holders_pid_and_a_killed_holder_blocks_nothing(tmp_path):
    out = tmp_path / "model"
    child = hold_in_child(out)
    try:
        with pytest.raises(NmtError, match=rf"^{out}: in use by another nmt process \(pid {child.pid}\)"):
            with lock.owner(out):
                pass
    finally:
        child.kill()  # SIGKILL: no chance to clean up
        child.wait()
    assert lock.lock_path(out).is_file()  # the killed holder's file is still there...
    with lock.owner(out):  # ...and blocks nobody
        assert lock.lock_path(out).read_text() == f"{os.getpid()}\n"
    assert not lock.lock_path(out).exists()


def test_one_process_holds_a_directory_once_and_other_ranks_take_nothing(tmp_path):
    out = tmp_path / "model"
    with lock.owner(out):
        with lock.owner(out, take=False):  # a torchrun rank other than 0
            pass
        with pytest.raises(NmtError, match="in use"):
            with lock.owner(out / ".." / "model"):  # another path to it, the same lock
                pass


def test_remove_stale_keeps_what_a_live_process_writes(tmp_path):
    stale = tmp_path / ".ckpt-0000040.pt.abcd_123.tmp"
    live = tmp_path / ".best.pt.zyxw9876.tmp"
    mine = tmp_path / "notes.tmp"  # not a name atomic_file gives
    for path in (stale, live, mine):
        path.write_bytes(b"x")
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        lock.remove_stale(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, mine.name])


# ----------------------------------------------------------------------------- nmt train


def nmt_train(prep: Path, out: Path, *args: str, **popen) -> subprocess.Popen:
    argv = [
        sys.executable,
        "-m",
        "nmt_cli",
        "train",
        str(TINY_RECIPE),
        "--data",
        str(prep),
        "--out",
        str(out),
        "--device",
        "cpu",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **popen)


def logged(out: Path) -> list[tuple[str, int]]:
    lines = (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [(record["event"], record["step"]) for record in map(json.loads, lines)]


def kill_9_past_a_checkpoint(first: subprocess.Popen, out: Path) -> int:
    """SIGKILL the run once metrics.jsonl holds an event after its newest checkpoint (it is
    stopped while we look); returns that checkpoint's step."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert first.poll() is None, first.communicate()[1][-2000:]
        first.send_signal(signal.SIGSTOP)
        newest = checkpoint.latest(out) if out.is_dir() else None
        step = int(newest.stem.split("-")[1]) if newest is not None else 0
        if newest is not None and any(s > step for _, s in logged(out)):
            first.send_signal(signal.SIGKILL)
            first.communicate()
            return step
        first.send_signal(signal.SIGCONT)
        time.sleep(0.2)
    raise AssertionError("the first run logged no step after a checkpoint in time")


def test_two_trainings_into_one_out_and_a_kill_9(tmp_path, prepped):
    """The second process fails at once naming the holder; after a kill -9, --resume
    works, removes the killed run's leftovers and logs each step once."""
    out = tmp_path / "model"
    settings = ("train.valid_every=4", "train.log_every=1", "train.patience=0")  # it never stops by itself
    first = nmt_train(prepped, out, *sets(*settings, "train.max_steps=100000"))
    try:
        while checkpoint.latest(out) is None if out.is_dir() else True:
            assert first.poll() is None, first.communicate()[1][-2000:]
            time.sleep(0.2)
        second = nmt_train(prepped, out, *sets("train.seed=7"))
        _, err = second.communicate(timeout=120)
        assert first.poll() is None  # refused while the first one still runs
        assert second.returncode == 2
        assert err.splitlines() == [
            f"nmt: error: {out}: in use by another nmt process (pid {first.pid}); "
            "wait for it to end or choose another --out"
        ]
        step = kill_9_past_a_checkpoint(first, out)
    finally:
        first.kill()
        first.communicate()
    leftover = out / ".ckpt-0009999.pt.k1ll3d_9.tmp"  # what a kill during a checkpoint write leaves
    leftover.write_bytes(b"half a checkpoint")
    assert lock.lock_path(out).is_file()
    resumed = nmt_train(prepped, out, "--resume", *sets(*settings, f"train.max_steps={step + 3}"))
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert not leftover.exists() and not lock.lock_path(out).exists()
    events = logged(out)
    assert len(events) == len(set(events)), events  # nothing logged twice
    assert [s for kind, s in events if kind == "train"] == list(range(1, step + 4))
