"""Quality of a training run: validation BLEU against minutes, and test BLEU at budgets.

For each wall-clock budget (minutes of training), takes the checkpoint a run with
``max_time`` = budget would have kept as best.pt (the best validation BLEU among the
validations within the budget; the run must keep enough step checkpoints, e.g.
``--set train.keep_last=1000``), translates the test split's raw text with `nmt translate`
greedily and with beam 5, and scores it with sacreBLEU (cased, detokenized, against the
raw references).

    python bench/bench_quality.py --model work/runs/de-en --prep work/prep-de-en --minutes 20,60
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import sacrebleu
import yaml

from nmt_cli import checkpoint
from nmt_cli.train import metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--prep", type=Path, required=True)
    parser.add_argument("--split", default="test_2016_flickr")
    parser.add_argument("--minutes", default="20,60")
    args = parser.parse_args()

    valid = metrics.events(args.model, "valid")
    print("validation curve: minutes, step, BLEU, chrF, ppl")
    for e in valid:
        print(f"  {e['elapsed'] / 60:6.1f}  {e['step']:6d}  {e['bleu']:6.2f}  {e['chrf']:6.2f}  {e['ppl']:7.2f}")
    langs = yaml.safe_load((args.model / "config.yaml").read_text())["data"]
    source = args.prep / f"{args.split}.{langs['src_lang']}.txt"
    refs = (args.prep / f"{args.split}.{langs['tgt_lang']}.txt").read_text(encoding="utf-8").splitlines()
    print(f"\n| budget | step | valid BLEU | {args.split} BLEU greedy / beam 5 | chrF greedy / beam 5 |")
    print("|---|---|---|---|---|")
    for minutes in (float(m) for m in args.minutes.split(",")):
        within = [e for e in valid if e["elapsed"] <= minutes * 60 + 30]
        if not within:
            print(f"| {minutes:g} min | - | no validation within the budget | | |")
            continue
        best = max(within, key=lambda e: e["bleu"])
        path = checkpoint.step_path(args.model, best["step"])
        if not path.exists():
            print(f"| {minutes:g} min | {best['step']} | {best['bleu']:.2f} | {path.name} was pruned | |")
            continue
        bleu, chrf = [], []
        for beam in (1, 5):
            out = subprocess.run(
                [sys.executable, "-m", "nmt_cli", "translate", "-q", "-m", str(path), "--beam", str(beam), str(source)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.splitlines()
            bleu.append(sacrebleu.corpus_bleu(out, [refs]).score)
            chrf.append(sacrebleu.corpus_chrf(out, [refs]).score)
        print(
            f"| {minutes:g} min | {best['step']} | {best['bleu']:.2f} | {bleu[0]:.2f} / {bleu[1]:.2f} | "
            f"{chrf[0]:.2f} / {chrf[1]:.2f} |"
        )


if __name__ == "__main__":
    main()
