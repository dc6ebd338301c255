"""What a benchmark ran on, and the two instruction-set settings benchmarks compare.

``native``: every library uses what the CPU has (AMX or AVX-512 BF16 where present: native
bf16). ``AVX2``: the CPU as most laptop, desktop and cloud x86 CPUs are: oneDNN, MKL (fp32
products), fbgemm (int8 products) and torch's own kernels each limited to AVX2, so bf16
products fall back to slow kernels and int8 ones to AVX2's, without VNNI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

AVX2 = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
}
ISAS = {"native": {}, "AVX2": AVX2}
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # the flags that decide the precision path

_PROBE = """
import json, sys
from nmt_cli.model import shapes
from nmt_cli import config, device
cfg = config.apply_overrides(config.load_recipe(sys.argv[1]), sys.argv[2:])
speedup = device.bf16_speedup(shapes.product_shapes(cfg.model, max(1, cfg.train.batch_tokens // 32)))
chosen, why = device.auto_choice(speedup)
print(json.dumps({"precision": chosen, "why": why, "speedup": speedup}))
"""


def cpu() -> str:
    """The CPU's model name and which of :data:`FLAGS` it has, e.g. ``AMD EPYC (avx2 avx512f avx512_bf16)``."""
    name, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} CPUs ({' '.join(f for f in FLAGS if f in flags) or 'none of ' + ' '.join(FLAGS)})"


def env(isa: str) -> dict[str, str]:
    """The environment of a child process run under ``isa`` (a key of :data:`ISAS`)."""
    return {**os.environ, **ISAS[isa]}


def auto_precision(isa: str, recipe: str, sets: list[str]) -> dict:
    """What ``precision: auto`` resolves to for this recipe's model under ``isa``: the
    precision, the reason and the probe's bf16 speedup."""
    args = [a for a in sets if a != "--set"]
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, recipe, *args], env=env(isa), check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)
