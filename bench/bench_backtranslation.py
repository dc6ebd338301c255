"""Back-translation on Multi30k, measured: does synthetic German from English text help de->en?

Multi30k has no separate monolingual text, so the training pairs are split in two halves:
A (the first 14,500 pairs) is the parallel data, and of B (the last 14,500) only the
English side is used as "monolingual" text, except in the upper-bound row. Every de->en
model uses A's subword model, the de->en recipe and the same time budget:

1. en->de on A; it translates B.en into synthetic German, with beam 5 and with sampling;
2. de->en on A alone (the baseline); on A + synthetic B (beam); on A + synthetic B
   (sampled); on A + real B (the upper bound); and A's model fine-tuned (``--init``) for one
   more budget on A + synthetic B (beam), and on A alone (the control for those extra steps).

Each model translates test_2016_flickr greedily and with beam 5; ``nmt score --paired-bs``
compares each row with "A alone". The budget of a run is a number of optimizer steps (the
``budget`` schedule decays the rate over them), so that runs sharing a machine get the
same training whatever the load; one thread each, two (or ``--jobs``) at a time. Every
command is printed as it runs, so the table can be reproduced by hand.

    python bench/bench_backtranslation.py --multi30k ../shared/data/multi30k --work work/bt --steps 400
"""

from __future__ import annotations

import argparse
import gzip
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

NMT = [sys.executable, "-m", "nmt_cli"]
HALF = 14_500
# en->de too trains the de->en recipe's GRU + Bahdanau model (the languages come from the
# prep directory): within a few hundred steps it learns far faster than the 2-hour LSTM
# recipe of multi30k_en_de.yaml, and the synthetic German is only as good as that model.
RECIPES = {"en-de": "recipes/multi30k_de_en.yaml", "de-en": "recipes/multi30k_de_en.yaml"}


def run(*words: str | Path, out: Path | None = None) -> str:
    """Run an nmt command (printed first), its stdout to ``out`` if given; returns stdout."""
    argv = [str(w) for w in words]
    shown = shlex.join(["nmt", *argv]) + (f" > {out}" if out else "")
    print(f"$ {shown}", flush=True)
    done = subprocess.run(NMT + argv, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"failed ({done.returncode}): {shown}\n{done.stderr[-2000:]}")
    if out:
        out.write_text(done.stdout, encoding="utf-8")
    return done.stdout


def lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def write(path: Path, text: list[str]) -> None:
    path.write_text("".join(t + "\n" for t in text), encoding="utf-8")


def prep(work: Path, corpus: Path, name: str, src: str, tgt: str, *extra: str) -> Path:
    pair = f"{src}-{tgt}"
    out = work / f"prep-{pair}-{name}"
    if not (out / "manifest.json").exists():
        run("prep", "--recipe", RECIPES[pair], "-s", src, "-t", tgt, "--train", work / name,
            "--valid", corpus / "val", "--test", corpus / "test_2016_flickr", "--out", out, *extra)  # fmt: skip
    return out


def train(work: Path, name: str, pair: str, data: Path, steps: int, *extra: str, threads: int = 1) -> Path:
    out = work / f"{pair}-{name}"
    if not (out / "best.pt").exists():
        run("train", RECIPES[pair], "--data", data, "--out", out, "--threads", str(threads),
            "--set", "train.max_time=", "--set", f"train.max_steps={steps}", *extra)  # fmt: skip
    return out / "best.pt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--multi30k", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("work/bt"))
    parser.add_argument("--steps", type=int, default=400, help="training budget of each run")
    parser.add_argument("--bt-steps", type=int, default=800, help="training budget of the en->de model")
    parser.add_argument("--jobs", type=int, default=4, help="de->en trainings at a time (one thread each)")
    args = parser.parse_args()
    work, corpus, steps = args.work, args.multi30k, args.steps
    work.mkdir(parents=True, exist_ok=True)

    train_text = {lang: lines(corpus / f"train.{lang}.gz") for lang in ("de", "en")}
    for lang, text in train_text.items():
        write(work / f"A.{lang}", text[:HALF])
        write(work / f"B.{lang}", text[HALF:])
    prep_en_de, prep_de_en = prep(work, corpus, "A", "en", "de"), prep(work, corpus, "A", "de", "en")

    with ThreadPoolExecutor(2) as pool:  # both directions on A; the en->de model is a tool, not a row
        en_de = pool.submit(train, work, "A", "en-de", prep_en_de, args.bt_steps, threads=2)
        baseline = pool.submit(train, work, "A", "de-en", prep_de_en, steps)
        en_de, baseline = en_de.result(), baseline.result()

    synthetic = {"beam": ["--beam", "5"], "sampled": ["--sampling", "--seed", "1"]}
    for kind, options in synthetic.items():
        path = work / f"B.synthetic-{kind}.de"
        if not path.exists():
            run("translate", "-q", "-m", en_de, *options, work / "B.en", out=path)
        write(work / f"A+{kind}.de", train_text["de"][:HALF] + lines(path))
        write(work / f"A+{kind}.en", train_text["en"])
    write(work / "A+real.de", train_text["de"])
    write(work / "A+real.en", train_text["en"])
    # the same subwords as the baseline, taken from its checkpoint (what --init requires)
    preps = {
        k: prep(work, corpus, f"A+{k}", "de", "en", "--spm-model", str(baseline)) for k in ("beam", "sampled", "real")
    }

    with ThreadPoolExecutor(args.jobs) as pool:  # the four other de->en runs
        jobs = {f"A + synthetic B ({k})": pool.submit(train, work, f"A+{k}", "de-en", preps[k], steps)
                for k in ("beam", "sampled")}  # fmt: skip
        jobs["A + real B (upper bound)"] = pool.submit(train, work, "A+real", "de-en", preps["real"], steps)
        jobs["A, then fine-tuned on A + synthetic B (beam)"] = pool.submit(
            train, work, "A-then-A+beam", "de-en", preps["beam"], steps, "--init", str(baseline)
        )
        jobs["A, then fine-tuned on A (control: as many steps)"] = pool.submit(
            train, work, "A-then-A", "de-en", prep_de_en, steps, "--init", str(baseline)
        )
        models = {"A alone": baseline, **{name: job.result() for name, job in jobs.items()}}

    test = prep_de_en / "test_2016_flickr"
    reference = f"{test}.en.txt"
    print(f"\nde->en, {steps} steps a run; test_2016_flickr, sacreBLEU (cased, detokenized)")
    for beam in (1, 5):
        hyps = []
        for model in models.values():
            hyp = model.parent / f"test.beam{beam}.en"
            run("translate", "-q", "-m", model, "--beam", str(beam), f"{test}.de.txt", out=hyp)
            hyps.append(hyp)
        print(f"\n{'greedy' if beam == 1 else 'beam 5'} ({', '.join(models)}):")
        print(run("score", "-r", reference, *hyps, "--paired-bs", "--metrics", "bleu,chrf"))


if __name__ == "__main__":
    main()
