"""Benchmark `nmt prep`: pairs/s and peak RSS on Multi30k de-en, and on a 10x copy of it.

Each configuration runs as a whole `nmt prep` process (start-up included) ``--repeat``
times into a fresh output directory; the table gives medians. Peak RSS is the child's
``ru_maxrss`` from ``wait4``. Two settings per corpus size:

* ``train spm``: SentencePiece trained with the same ``--spm-sample`` on both sizes, so
  any growth from 1x to 10x would come from the streaming stages;
* ``reuse spm``: the 1x run's model reused (``--spm-model``): streaming stages only.

Memory is flat when the 10x rows' peak RSS is close to the 1x rows'.

    python bench/bench_prep.py --multi30k ../shared/data/multi30k --work work/bench
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def run(args: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(args)}\n{proc.stderr.read().decode()}")
    return seconds, usage.ru_maxrss * 1024


def make_copies(multi30k: Path, work: Path, times: int) -> Path:
    """``times`` concatenated copies of the training split (plain text), once."""
    prefix = work / f"x{times}" / "train"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for lang in ("de", "en"):
        target = Path(f"{prefix}.{lang}")
        if not target.exists():
            text = gzip.open(multi30k / f"train.{lang}.gz", "rb").read()
            target.write_bytes(text * times)
    return prefix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--multi30k", type=Path, default=Path(os.environ.get("MULTI30K_DIR", "../shared/data/multi30k"))
    )
    parser.add_argument("--work", type=Path, default=Path("work/bench"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--times", type=int, default=10, help="copies in the large corpus")
    parser.add_argument("--spm-sample", type=int, default=50_000)
    args = parser.parse_args()

    corpora = {
        "1x": (args.multi30k / "train", 29_000),
        f"{args.times}x": (make_copies(args.multi30k, args.work, args.times), 29_000 * args.times),
    }
    nmt = [
        sys.executable,
        "-m",
        "nmt_cli",
        "prep",
        "--src-lang",
        "de",
        "--tgt-lang",
        "en",
        "--valid",
        str(args.multi30k / "val"),
    ]
    model = args.work / "spm.model"
    rows = []
    for setting in ("train spm", "reuse spm"):
        for name, (prefix, pairs) in corpora.items():
            extra = ["--spm-sample", str(args.spm_sample)] if setting == "train spm" else ["--spm-model", str(model)]
            times, peaks = [], []
            for _ in range(args.repeat):
                out = args.work / "out"
                shutil.rmtree(out, ignore_errors=True)
                seconds, peak = run([*nmt, "--train", str(prefix), "--out", str(out), *extra])
                times.append(seconds)
                peaks.append(peak)
                if setting == "train spm" and name == "1x" and not model.exists():
                    shutil.copy(out / "spm.model", model)
            median = statistics.median(times)
            rows.append(
                {
                    "setting": setting,
                    "corpus": name,
                    "pairs": pairs,
                    "seconds": median,
                    "pairs_per_s": pairs / median,
                    "peak_rss_mb": statistics.median(peaks) / 2**20,
                    "runs": args.repeat,
                }
            )
    print(
        f"nmt prep, Multi30k de-en train (+ val), median of {args.repeat} whole-process runs, "
        f"--spm-sample {args.spm_sample}, {os.cpu_count()} CPUs"
    )
    print("| setting | corpus | pairs | seconds | pairs/s | peak RSS |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['setting']} | {r['corpus']} | {r['pairs']:,} | {r['seconds']:.1f} | "
            f"{r['pairs_per_s']:,.0f} | {r['peak_rss_mb']:.0f} MB |"
        )
    for setting in ("train spm", "reuse spm"):
        small, large = (r["peak_rss_mb"] for r in rows if r["setting"] == setting)
        print(f"{setting}: peak RSS {args.times}x / 1x = {large / small:.2f}")
    results = Path("bench/results")
    results.mkdir(parents=True, exist_ok=True)
    (results / "prep.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
