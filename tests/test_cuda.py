"""The CUDA paths: training in each precision, resuming, and checkpoints that move between
a GPU and a CPU. Skipped where torch sees no CUDA device (CI never has one); run them on a
GPU machine with ``pytest tests/test_cuda.py``."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import TINY_RECIPE, assert_ok, make_pairs, sets, write_lines
from typer.testing import CliRunner

from nmt_cli import checkpoint
from nmt_cli.cli import app

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SHORT = ("train.max_steps=6", "train.valid_every=3", "train.log_every=3", "model.dropout=0.2")


def train_on(device: str, prep, out, *args):
    argv = ["train", str(TINY_RECIPE), "--data", str(prep), "--out", str(out), "--device", device, *map(str, args)]
    return CliRunner().invoke(app, argv)


def translate_on(device: str, model, source, *args) -> list[str]:
    result = CliRunner().invoke(app, ["translate", "-m", str(model), "--device", device, str(source), *map(str, args)])
    assert_ok(result)
    return result.stdout.splitlines()


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_trains_on_cuda_in_each_precision(tmp_path, prepped, precision):
    out = tmp_path / "model"
    assert_ok(train_on("cuda", prepped, out, *sets(*SHORT, f"train.precision={precision}")))
    ckpt = checkpoint.load(out / "best.pt")
    assert all(t.device.type == "cpu" for t in ckpt["model"].values())  # loadable where no GPU is
    assert all(bool(torch.isfinite(t).all()) for t in ckpt["model"].values())
    assert ckpt["rng"]["cuda"], "the CUDA generator's state is saved for resuming"


def test_a_cuda_checkpoint_translates_the_same_on_cpu(tmp_path, prepped):
    out = tmp_path / "model"
    assert_ok(train_on("cuda", prepped, out, *sets("train.max_steps=40", "train.valid_every=40")))
    source = write_lines(tmp_path / "test.de", [de for de, _ in make_pairs(12, 7)])
    on_gpu = translate_on("cuda", out / "best.pt", source, "--beam", 3)
    on_cpu = translate_on("cpu", out / "best.pt", source, "--beam", 3)
    assert len(on_gpu) == 12 and on_gpu == on_cpu


def test_a_cpu_checkpoint_resumes_on_cuda(tmp_path, prepped):
    out = tmp_path / "model"
    assert_ok(train_on("cpu", prepped, out, *sets(*SHORT, "train.max_steps=3")))
    result = train_on("cuda", prepped, out, "--resume", *sets(*SHORT))
    assert_ok(result)
    assert "stopped at step 6" in result.stderr


def test_stop_and_resume_on_cuda_follows_the_same_trajectory(tmp_path, prepped):
    """On CUDA the kernels may sum in another order, so the parameters agree closely, not bit for bit."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert_ok(train_on("cuda", prepped, whole, *sets(*SHORT)))
    assert_ok(train_on("cuda", prepped, split, *sets(*SHORT, "train.max_steps=3")))
    assert_ok(train_on("cuda", prepped, split, "--resume", *sets(*SHORT)))
    a = checkpoint.load(whole / "ckpt-0000006.pt")["model"]
    b = checkpoint.load(split / "ckpt-0000006.pt")["model"]
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert math.isfinite(worst) and worst < 1e-4, worst
