"""Benchmark `nmt train`: target tokens/s and peak RSS, per attention type and precision.

Each configuration is a whole `nmt train` process on the multi30k_de_en recipe (Multi30k
de-en prepared by `nmt prep`) for ``--steps`` optimizer steps without validation.
Throughput is the median of the logged windows after the first (warm-up) one; peak RSS
is the child's ``ru_maxrss``.

    python bench/bench_train.py --prep work/prep-de-en --steps 60
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from nmt_cli.train import metrics

CONFIGS = {
    "bahdanau (GRU, input feeding)": [],
    "luong_general (LSTM, input feeding)": ["--set", "model.attention=luong_general", "--set", "model.cell=lstm"],
    "luong_general (GRU, no input feeding)": ["--set", "model.attention=luong_general", "--set", "model.input_feeding=false"],
}


def run(args: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(args)}\n{proc.stderr.read().decode()}")
    return time.perf_counter() - start, usage.ru_maxrss * 1024


def torch_device_name() -> str:
    import torch

    return torch.cuda.get_device_name()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prep", type=Path, default=Path("work/prep-de-en"))
    parser.add_argument("--recipe", default="recipes/multi30k_de_en.yaml")
    parser.add_argument("--work", type=Path, default=Path("work/bench/train"))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()

    rows = []
    for name, extra in CONFIGS.items():
        for precision in args.precisions.split(","):
            out = args.work / "model"
            shutil.rmtree(out, ignore_errors=True)
            seconds, peak = run([
                sys.executable, "-m", "nmt_cli", "train", args.recipe, "--data", str(args.prep), "--out", str(out),
                "--set", f"train.precision={precision}", "--set", f"train.max_steps={args.steps}",
                "--set", f"train.log_every={args.log_every}", "--set", f"train.valid_every={10 * args.steps}",
                "--set", "train.max_time=", "--device", args.device, *extra,
            ])
            speeds = [e["tokens_per_s"] for e in metrics.events(out, "train")][1:]
            rows.append({"model": name, "precision": precision, "tokens_per_s": statistics.median(speeds),
                         "peak_rss_gb": peak / 2**30, "seconds": seconds, "steps": args.steps})
            print(f"{name} {precision}: {rows[-1]['tokens_per_s']:,.0f} tgt tok/s, peak RSS {rows[-1]['peak_rss_gb']:.2f} GB",
                  file=sys.stderr)
    where = f"{os.cpu_count()} CPUs" if args.device == "cpu" else torch_device_name()
    print(f"nmt train, {args.recipe}, {args.steps} steps, median of logged windows after warm-up, {where}")
    print("| model | precision | target tokens/s | peak RSS |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['precision']} | {r['tokens_per_s']:,.0f} | {r['peak_rss_gb']:.2f} GB |")
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path(f"bench/results/train-{args.device}.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
