"""The ``nmt`` command line. Each command passes its flags to one function of its stage and
prints the summary that function returns on stderr; the choices and defaults of config keys
come from ``config.py``; errors become one line and an exit code in ``runtime.py``. Importing
this module loads neither torch nor a stage's dependencies, and changes nothing in the process.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

import typer
from typer import Argument, Option

from nmt_cli import __version__, config, runtime
from nmt_cli.config import Device, OnInvalid, Precision, Quantize, SpmType
from nmt_cli.info import show
from nmt_cli.plot import plot as draw
from nmt_cli.progress import Reporter, TrainDisplay

EXAMPLES = {
    "prep": "nmt prep -s de -t en --train D/train --valid D/val --test D/test_2016_flickr --out work/prep",
    "train": "nmt train recipes/multi30k_de_en.yaml --data work/prep --out work/model",
    "translate": "cat test.de | nmt translate -m work/model/best.pt --beam 5 > test.hyp.en",
    "score": "nmt score -r test.en test.hyp.en --metrics bleu,chrf,ter",
}


def _option(section: str, *decls: str, help: str) -> Any:
    """A flag for config key ``section.KEY`` (KEY: its long name), None unless given; its help shows the default."""
    name, _, negative = decls[0].partition("/")
    default = getattr(getattr(config.Config(), section), name[2:].replace("-", "_"))
    shown = (name if default else negative)[2:] if negative else default
    return Option(None, *decls, help=f"{help} \\[default: {shown}]" if shown != "" else help)


_data, _decode = functools.partial(_option, "data"), functools.partial(_option, "decode")
app = typer.Typer(
    cls=runtime.Group,
    name="nmt",
    help="nmt: neural machine translation from the command line."
    + "".join(f"\n\n{k}: {v}" for k, v in EXAMPLES.items()),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
DEVICE = Option("auto", "--device", help="Where torch runs; auto: cuda where present, else cpu.")
THREADS = Option(0, "--threads", callback=runtime.set_threads, help="CPU threads for torch (0: torch's default).")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nmt {__version__}")
        raise typer.Exit()


@app.callback()
def nmt(
    version: bool = Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    debug: bool = Option(False, "--debug", help="Show tracebacks instead of one-line errors."),
) -> None:
    """nmt's own options."""


@app.command(epilog=f"Example: {EXAMPLES['prep']}")
def prep(
    out: Path = Option(..., "--out", "-o", help="Output directory (built under a temporary name, then renamed)."),
    src_lang: str | None = _data("--src-lang", "-s", help="Source language suffix, e.g. de."),
    tgt_lang: str | None = _data("--tgt-lang", "-t", help="Target language suffix, e.g. en."),
    train: str | None = _data("--train", help="Training prefix: reads PREFIX.SRC and PREFIX.TGT (or .gz)."),
    valid: str | None = _data("--valid", help="Validation prefix (never filtered)."),
    test: list[str] | None = Option(None, "--test", help="Test prefix (repeatable; never filtered)."),
    recipe: Path | None = Option(None, "--recipe", "-r", help="YAML recipe; its data: section sets defaults."),
    assignments: list[str] | None = Option(None, "--set", help="Override a recipe key: data.KEY=VALUE (repeatable)."),
    vocab_size: int | None = _data("--vocab-size", help="Subword vocabulary size per model."),
    spm_type: SpmType | None = _data("--spm-type", help="SentencePiece algorithm."),
    joint: bool | None = _data("--joint/--separate", help="One subword model for both languages, or one each."),
    character_coverage: float | None = _data("--character-coverage", help="Share of characters the model covers."),
    spm_sample: int | None = _data("--spm-sample", help="Sentences sampled to train SentencePiece."),
    spm_model: str | None = _data("--spm-model", help="Reuse this joint SentencePiece model (or a checkpoint's)."),
    src_spm_model: str | None = _data(
        "--src-spm-model", help="Reuse this source SentencePiece model (or a checkpoint's)."
    ),
    tgt_spm_model: str | None = _data(
        "--tgt-spm-model", help="Reuse this target SentencePiece model (or a checkpoint's)."
    ),
    max_len: int | None = _data("--max-len", help="Drop training pairs over this many subwords on a side; 0: off."),
    max_ratio: float | None = _data("--max-ratio", help="Drop training pairs whose length ratio exceeds this; 0: off."),
    dedup: bool | None = _data("--dedup/--no-dedup", help="Drop exact duplicate training pairs."),
    nfkc: bool | None = _data("--nfkc/--no-nfkc", help="Unicode NFKC normalization."),
    whitespace: bool | None = _data("--whitespace/--no-whitespace", help="Strip and collapse whitespace."),
    drop_empty: bool | None = _data("--drop-empty/--keep-empty", help="Drop training pairs with an empty side."),
    on_invalid_utf8: OnInvalid | None = _data("--on-invalid-utf8", help="Invalid UTF-8: stop, or replace with U+FFFD."),
    seed: int | None = _data("--seed", help="Seed for SentencePiece's sampling."),
    force: bool = Option(False, "--force", help="Replace an existing prep of other inputs or options."),
) -> None:
    """Clean parallel text, learn subwords, write memory-mappable ids and a manifest."""
    from nmt_cli.prep import prepare

    data = dict(src_lang=src_lang, tgt_lang=tgt_lang, train=train, valid=valid, test=test or None, seed=seed)
    data |= dict(nfkc=nfkc, whitespace=whitespace, drop_empty=drop_empty, dedup=dedup, on_invalid_utf8=on_invalid_utf8)
    data |= dict(max_len=max_len, max_ratio=max_ratio, spm_type=spm_type, joint=joint, vocab_size=vocab_size)
    data |= dict(character_coverage=character_coverage, spm_sample=spm_sample, spm_model=spm_model)
    data |= dict(src_spm_model=src_spm_model, tgt_spm_model=tgt_spm_model)
    cfg = config.apply_overrides(config.load_recipe(recipe) if recipe else config.Config(), assignments or [])
    typer.echo(prepare.prepare(config.with_values(cfg, "data", data).data, out, force, Reporter()).summary, err=True)


@app.command(epilog=f"Example: {EXAMPLES['train']}")
def train(
    recipe: Path = Argument(..., help="YAML recipe (data:, model:, train: sections)."),
    data: Path = Option(..., "--data", "-d", help="Prep directory written by `nmt prep`."),
    out: Path = Option(..., "--out", "-o", help="Model directory: checkpoints, metrics.jsonl, config.yaml."),
    assignments: list[str] | None = Option(None, "--set", help="Set a recipe key: SECTION.KEY=VALUE (repeatable)."),
    resume: bool = Option(False, "--resume", help="Continue from the newest checkpoint in --out."),
    init: Path | None = Option(None, "--init", help="Start a new run from this checkpoint's weights (fine-tuning)."),
    device: Device = DEVICE,
    threads: int = THREADS,
) -> None:
    """Train an attentional encoder-decoder from a YAML recipe."""
    from nmt_cli.train import distributed, loop, stopping

    cfg = config.apply_overrides(config.load_recipe(recipe), assignments or [])
    main_rank = distributed.from_env().main  # under torchrun, rank 0 alone shows progress
    with TrainDisplay(enabled=None if main_rank else False) as display:
        progress = loop.train(cfg, data, out, resume, device, display, init)
    if progress.stop_reason.startswith("signal"):
        if main_rank:
            again = stopping.resume_command(recipe, data, out, assignments or [], threads, device)
            typer.echo(f"nmt train: checkpoint written; continue with: {again}", err=True)
        raise typer.Exit(130)


@app.command(epilog="Example: nmt average work/model -o work/model/averaged.pt")
def average(
    inputs: list[Path] = Argument(..., help="Checkpoints of one run, oldest first, or one model directory."),
    last: int | None = Option(None, "--last", "-n", help="A model directory's newest N checkpoints \\[default: all]."),
    out: Path = Option(..., "--output", "-o", help="The averaged checkpoint to write (for translating, not resuming)."),
    force: bool = Option(False, "--force", help="Average checkpoints of different training runs (of one model) too."),
) -> None:
    """Average the weights of several checkpoints of one run into one (usually a better translator)."""
    from nmt_cli.train.average import write

    typer.echo(write(inputs, out, last, force), err=True)


@app.command(epilog=f"Example: {EXAMPLES['translate']}")
def translate(
    input: str = Argument("-", help="Raw source text, one sentence a line (plain or .gz); - for stdin."),
    model: list[Path] = Option(..., "--model", "-m", help="Checkpoint written by `nmt train`; repeat: an ensemble."),
    output: str = Option("-", "--output", "-o", help="Translations, one line per input line; - for stdout."),
    weights: str | None = Option(None, "--weights", help="Ensemble weights, e.g. 0.5,0.3,0.2 \\[default: equal]."),
    prefix: Path | None = Option(None, "--prefix", help="Target prefixes, one a line, that outputs begin with."),
    beam: int | None = _decode("--beam", "-b", help="Beam size; 1 is greedy search."),
    nbest: int | None = _decode("--nbest", help="Write N hypotheses a line as TSV: line (from 0), rank, score, text."),
    alpha: float | None = _decode("--alpha", help="GNMT length penalty exponent; 0: off."),
    beta: float | None = _decode("--beta", help="GNMT coverage penalty weight; 0: off."),
    max_len_a: float | None = _decode("--max-len-a", help="Output at most A*source_length + B subwords."),
    max_len_b: int | None = _decode("--max-len-b", help="See --max-len-a."),
    batch_size: int | None = _decode("--batch-size", help="Sentences per batch; 0: 160 // beam (flat memory)."),
    batch_tokens: int | None = _decode("--batch-tokens", help="Source subwords per batch (padded); 0: no limit."),
    replace_unk: bool | None = _decode("--replace-unk/--no-replace-unk", help="UNK: the most attended source subword."),
    hard_attention: bool | None = _decode("--hard-attention/--soft-attention", help="Diagnostic: argmax attention."),
    precision: Precision | None = _decode("--precision", help="auto: bf16 if fast here, else int8 (x86) or fp32."),
    quantize: Quantize | None = _decode("--quantize", help="int8 products (CPU); auto takes them where bf16 is slow."),
    sampling: bool | None = _decode("--sampling/--no-sampling", help="Draw each word from the model's distribution."),
    topk: int | None = _decode("--topk", help="Sampling: from the K most probable words; 0: all."),
    topp: float | None = _decode("--topp", help="Sampling: from the most probable words of mass P; 1: all."),
    temperature: float | None = _decode("--temperature", help="Sampling: p ∝ exp(score / T)."),
    seed: int | None = _decode("--seed", help="Sampling: the same seed, the same output."),
    scores: bool = Option(False, "--scores", help="Append each translation's log-probability after a tab."),
    alignments: Path | None = Option(None, "--alignments", help="Write word alignments (Pharaoh i-j) to this file."),
    attention_plot: Path | None = Option(None, "--attention-plot", help="Write PNG attention heatmaps in this folder."),
    plot_max: int = Option(10, "--plot-max", min=0, help="Sentences plotted or shown at most."),
    show_attention: bool = Option(False, "--show-attention", help="Print each sentence's attention grid on stderr."),
    device: Device = DEVICE,
    threads: int = THREADS,
    quiet: bool = Option(False, "--quiet", "-q", help="No summary line on stderr."),
) -> None:
    """Translate raw text with greedy or beam search, streaming: one output line per input line.
    Search flags default to the checkpoint's decode: section, else to the defaults shown."""
    from nmt_cli.decode.translate import Outputs, run

    decode = dict(beam=beam, nbest=nbest, alpha=alpha, beta=beta, max_len_a=max_len_a, max_len_b=max_len_b)
    decode |= dict(batch_size=batch_size, batch_tokens=batch_tokens, replace_unk=replace_unk)
    decode |= dict(hard_attention=hard_attention, precision=precision, quantize=quantize)
    decode |= dict(sampling=sampling, topk=topk, topp=topp, temperature=temperature, seed=seed)
    outputs = Outputs(scores, None, attention_plot, plot_max, show_attention)
    result = run(model, input, output, decode, device, outputs, alignments, prefix, weights)
    if not quiet:
        typer.echo(result.summary, err=True)


@app.command(epilog=f"Example: {EXAMPLES['score']}")
def score(
    hypotheses: list[str] | None = Argument(None, help="Hypothesis files, one system each; - or none: stdin."),
    references: list[str] = Option(..., "--reference", "-r", help="Reference file (repeat for several references)."),
    metrics: str = Option("bleu,chrf", "--metrics", "-m", help="Comma-separated: bleu, chrf, ter."),
    tokenize: str | None = Option(None, "--tokenize", help="BLEU's tokenizer: 13a, none, zh, intl... \\[default: 13a]"),
    lowercase: bool = Option(False, "--lowercase", "-lc", help="Case-insensitive scores."),
    chrf_word_order: int = Option(0, "--chrf-word-order", min=0, help="chrF word n-gram order; 2 gives chrF++."),
    fmt: Literal["text", "json", "tsv"] = Option("text", "--format", "-f", help="A table, JSON, or TSV rows."),
    confidence: bool = Option(False, "--confidence", help="95% confidence intervals by bootstrap resampling."),
    paired_bs: bool = Option(False, "--paired-bs", help="Paired bootstrap resampling: each system against the first."),
    paired_ar: bool = Option(False, "--paired-ar", help="Paired approximate randomization: each against the first."),
    samples: int = Option(0, "--samples", min=0, help="Resamples or trials; 0: sacrebleu's 1000 / 10000."),
    sentence: bool = Option(False, "--sentence", help="Per-line sentence BLEU and chrF (TSV, or JSON lines)."),
    worst: int = Option(0, "--worst", min=0, help="List the K lines with the lowest sentence BLEU."),
    src: str | None = Option(None, "--src", help="Source text: shown by --worst; read by --model."),
    model: list[Path] | None = Option(
        None, "--model", help="Score the references under this checkpoint (repeat: an ensemble); needs --src."
    ),
    weights: str | None = Option(None, "--weights", help="--model ensemble weights, e.g. 0.5,0.5 \\[default: equal]."),
    batch_size: int = Option(64, "--batch-size", min=1, help="--model: sentences per batch."),
    device: Device = DEVICE,
) -> None:
    """Score translations with sacrebleu (BLEU, chrF, TER), test significance, or score references under a model."""
    from nmt_cli import score as scoring

    if model:
        typer.echo(scoring.forced(model, src, references, fmt, batch_size, device, weights), err=True)
        return
    paired = scoring.paired_test(paired_bs, paired_ar)
    opts = scoring.Options(
        scoring.parse_metrics(metrics), tokenize, lowercase, chrf_word_order, confidence, paired, samples
    )
    scoring.score(references, hypotheses or ["-"], opts, fmt, sentence, worst, src)


@app.command(epilog="Example: nmt plot work/de-en work/en-de -o curves.png")
def plot(
    runs: list[Path] = Argument(..., help="Model directories written by nmt train (their metrics.jsonl), overlaid."),
    out: Path = Option(Path("curves.png"), "--output", "-o", help="The PNG to write."),
) -> None:
    """Plot training curves: training loss, validation perplexity and BLEU against steps and minutes."""
    typer.echo(draw(runs, out), err=True)


@app.command(epilog="Example: nmt info work/model/best.pt    nmt info work/prep --json")
def info(
    path: Path = Argument(..., help="A checkpoint, a model directory (nmt train) or a prep directory (nmt prep)."),
    as_json: bool = Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show what a checkpoint, model directory or prep directory holds: config, vocabulary, step, scores, data."""
    show(path, as_json)


main = functools.partial(runtime.run, app)  # the nmt console script
