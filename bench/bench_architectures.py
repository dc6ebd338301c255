"""The course's comparison, measured: architectures on Multi30k de-en, same time budget.

Each entry is a ``cell:attention`` pair (the multi30k_de_en recipe with only those two
keys changed; local attention with ``window: 5``) or a recipe file (e.g. one of
``recipes/course/``); ``ENTRY#K`` runs an entry again under another name (run-to-run
noise). Each is trained for ``--minutes`` of wall-clock time, then its best.pt translates
the test split greedily and sacreBLEU scores it. A row is appended to ``--results`` as
soon as its run is done, and an entry whose model directory already holds a finished run
is only re-scored, so the script can be stopped and started again.

``--jobs N --threads T`` trains N entries at a time with T torch threads each. On a
2-core machine, ``--jobs 3 --threads 1`` gives every run the same share of the CPU (two
thirds of a core) as long as the number of entries is a multiple of 3, and the whole
grid the same conditions, at a third of the wall-clock time of one run at a time.

    python bench/bench_architectures.py --runs rnn:bahdanau,gru:luong_local,recipes/course/multihead.yaml --minutes 20
    python bench/bench_architectures.py --grid --jobs 3 --threads 1 --minutes 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sacrebleu
import yaml

from nmt_cli.train import metrics

LOCAL_WINDOW = 5  # Multi30k sentences are short (about 16 subwords): D = 10 would cover most of them
CELLS = ("gru", "lstm", "rnn")
ATTENTIONS = ("bahdanau", "luong_general", "luong_dot", "luong_local", "luong_local_m")
GRID_EXTRA = ("recipes/course/multihead.yaml", "recipes/course/scheduled_sampling.yaml", "gru:bahdanau#2")


def run_entry(entry: str, args: argparse.Namespace) -> str:
    """Train (unless done) and score one entry; its results row."""
    entry, _, repeat = entry.partition("#")
    if entry.endswith(".yaml"):
        recipe, name, sets = entry, Path(entry).stem, []
    else:
        cell, attention = entry.split(":")
        recipe, name, sets = args.recipe, f"{cell}-{attention}", [f"model.cell={cell}", f"model.attention={attention}"]
        if attention.startswith("luong_local"):
            sets.append(f"model.window={LOCAL_WINDOW}")
    name += f"-{repeat}" if repeat else ""
    out = args.work / name
    threads = ["--threads", str(args.threads)] if args.threads else []
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)} if args.threads else None
    if not (out / "best.pt").exists():
        argv = [sys.executable, "-m", "nmt_cli", "train", recipe, "--data", str(args.prep), "--out", str(out), *threads]
        sets.append(f"train.max_time={args.minutes:g}m")
        subprocess.run(argv + [x for s in sets for x in ("--set", s)], check=True, stdout=subprocess.DEVNULL, env=env)
    events = metrics.read(out)
    speeds = [e["tokens_per_s"] for e in events if e["event"] == "train"]
    speed = f"{statistics.median(speeds):,.0f}" if speeds else "-"  # "-": a run too short for one log line
    valid = metrics.best_validation(out)
    source = args.prep / f"{args.split}.de.txt"
    refs = (args.prep / f"{args.split}.en.txt").read_text(encoding="utf-8").splitlines()
    hyps = subprocess.run(
        [
            sys.executable,
            "-m",
            "nmt_cli",
            "translate",
            "-q",
            "-m",
            str(out / "best.pt"),
            "--beam",
            "1",
            *threads,
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout.splitlines()
    test = sacrebleu.corpus_bleu(hyps, [refs]).score
    model = yaml.safe_load((out / "config.yaml").read_text())["model"]
    steps = max(e["step"] for e in events)
    return f"| {name} | {model['cell']} | {model['attention']} | {steps} | {speed} | {valid['bleu']:.2f} | {test:.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs",
        default="gru:bahdanau,lstm:bahdanau,rnn:bahdanau,gru:luong_general,gru:luong_local,gru:luong_local_m",
        help="comma-separated cell:attention pairs and recipe files",
    )
    parser.add_argument(
        "--grid",
        action="store_true",
        help="every cell x attention pair, then the course recipes and a repeat of gru:bahdanau (instead of --runs)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="entries trained at a time")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (0: torch's default)")
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--prep", type=Path, default=Path("work/prep-de-en"))
    parser.add_argument("--recipe", default="recipes/multi30k_de_en.yaml")
    parser.add_argument("--split", default="test_2016_flickr")
    parser.add_argument("--work", type=Path, default=Path("work/architectures"))
    parser.add_argument("--results", type=Path, default=Path("work/architectures/results.md"))
    args = parser.parse_args()
    args.results.parent.mkdir(parents=True, exist_ok=True)
    if not args.results.exists():
        args.results.write_text(
            f"{args.minutes:g} minutes each, {args.jobs} at a time, "
            f"{args.threads or 'default'} thread(s) each, {args.recipe}; test = {args.split}, greedy, sacreBLEU\n"
            "| run | cell | attention | steps | target tokens/s | best valid BLEU | test BLEU |\n"
            "|---|---|---|---|---|---|---|\n"
        )
    entries = [f"{c}:{a}" for a in ATTENTIONS for c in CELLS] + list(GRID_EXTRA) if args.grid else args.runs.split(",")
    lock = threading.Lock()

    def run_and_record(entry: str) -> None:
        row = run_entry(entry, args)
        with lock:
            print(row, flush=True)
            with open(args.results, "a", encoding="utf-8") as f:
                f.write(row + "\n")

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(run_and_record, entries))  # list(): a failed run's error surfaces here


if __name__ == "__main__":
    main()
