"""Benchmark data-parallel training: target tokens/s of `nmt train` under torchrun by ranks.

Each configuration is a whole `torchrun --standalone --nproc_per_node N -m nmt_cli train`
on the multi30k_de_en recipe for ``--steps`` optimizer steps without validation (plus one
plain `nmt train` as the baseline). Throughput is the median of the logged windows after
the first (warm-up) one, counted over all ranks' target tokens; the batch per rank stays
``batch_tokens``, so N ranks take N times the tokens a step (weak scaling).

    python bench/bench_distributed.py --ranks 1,2 --threads 1          # CPU, gloo
    python bench/bench_distributed.py --device cuda --ranks 1           # one GPU, nccl
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from nmt_cli.train import metrics


def train(argv: list[str], out: Path, threads: int) -> float:
    """Median target tokens/s of one run's logged windows after the first."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    result = subprocess.run(argv, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(argv)}\n{result.stderr[-3000:]}")
    speeds = [e["tokens_per_s"] for e in metrics.events(out, "train")]
    return statistics.median(speeds[1:] or speeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prep", type=Path, default=Path("work/prep-de-en"))
    parser.add_argument("--recipe", default="recipes/multi30k_de_en.yaml")
    parser.add_argument("--work", type=Path, default=Path("work/bench/distributed"))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--ranks", default="1,2", help="comma-separated numbers of ranks")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank (OMP_NUM_THREADS)")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (nccl)")
    args = parser.parse_args()

    common = [
        args.recipe,
        "--data",
        str(args.prep),
        "--device",
        args.device,
        "--set",
        f"train.max_steps={args.steps}",
        "--set",
        f"train.log_every={args.log_every}",
        "--set",
        f"train.valid_every={10 * args.steps}",
        "--set",
        "train.max_time=",
        "--set",
        f"train.precision={args.precision}",
    ]
    rows = []
    out = args.work / "plain"
    rows.append(
        (
            "nmt train (no torchrun)",
            train([sys.executable, "-m", "nmt_cli", "train", *common, "--out", str(out)], out, args.threads),
        )
    )
    for n in [int(x) for x in args.ranks.split(",")]:
        out = args.work / f"ranks{n}"
        argv = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={n}",
            "-m",
            "nmt_cli",
            "train",
            *common,
            "--out",
            str(out),
        ]
        rows.append((f"torchrun, {n} rank{'s' if n > 1 else ''}", train(argv, out, args.threads)))
    base = rows[0][1]
    print(
        f"nmt train, {args.recipe}, {args.steps} steps, {args.device} {args.precision}, "
        f"{args.threads} thread(s) per rank; "
        "median target tokens/s of logged windows after warm-up"
    )
    print("| run | target tokens/s | vs nmt train |\n|---|---|---|")
    for name, speed in rows:
        print(f"| {name} | {speed:,.0f} | {speed / base:.2f}x |")


if __name__ == "__main__":
    main()
