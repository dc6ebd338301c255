"""device.py: the bf16 speed probe and the hint it gives on CPUs where bf16 is slow."""

from __future__ import annotations

import math

import pytest
import torch

from nmt_cli import device as devices

CPU = torch.device("cpu")


def test_bf16_speedup_is_a_ratio_and_leaves_the_random_state_alone():
    before = torch.get_rng_state()
    ratio = devices.bf16_speedup(rows=64, size=64, reps=2)
    assert math.isfinite(ratio) and ratio > 0
    assert torch.equal(torch.get_rng_state(), before)  # a resumed run's trajectory does not move


@pytest.mark.parametrize("ratio", [0.55, 0.999])
def test_note_when_bf16_is_slower_than_fp32(monkeypatch, ratio):
    monkeypatch.setattr(devices, "bf16_speedup", lambda: ratio)
    note = devices.slow_bf16_note(CPU, "bf16", "--set train.precision")
    assert note is not None and "\n" not in note
    assert f"{ratio:.2f}x" in note and "--set train.precision=fp32" in note


def test_no_note_when_bf16_pays(monkeypatch):
    monkeypatch.setattr(devices, "bf16_speedup", lambda: 1.0)
    assert devices.slow_bf16_note(CPU, "bf16", "--precision") is None


@pytest.mark.parametrize("device, precision", [(CPU, "fp32"), (torch.device("cuda"), "bf16"), (torch.device("cuda"), "fp16")])
def test_no_probe_off_cpu_bf16(monkeypatch, device, precision):
    def probe():
        raise AssertionError("probed")

    monkeypatch.setattr(devices, "bf16_speedup", probe)
    assert devices.slow_bf16_note(device, precision, "--precision") is None
