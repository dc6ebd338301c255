"""Benchmark `nmt translate`: whole-process time, sentences/s, target tokens/s, peak RSS and
BLEU, for greedy and beam 5 with the default precision (auto) and in fp32, bf16 and int8,
from a file and streamed through stdin, on this CPU as it is and with oneDNN limited to
AVX2 (``machine.py``).

Each row is the median of ``--repeats`` runs of the whole process (start-up included), on
test_2016_flickr (1,000 lines) with a multi30k_de_en checkpoint. bf16 is skipped where it
runs at under a fifth of fp32's speed (no native bf16 units: minutes per run).

    python bench/bench_translate.py --model work/demo-de-en/best.pt
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import machine
import sacrebleu

MODES = {"auto": [], "fp32": ["--precision", "fp32"], "bf16": ["--precision", "bf16"], "int8": ["--quantize", "int8"]}


def run(args: list[str], stdin_path: Path | None, env: dict[str, str]) -> tuple[float, int, str]:
    """Seconds, peak RSS (bytes) and stdout of one process."""
    start = time.perf_counter()
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    proc = subprocess.Popen(args, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(args)}\n{err.decode()}")
    return seconds, usage.ru_maxrss * 1024, out.decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("MULTI30K_DIR", "../shared/data/multi30k")))
    parser.add_argument("--split", default="test_2016_flickr")
    parser.add_argument("--pair", default="de-en")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", default="auto,fp32,bf16,int8")
    parser.add_argument("--isas", default="native,AVX2", help="of: " + ", ".join(machine.ISAS))
    parser.add_argument(
        "--recipe", default="recipes/multi30k_de_en.yaml", help="the model's recipe, for the bf16 probe"
    )
    parser.add_argument("--beams", default="1,5")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    src_lang, tgt_lang = args.pair.split("-")
    work = Path("work/bench/translate")
    work.mkdir(parents=True, exist_ok=True)
    source = work / f"{args.split}.{src_lang}"
    with gzip.open(args.data / f"{args.split}.{src_lang}.gz", "rb") as f:
        source.write_bytes(f.read())
    with gzip.open(args.data / f"{args.split}.{tgt_lang}.gz", "rt", encoding="utf-8") as f:
        refs = f.read().splitlines()

    rows = []
    for isa in args.isas.split(","):
        speedup = machine.auto_precision(isa, args.recipe, [])["speedup"]
        for beam in map(int, args.beams.split(",")):
            for mode in args.modes.split(","):
                if mode == "bf16" and speedup < 0.2:
                    print(f"{isa} bf16: skipped (bf16 {speedup:.2f}x fp32 here)", file=sys.stderr)
                    continue
                for how in ("file", "stdin"):
                    rows.append(measure(args, isa, beam, mode, how, source, refs))
    print(
        f"nmt translate, {args.split} ({len(refs)} lines), {args.model}, whole process, median of {args.repeats}; "
        f"{machine.cpu()}"
    )
    print("| oneDNN | search | precision | input | seconds | sentences/s | target words/s | peak RSS | BLEU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['isa']} | {r['search']} | {r['mode']} | {r['input']} | {r['seconds']:.2f} | "
            f"{r['sentences_per_s']:,.0f} | "
            f"{r['words_per_s']:,.0f} | {r['peak_rss_gb']:.2f} GB | {r['bleu']:.2f} |"
        )
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/translate.json").write_text(json.dumps(rows, indent=2) + "\n")


def measure(args: argparse.Namespace, isa: str, beam: int, mode: str, how: str, source: Path, refs: list[str]) -> dict:
    """One row: the median of ``args.repeats`` whole ``nmt translate`` processes."""
    cmd = [
        sys.executable,
        "-m",
        "nmt_cli",
        "translate",
        "-m",
        str(args.model),
        "--beam",
        str(beam),
        "-q",
        *MODES[mode],
        *(["--threads", str(args.threads)] if args.threads else []),
    ]
    if how == "file":
        cmd.append(str(source))
    runs = [run(cmd, source if how == "stdin" else None, machine.env(isa)) for _ in range(args.repeats)]
    seconds = statistics.median(r[0] for r in runs)
    hyps = runs[0][2].splitlines()
    assert len(hyps) == len(refs), f"{len(hyps)} output lines for {len(refs)} inputs"
    tokens = sum(len(h.split()) for h in hyps)
    row = {
        "isa": isa,
        "search": "greedy" if beam == 1 else f"beam {beam}",
        "mode": mode,
        "input": how,
        "seconds": seconds,
        "sentences_per_s": len(refs) / seconds,
        "words_per_s": tokens / seconds,
        "peak_rss_gb": max(r[1] for r in runs) / 2**30,
        "bleu": sacrebleu.corpus_bleu(hyps, [refs]).score,
    }
    print(
        f"{isa} {row['search']} {mode} {how}: {seconds:.2f}s {row['peak_rss_gb']:.2f} GB BLEU {row['bleu']:.2f}",
        file=sys.stderr,
    )
    return row


if __name__ == "__main__":
    main()
