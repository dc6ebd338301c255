"""Data-parallel training under torchrun: 2 CPU ranks on gloo, against one process.

Each run is a real `python -m torch.distributed.run --nproc_per_node 2 -m nmt_cli train`
on the tiny corpus (a few seconds each), as a user would start it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_RECIPE, assert_ok, run_train, sets

from nmt_cli import checkpoint
from nmt_cli.train import distributed

# 250 tokens cut an epoch of the tiny corpus into 53 batches: step 27 has one batch, so
# rank 1 sits it out (weight 0), and step 28 begins the second epoch.
STEPS, HALF = 28, 14
BASE = ("train.valid_every=14", "train.log_every=1", "train.keep_last=10", "train.batch_tokens=250")
DROPOUT = ("model.dropout=0.3", "model.emb_dropout=0.3")


def torchrun(prep: Path, out: Path, *args: str, ranks: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node RANKS -m nmt_cli train tiny.yaml ...``"""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    argv = [*launcher, "-m", "nmt_cli", "train", str(TINY_RECIPE), "--data", str(prep), "--out", str(out)]
    argv += ["--device", "cpu", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, prepped):
    """A 2-rank run without dropout: STEPS steps of 2 batches each (one per rank)."""
    out = tmp_path_factory.mktemp("ddp") / "model"
    return out, torchrun(prepped, out, *sets(*BASE, f"train.max_steps={STEPS}"))


def test_two_ranks_equal_one_process_over_the_same_global_batches(two_ranks, prepped, tmp_path):
    """Rank r takes batch r of each step's pair; one process with accumulate 2 takes both."""
    out, _ = two_ranks
    single = tmp_path / "single"
    assert_ok(run_train(prepped, single, *sets(*BASE, f"train.max_steps={STEPS}", "train.accumulate=2")))
    for step in (HALF, STEPS):
        a = checkpoint.load(checkpoint.step_path(out, step))["model"]
        b = checkpoint.load(checkpoint.step_path(single, step))["model"]
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6, msg=f"step {step}: {name}")
    logged = [e["loss"] for e in events(out) if e["event"] == "train"]
    alone = [e["loss"] for e in events(single) if e["event"] == "train"]
    assert logged == pytest.approx(alone, rel=1e-4)  # the loss of all ranks' tokens, not rank 0's


def test_rank_zero_alone_writes_and_logs(two_ranks):
    out, result = two_ranks
    records = [(e["event"], e["step"]) for e in events(out)]
    assert len(records) == len(set(records))  # one writer: no event twice
    assert records.count(("valid", HALF)) == 1 and records.count(("train", STEPS)) == 1
    assert sorted(p.name for p in out.iterdir()) == [
        "best.pt",
        "ckpt-0000014.pt",
        "ckpt-0000028.pt",
        "config.yaml",
        "metrics.jsonl",
        "valid.best.hyp",
    ]
    assert not [p for p in out.parent.rglob("*.tmp*")]
    assert result.stderr.count("parameters on cpu") == 1 and result.stderr.count(f"stopped at step {STEPS}") == 1
    assert "effective batch: 2 ranks x 250 tokens x accumulate 1 = 500 tokens" in result.stderr
    train = [e for e in events(out) if e["event"] == "train"]
    assert {(e["ranks"], e["effective_batch"]) for e in train} == {(2, 500)}


def test_checkpoints_keep_each_ranks_generator(two_ranks):
    state = checkpoint.load(checkpoint.step_path(two_ranks[0], STEPS))
    first, second = state["rng_ranks"]
    assert torch.equal(state["rng"]["torch"], first["torch"])
    assert not torch.equal(first["torch"], second["torch"])  # each rank draws its own dropout


def test_a_distributed_run_resumes_exactly(tmp_path, prepped):
    """With dropout on, stopped at step HALF and resumed, it ends where an uninterrupted run does."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    torchrun(prepped, whole, *sets(*BASE, *DROPOUT, f"train.max_steps={STEPS}"))
    torchrun(prepped, split, *sets(*BASE, *DROPOUT, f"train.max_steps={HALF}"))
    resumed = torchrun(prepped, split, "--resume", *sets(*BASE, *DROPOUT, f"train.max_steps={STEPS}"))
    assert "warning" not in resumed.stderr
    a = checkpoint.load(checkpoint.step_path(whole, STEPS))
    b = checkpoint.load(checkpoint.step_path(split, STEPS))
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    assert (
        (a["progress"]["epoch"], a["progress"]["batches_done"])
        == (b["progress"]["epoch"], b["progress"]["batches_done"])
        == (1, 2)
    )
    for x, y in zip(a["rng_ranks"], b["rng_ranks"]):
        assert torch.equal(x["torch"], y["torch"])


def test_two_ranks_start_from_init_weights_and_keep_the_same_average_as_one_process(two_ranks, prepped, tmp_path):
    """--init and train.ema under torchrun: every rank starts from the checkpoint's weights."""
    init = two_ranks[0] / "best.pt"
    settings = sets(*BASE, f"train.max_steps={HALF}", "train.ema=0.8")
    torchrun(prepped, tmp_path / "ddp", "--init", str(init), *settings)
    assert_ok(run_train(prepped, tmp_path / "single", "--init", init, *settings, *sets("train.accumulate=2")))
    a, b = (checkpoint.load(checkpoint.step_path(tmp_path / d, HALF)) for d in ("ddp", "single"))
    for entry in ("model", "ema"):
        for name in a[entry]:
            torch.testing.assert_close(a[entry][name], b[entry][name], rtol=1e-4, atol=1e-6, msg=f"{entry} {name}")


def test_a_rank_left_without_a_batch_still_joins_the_step():
    """share() hands out a step's batches in rank order; the last step of an epoch can
    leave a rank with none (train_step then runs it with weight 0)."""
    group = ["b0", "b1", "b2"]
    assert distributed.share(group, distributed.Ranks(0, 0, 2)) == ["b0", "b2"]
    assert distributed.share(group, distributed.Ranks(1, 1, 2)) == ["b1"]
    assert distributed.share(["b0"], distributed.Ranks(1, 1, 2)) == []


def test_one_process_is_rank_zero_of_one(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.from_env() == distributed.Ranks(0, 0, 1) and not distributed.launched()
    assert distributed.gather("x") == ["x"] and distributed.from_main(3) == 3


def test_two_nodes_sharing_the_model_directory_are_one_owner(tmp_path, prepped):
    """Two torchrun "nodes" on this machine (`--nnodes 2`, one rank each) write into one
    --out: global rank 0 alone holds the directory, rank 1 trains beside it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "model"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes=2",
                f"--node_rank={node}",
                "--nproc_per_node=1",
                "--master_addr=127.0.0.1",
                f"--master_port={port}",
                "-m",
                "nmt_cli",
                "train",
                str(TINY_RECIPE),
                "--data",
                str(prepped),
                "--out",
                str(out),
                "--device",
                "cpu",
                *sets(*BASE, "train.max_steps=4", "train.valid_every=2"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for node in (0, 1)
    ]
    try:
        results = [node.communicate(timeout=300) for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    for node, (_, err) in zip(nodes, results):
        assert node.returncode == 0, err[-3000:]
    assert "in use" not in results[1][1]
    records = [(e["event"], e["step"]) for e in events(out)]
    assert len(records) == len(set(records)) and ("train", 4) in records
    assert [s for s, _ in checkpoint.step_checkpoints(out)] == [2, 4]
    assert not list(tmp_path.glob(".model.lock"))
