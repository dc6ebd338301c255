"""Where an fp32 training step's time goes: matrix-product arithmetic per target token,
the products' share of the step and their rate, against a lone large product's rate.

Runs the de->en recipe's model (``--set`` overrides as for `nmt train`) in this process
for ``--warmup`` steps, then ``--steps`` steps under ``torch.profiler`` with FLOP
counting. The bound it prints is the tokens/s the step would reach if everything but the
products took no time (docs/performance.md, "Why fp32 stops at about 1.9x OpenNMT-py").
Under ``--isa AVX2`` it re-runs itself with the libraries limited to AVX2.

    python bench/profile_train.py --prep work/prep-de-en --isa AVX2 --set model.encoder_layers=1
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import machine
import torch
from torch.profiler import ProfilerActivity, profile

from nmt_cli import config
from nmt_cli.train import distributed, report
from nmt_cli.train.loop import train_step
from nmt_cli.train.run import setup

PRODUCTS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def lone_product_rate(m: int = 3840, k: int = 1536, n: int = 1536) -> float:
    """GFLOP/s of one large fp32 product, the best of five rounds of ten."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        best = min(best, (time.perf_counter() - start) / 10)
    return 2 * m * k * n / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prep", type=Path, default=Path("work/prep-de-en"))
    ap.add_argument("--recipe", default="recipes/multi30k_de_en.yaml")
    ap.add_argument("--isa", choices=list(machine.ISAS), default="native")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--set", action="append", default=[], dest="sets")
    args = ap.parse_args()
    if args.isa != "native" and not os.environ.get("NMT_PROFILE_CHILD"):
        argv = [sys.executable, *sys.argv]
        sys.exit(subprocess.call(argv, env={**machine.env(args.isa), "NMT_PROFILE_CHILD": "1"}))
    sets = ["train.precision=fp32", "train.max_time=", "train.max_steps=1000000", *args.sets]
    cfg = config.apply_overrides(config.load_recipe(args.recipe), sets)
    out = Path(tempfile.mkdtemp(prefix="nmt-profile."))
    try:
        run = setup(cfg, args.prep, out / "model", False, torch.device("cpu"), distributed.Ranks(), report.Quiet())
        t = cfg.train
        batches = run.data.train.batches(t.batch_tokens, t.seed, 0, t.batch_multiple)
        for batch in batches[: args.warmup]:
            train_step(run, [batch])
        tokens, start = 0, time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
            for batch in batches[args.warmup : args.warmup + args.steps]:
                tokens += train_step(run, [batch])[2]
        wall = time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    seconds, flops = defaultdict(float), defaultdict(int)
    for event in prof.key_averages():
        seconds[event.key] += event.self_cpu_time_total / 1e6
        flops[event.key] += event.flops
    total = sum(seconds.values())
    product_s, product_flops = sum(seconds[k] for k in PRODUCTS), sum(flops[k] for k in PRODUCTS)
    rate, lone, per_token = product_flops / product_s / 1e9, lone_product_rate(), product_flops / tokens
    print(f"CPU: {machine.cpu()}; setting {args.isa}; {args.steps} steps, {tokens:,} target tokens, {wall:.1f} s")
    print(
        f"products: {per_token / 1e6:.1f} MFLOP per target token, {product_s / total:.0%} of the step, "
        f"at {rate:.0f} GFLOP/s (a lone 3840x1536x1536 product: {lone:.0f} GFLOP/s)"
    )
    print(
        f"target tokens/s: {tokens / wall:,.0f} under the profiler; with nothing but the products "
        f"{rate * 1e9 / per_token:,.0f} at their rate, {lone * 1e9 / per_token:,.0f} at the lone product's"
    )


if __name__ == "__main__":
    main()
