"""device.py: the bf16 speed probe, ``auto`` precision, and the hint where bf16 is slow."""

from __future__ import annotations

import math

import pytest
import torch

from nmt_cli import device as devices
from nmt_cli.config import ModelConfig
from nmt_cli.model import shapes

CPU = torch.device("cpu")
REAL_BF16_SPEEDUP = devices.bf16_speedup  # before conftest's stub replaces it in each test
SHAPES = shapes.product_shapes(ModelConfig(), 32)


def test_bf16_speedup_is_a_ratio_and_leaves_the_random_state_alone():
    before = torch.get_rng_state()
    ratio = REAL_BF16_SPEEDUP([(16, 64, 64)], reps=2)
    assert math.isfinite(ratio) and ratio > 0
    assert torch.equal(torch.get_rng_state(), before)  # a resumed run's trajectory does not move


def test_product_shapes_follow_the_model():
    lstm = shapes.product_shapes(ModelConfig(cell="lstm", decoder_hidden=64, output_size=32), 8)
    assert lstm == [(8, 64, 256), (8, 32, 128)]


@pytest.mark.parametrize("ratio, chosen", [(0.02, "fp32"), (1.0, "fp32"), (1.19, "fp32"), (1.2, "bf16"), (3.5, "bf16")])
def test_auto_takes_bf16_only_when_clearly_faster(monkeypatch, ratio, chosen):
    monkeypatch.setattr(devices, "bf16_speedup", lambda shapes: ratio)
    precision, why = devices.resolve_precision("auto", CPU, SHAPES)
    assert precision == chosen and why == f"bf16 {ratio:.2f}x fp32 on this CPU"


@pytest.mark.parametrize("asked", ["fp32", "bf16", "fp16"])
def test_an_explicit_precision_is_not_probed(monkeypatch, asked):
    monkeypatch.setattr(devices, "bf16_speedup", _no_probe)
    assert devices.resolve_precision(asked, CPU, SHAPES)[0] == asked


def test_auto_on_cuda_is_fp32_without_a_probe(monkeypatch):
    monkeypatch.setattr(devices, "bf16_speedup", _no_probe)
    assert devices.resolve_precision("auto", torch.device("cuda"), SHAPES)[0] == "fp32"


@pytest.mark.parametrize("ratio", [0.55, 0.999])
def test_note_when_bf16_is_slower_than_fp32(monkeypatch, ratio):
    monkeypatch.setattr(devices, "bf16_speedup", lambda: ratio)
    note = devices.slow_bf16_note(CPU, "bf16", "--set train.precision")
    assert note is not None and "\n" not in note
    assert f"{ratio:.2f}x" in note and "--set train.precision=auto" in note


def test_no_note_when_bf16_pays(monkeypatch):
    monkeypatch.setattr(devices, "bf16_speedup", lambda: 1.0)
    assert devices.slow_bf16_note(CPU, "bf16", "--precision") is None


@pytest.mark.parametrize(
    "device, precision", [(CPU, "fp32"), (torch.device("cuda"), "bf16"), (torch.device("cuda"), "fp16")]
)
def test_no_probe_off_cpu_bf16(monkeypatch, device, precision):
    monkeypatch.setattr(devices, "bf16_speedup", _no_probe)
    assert devices.slow_bf16_note(device, precision, "--precision") is None


def _no_probe(*args):
    raise AssertionError("probed")
