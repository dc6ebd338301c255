"""Benchmark `nmt train`: target tokens/s and peak RSS per model, in fp32 and bf16, with
what ``precision: auto`` picks, on this CPU as it is and with oneDNN limited to AVX2.

Each configuration is a whole `nmt train` process on the multi30k_de_en recipe (Multi30k
de-en prepared by `nmt prep`) for ``--steps`` optimizer steps without validation.
Throughput is the median of the logged windows after the first (warm-up) one; peak RSS
is the child's ``ru_maxrss``. Where bf16 runs at a few hundredths of fp32's speed (no
native bf16 units: AVX2), it is timed over two steps only.

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

import machine

from nmt_cli.train import metrics

CONFIGS = {
    "bahdanau (GRU, input feeding)": [],
    "luong_general (LSTM, input feeding)": ["--set", "model.attention=luong_general", "--set", "model.cell=lstm"],
    "luong_general (GRU, no input feeding)": [
        "--set",
        "model.attention=luong_general",
        "--set",
        "model.input_feeding=false",
    ],
}


def run(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(args)}\n{proc.stderr.read().decode()}")
    return time.perf_counter() - start, usage.ru_maxrss * 1024


def speed(args: argparse.Namespace, isa: str, extra: list[str], precision: str, steps: int) -> dict:
    """Median target tokens/s and peak RSS of one whole `nmt train` process."""
    out = args.work / "model"
    shutil.rmtree(out, ignore_errors=True)
    log_every = args.log_every if steps >= 3 * args.log_every else 1
    _, peak = run(
        [
            sys.executable,
            "-m",
            "nmt_cli",
            "train",
            args.recipe,
            "--data",
            str(args.prep),
            "--out",
            str(out),
            "--set",
            f"train.precision={precision}",
            "--set",
            f"train.max_steps={steps}",
            "--set",
            f"train.log_every={log_every}",
            "--set",
            f"train.valid_every={10 * steps}",
            "--set",
            "train.max_time=",
            "--device",
            args.device,
            *extra,
        ],
        machine.env(isa),
    )
    speeds = [e["tokens_per_s"] for e in metrics.events(out, "train")][1:]
    return {"tokens_per_s": statistics.median(speeds), "peak_rss_gb": peak / 2**30, "steps": steps}


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
    parser.add_argument("--precisions", default="fp32,bf16", help="the columns (fp16: CUDA only)")
    parser.add_argument("--isas", default="native,AVX2", help="of: " + ", ".join(machine.ISAS) + " (CPU only)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()

    rows, precisions = [], args.precisions.split(",")
    for isa in args.isas.split(",") if args.device == "cpu" else ["native"]:
        for name, extra in CONFIGS.items():
            auto = machine.auto_precision(isa, args.recipe, extra)
            row = {"isa": isa, "model": name, "auto": auto["precision"], "probe": auto["why"]}
            for precision in precisions:
                slow = args.device == "cpu" and precision == "bf16" and auto["speedup"] < 0.2
                row[precision] = speed(
                    args, isa, extra, precision, 2 if slow else args.steps
                )  # tens of seconds a step there
            rows.append(row)
            print(
                f"{isa} {name}: auto -> {row['auto']} ({row['probe']}); "
                + ", ".join(f"{p} {row[p]['tokens_per_s']:,.0f}" for p in precisions)
                + " tgt tok/s",
                file=sys.stderr,
            )
    where = machine.cpu() if args.device == "cpu" else torch_device_name()
    print(f"nmt train, {args.recipe}, {args.steps} steps, median of logged windows after warm-up; {where}")
    print("| oneDNN | model | auto picks | " + " | ".join(f"{p} tokens/s, peak RSS" for p in precisions) + " |")
    print("|---|---|---|" + "---|" * len(precisions))
    for r in rows:
        cells = " | ".join(f"{r[p]['tokens_per_s']:,.0f}, {r[p]['peak_rss_gb']:.2f} GB" for p in precisions)
        print(f"| {r['isa']} | {r['model']} | {r['auto']} ({r['probe']}) | {cells} |")
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path(f"bench/results/train-{args.device}.json").write_text(
        json.dumps({"cpu": where, "rows": rows}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
