"""The ``nmt`` command line: a thin Typer layer that parses, calls a stage, maps errors.

Each command turns its flags into the shared config (``config.py``), calls one function
of its stage, and prints a one-line summary on stderr. A user's mistake is raised as
``NmtError`` anywhere below and becomes one ``nmt: error: ...`` line and exit code 2
here; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from nmt_cli import __version__, allocator
from nmt_cli.errors import EnvError, NmtError, os_reason

# torch's import looks for out-of-tree device backends through every installed package's
# entry points; nmt runs on cpu or cuda only. An explicit setting still wins.
os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")
# before torch's first matrix product: a lower peak in training (docs/performance.md)
allocator.limit_descriptor_cache()

EXAMPLES = {
    "prep": "nmt prep -s de -t en --train D/train --valid D/val --test D/test_2016_flickr --out work/prep",
    "train": "nmt train recipes/multi30k_de_en.yaml --data work/prep --out work/model",
    "translate": "cat test.de | nmt translate -m work/model/best.pt --beam 5 > test.hyp.en",
    "score": "nmt score -r test.en test.hyp.en --metrics bleu,chrf,ter",
}
_debug = False


class SpmType(str, Enum):
    unigram = "unigram"
    bpe = "bpe"


class OnInvalid(str, Enum):
    error = "error"
    replace = "replace"


class _Group(TyperGroup):
    """Maps a user's mistake to one line on stderr and exit code 2, a failure of the
    system (a full disk, a read-only or unwritable place) to one line and exit code 1,
    Ctrl-C to 130."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except NmtError as e:
            if _debug:
                raise
            typer.echo(f"nmt: error: {_rank_tag()}{e}", err=True)
            raise typer.Exit(2) from None
        except (EnvError, OSError) as e:
            message = _environment_failure(e)
            if _debug or message is None:
                raise
            typer.echo(f"nmt: error: {_rank_tag()}{message}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            if _debug:
                raise
            typer.echo("nmt: interrupted", err=True)
            raise typer.Exit(130) from None


def _environment_failure(error: Exception) -> str | None:
    """The one line for a failure of the system, or ``None`` for a bug and for a reader
    gone (EPIPE, which typer ends quietly). An OSError that names a file (``<stdout>``
    too, see ``io.named_stdout``) is the system's refusal: reads of the user's files are
    checked where they happen."""
    if not isinstance(error, OSError):
        return str(error)
    if error.errno == errno.EPIPE:
        return None
    return f"{error.filename}: {os_reason(error)}" if error.filename is not None else None


def _rank_tag() -> str:
    """``[rank N] `` in a torchrun worker other than rank 0, so its errors say whose they are."""
    rank = os.environ.get("RANK", "0")
    return f"[rank {rank}] " if rank != "0" else ""


app = typer.Typer(
    cls=_Group,
    name="nmt",
    help="nmt: neural machine translation from the command line.\n\n"
    + "\n\n".join(f"{name}: {example}" for name, example in EXAMPLES.items()),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nmt {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors."),
) -> None:
    global _debug
    _debug = debug


@app.command(epilog=f"Example: {EXAMPLES['prep']}")
def prep(
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (built under a temporary name, then renamed)."),
    src_lang: str | None = typer.Option(None, "--src-lang", "-s", help="Source language suffix, e.g. de."),
    tgt_lang: str | None = typer.Option(None, "--tgt-lang", "-t", help="Target language suffix, e.g. en."),
    train: str | None = typer.Option(
        None, "--train", help="Training prefix: reads PREFIX.SRC and PREFIX.TGT (or .gz)."
    ),
    valid: str | None = typer.Option(None, "--valid", help="Validation prefix (never filtered)."),
    test: list[str] | None = typer.Option(None, "--test", help="Test prefix (repeatable; never filtered)."),
    recipe: Path | None = typer.Option(None, "--recipe", "-r", help="YAML recipe; its data: section sets defaults."),
    assignments: list[str] | None = typer.Option(
        None, "--set", help="Override a recipe key: data.KEY=VALUE (repeatable)."
    ),
    vocab_size: int | None = typer.Option(None, "--vocab-size", help="Subword vocabulary size per model [8000]."),
    spm_type: SpmType | None = typer.Option(None, "--spm-type", help="SentencePiece algorithm [unigram]."),
    joint: bool | None = typer.Option(
        None, "--joint/--separate", help="One subword model for both languages, or one each [joint]."
    ),
    character_coverage: float | None = typer.Option(
        None, "--character-coverage", help="Share of characters the model covers [1.0]."
    ),
    spm_sample: int | None = typer.Option(
        None, "--spm-sample", help="Sentences sampled to train SentencePiece [1000000]."
    ),
    spm_model: str | None = typer.Option(None, "--spm-model", help="Reuse this joint SentencePiece model."),
    src_spm_model: str | None = typer.Option(None, "--src-spm-model", help="Reuse this source SentencePiece model."),
    tgt_spm_model: str | None = typer.Option(None, "--tgt-spm-model", help="Reuse this target SentencePiece model."),
    max_len: int | None = typer.Option(
        None, "--max-len", help="Drop training pairs over this many subwords on a side; 0: off [128]."
    ),
    max_ratio: float | None = typer.Option(
        None, "--max-ratio", help="Drop training pairs whose length ratio exceeds this; 0: off [3.0]."
    ),
    dedup: bool | None = typer.Option(
        None, "--dedup/--no-dedup", help="Drop exact duplicate training pairs [no-dedup]."
    ),
    nfkc: bool | None = typer.Option(None, "--nfkc/--no-nfkc", help="Unicode NFKC normalization [nfkc]."),
    whitespace: bool | None = typer.Option(
        None, "--whitespace/--no-whitespace", help="Strip and collapse whitespace [whitespace]."
    ),
    drop_empty: bool | None = typer.Option(
        None, "--drop-empty/--keep-empty", help="Drop training pairs with an empty side [drop-empty]."
    ),
    on_invalid_utf8: OnInvalid | None = typer.Option(
        None, "--on-invalid-utf8", help="Invalid UTF-8: stop, or replace with U+FFFD [error]."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed for SentencePiece's sampling [1]."),
    force: bool = typer.Option(False, "--force", help="Replace an existing prep of other inputs or options."),
) -> None:
    """Clean parallel text, learn subwords, write memory-mappable ids and a manifest."""
    flags = {
        k: v.value if isinstance(v, Enum) else v
        for k, v in locals().items()
        if k not in ("out", "recipe", "assignments", "force")
    }
    from nmt_cli import config
    from nmt_cli.prep.prepare import prepare
    from nmt_cli.progress import Reporter

    cfg = config.load_recipe(recipe) if recipe else config.Config()
    cfg = config.apply_overrides(cfg, assignments or [])
    cfg = config.with_values(cfg, "data", {**flags, "test": test or None})
    outcome = prepare(cfg.data, out, force=force, reporter=Reporter())
    typer.echo(_prep_summary(outcome), err=True)


def _prep_summary(outcome: Any) -> str:
    m, out = outcome.manifest, outcome.out
    if outcome.noop:
        return f"nmt prep: {out} is up to date (same inputs and options); nothing to do"
    parts = []
    for name, split in m["splits"].items():
        drops = ", ".join(f"{k} {v}" for k, v in split["drops"].items() if v)
        kept = (
            f"{split['lines_read']} -> {split['pairs_kept']} pairs"
            if split["role"] == "train"
            else f"{split['pairs_kept']} pairs"
        )
        parts.append(f"{name} {kept}" + (f" (dropped: {drops})" if drops else ""))
    vocab = m["vocab"]
    sizes = "/".join(str(n) for n in dict.fromkeys(vocab["size"].values()))
    kind = ("joint" if vocab["joint"] else "separate") + (
        ", reused" if vocab["reused"] else f" {m['options']['spm_type']}"
    )
    return f"nmt prep: {'; '.join(parts)}; vocab {sizes} ({kind}); wrote {out} in {outcome.seconds:.1f}s"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@app.command(epilog=f"Example: {EXAMPLES['train']}")
def train(
    recipe: Path = typer.Argument(..., help="YAML recipe (data:, model:, train: sections)."),
    data: Path = typer.Option(..., "--data", "-d", help="Prep directory written by `nmt prep`."),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory: checkpoints, metrics.jsonl, config.yaml."),
    assignments: list[str] | None = typer.Option(
        None, "--set", help="Override a recipe key: SECTION.KEY=VALUE (repeatable)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in --out."),
    init: Path | None = typer.Option(
        None, "--init", help="Start a new run from this checkpoint's weights (fine-tuning; its model, its vocabulary)."
    ),
    device: Device = typer.Option(Device.auto, "--device", help="Where to train."),
    threads: int = typer.Option(0, "--threads", help="CPU threads for torch (0: torch's default)."),
) -> None:
    """Train an attentional encoder-decoder from a YAML recipe."""
    from nmt_cli import config
    from nmt_cli.progress import TrainDisplay
    from nmt_cli.train import distributed
    from nmt_cli.train.loop import train as run_training

    cfg = config.apply_overrides(config.load_recipe(recipe), assignments or [])
    if threads:
        import torch

        torch.set_num_threads(threads)
    main_rank = distributed.from_env().main  # under torchrun, rank 0 alone shows progress
    with TrainDisplay(enabled=None if main_rank else False) as display:
        progress = run_training(cfg, data, out, resume, device.value, display, init)
    if progress.stop_reason.startswith("signal"):
        again = (
            "the same torchrun command with --resume"
            if distributed.launched()
            else _resume_command(recipe, data, out, assignments or [], device, threads)
        )
        if main_rank:
            typer.echo(f"nmt train: checkpoint written; continue with: {again}", err=True)
        raise typer.Exit(130)


def _resume_command(recipe: Path, data: Path, out: Path, assignments: list[str], device: Device, threads: int) -> str:
    """The ``nmt train --resume`` command that goes on with this run's own settings, quoted for a shell."""
    import shlex

    words = ["nmt", "train", str(recipe), "--data", str(data), "--out", str(out)]
    words += [word for assignment in assignments for word in ("--set", assignment)]
    words += ["--threads", str(threads)] if threads else []
    words += ["--device", device.value] if device is not Device.auto else []
    return shlex.join(words + ["--resume"])


@app.command(epilog="Example: nmt average work/model --last 5 -o work/model/averaged.pt")
def average(
    inputs: list[Path] = typer.Argument(
        ..., help="Checkpoints of one run, oldest first, or one model directory (see --last)."
    ),
    last: int | None = typer.Option(
        None, "--last", "-n", help="With a model directory: average its newest N step checkpoints [5]."
    ),
    out: Path = typer.Option(
        ..., "--output", "-o", help="The averaged checkpoint to write (for translating, not resuming)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Average checkpoints of different training runs (of one model) too."
    ),
) -> None:
    """Average the weights of several checkpoints of one run into one (usually a better translator)."""
    from nmt_cli import checkpoint
    from nmt_cli.train.average import average as mean_of
    from nmt_cli.train.average import last_checkpoints

    if len(inputs) == 1 and inputs[0].is_dir():
        paths = last_checkpoints(inputs[0], 5 if last is None else last)
    elif last is not None:
        raise NmtError("--last picks from a model directory; with checkpoint files, list the ones to average")
    else:
        paths = inputs
    checkpoint.save(out, mean_of(paths, force))
    typer.echo(f"nmt average: wrote {out}, the mean of {', '.join(p.name for p in paths)}", err=True)


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Quantize(str, Enum):
    none = "none"
    int8 = "int8"


@app.command(epilog=f"Example: {EXAMPLES['translate']}")
def translate(
    input: str = typer.Argument("-", help="Raw source text, one sentence a line (plain or .gz); - for stdin."),
    model: Path = typer.Option(
        ..., "--model", "-m", help="Checkpoint written by `nmt train` (e.g. MODEL_DIR/best.pt)."
    ),
    output: str = typer.Option("-", "--output", "-o", help="Translations, one line per input line; - for stdout."),
    beam: int | None = typer.Option(
        None, "--beam", "-b", help="Beam size; 1 is greedy search [recipe's decode.beam, 5]."
    ),
    nbest: int | None = typer.Option(
        None, "--nbest", help="Write this many hypotheses per line as TSV: line index, rank, score, text [1]."
    ),
    alpha: float | None = typer.Option(None, "--alpha", help="GNMT length penalty exponent; 0: off [0.6]."),
    beta: float | None = typer.Option(None, "--beta", help="GNMT coverage penalty weight; 0: off [0]."),
    max_len_a: float | None = typer.Option(
        None, "--max-len-a", help="Output at most A*source_length + B subwords [1.5]."
    ),
    max_len_b: int | None = typer.Option(None, "--max-len-b", help="See --max-len-a [10]."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Sentences per batch; 0: 160 // beam, so memory stays flat as the beam grows [0]."
    ),
    batch_tokens: int | None = typer.Option(
        None, "--batch-tokens", help="Source subwords per batch, padding included; 0: no limit [0]."
    ),
    replace_unk: bool | None = typer.Option(
        None, "--replace-unk/--no-replace-unk", help="Replace UNK by the source subword with the most attention."
    ),
    hard_attention: bool | None = typer.Option(
        None,
        "--hard-attention/--soft-attention",
        help="Diagnostic: each step's context is the most attended source state alone (argmax), "
        "not the weighted sum; scores lower.",
    ),
    precision: Precision | None = typer.Option(
        None,
        "--precision",
        help="Compute precision; auto: bf16 where this CPU runs it clearly faster, else fp32 (fp16: CUDA only) [auto].",
    ),
    quantize: Quantize | None = typer.Option(
        None,
        "--quantize",
        help="Dynamic int8 quantization of the linear layers (CPU): the fastest there; "
        "a line's output then depends on its batch [none].",
    ),
    scores: bool = typer.Option(False, "--scores", help="Append each translation's log-probability after a tab."),
    alignments: Path | None = typer.Option(
        None, "--alignments", help="Write hard word alignments (Pharaoh i-j) per line to this file."
    ),
    attention_plot: Path | None = typer.Option(
        None,
        "--attention-plot",
        help="Write a PNG attention heatmap per sentence into this directory (needs matplotlib).",
    ),
    plot_max: int = typer.Option(10, "--plot-max", min=0, help="Sentences plotted or shown at most."),
    show_attention: bool = typer.Option(
        False, "--show-attention", help="Print each sentence's attention grid on stderr."
    ),
    device: Device = typer.Option(Device.auto, "--device", help="Where to decode."),
    threads: int = typer.Option(0, "--threads", help="CPU threads for torch (0: torch's default)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary line on stderr."),
) -> None:
    """Translate raw text with greedy or beam search, streaming: one output line per input line."""
    flags = {
        k: v.value if isinstance(v, Enum) else v
        for k, v in locals().items()
        if k
        in (
            "beam",
            "nbest",
            "alpha",
            "beta",
            "max_len_a",
            "max_len_b",
            "batch_size",
            "batch_tokens",
            "replace_unk",
            "hard_attention",
            "precision",
            "quantize",
        )
    }
    import torch

    from nmt_cli import io as nio
    from nmt_cli.decode import alignment as attention_out
    from nmt_cli.decode.inference import Inference
    from nmt_cli.decode.translate import Outputs, Translator, run
    from nmt_cli.device import resolve, slow_bf16_note

    if threads:
        torch.set_num_threads(threads)
    if attention_plot is not None:
        attention_out.check_matplotlib()
        if attention_plot.exists() and not attention_plot.is_dir():
            raise NmtError(f"--attention-plot {attention_plot}: exists and is not a directory")
        attention_plot.mkdir(parents=True, exist_ok=True)
    wants_attention = bool(alignments or attention_plot or show_attention)
    translator = Translator(
        Inference.load(model, flags, resolve(device.value)), keep_attention=wants_attention, logprobs=scores
    )
    if (
        not quiet
        and precision is Precision.bf16
        and (note := slow_bf16_note(translator.inference.device, "bf16", "--precision"))
    ):
        typer.echo(note, err=True)
    with contextlib.ExitStack() as stack:
        out = sys.stdout if output == "-" else stack.enter_context(nio.atomic_file(output))
        align = stack.enter_context(nio.atomic_file(alignments)) if alignments else None
        outputs = Outputs(scores, align, attention_plot, plot_max, show_attention)
        counts = run(translator, input, out, outputs)
    if not quiet:
        d = translator.decode
        search = "greedy" if d.beam == 1 else f"beam {d.beam}"
        rate = counts["lines"] / max(counts["seconds"], 1e-9)
        typer.echo(
            f"nmt translate: {counts['lines']:,} lines, {counts['tokens']:,} target tokens in {counts['seconds']:.1f}s "
            f"({rate:,.0f} lines/s; {search}, {translator.inference.precision_line})",
            err=True,
        )


class Format(str, Enum):
    text = "text"
    json = "json"
    tsv = "tsv"


@app.command(epilog=f"Example: {EXAMPLES['score']}")
def score(
    hypotheses: list[str] | None = typer.Argument(
        None, help="Hypothesis files (plain or .gz), one system each; - or none: stdin."
    ),
    references: list[str] = typer.Option(
        ..., "--reference", "-r", help="Reference file (repeat for several references)."
    ),
    metrics: str = typer.Option("bleu,chrf", "--metrics", "-m", help="Comma-separated: bleu, chrf, ter."),
    tokenize: str | None = typer.Option(
        None, "--tokenize", help="sacrebleu tokenizer for BLEU [13a]: none, zh, 13a, intl, char, ..."
    ),
    lowercase: bool = typer.Option(False, "--lowercase", "-lc", help="Case-insensitive scores."),
    chrf_word_order: int = typer.Option(0, "--chrf-word-order", min=0, help="chrF word n-gram order; 2 gives chrF++."),
    fmt: Format = typer.Option(Format.text, "--format", "-f", help="text: a table; json: one object; tsv: rows."),
    confidence: bool = typer.Option(False, "--confidence", help="95% confidence intervals by bootstrap resampling."),
    paired_bs: bool = typer.Option(
        False, "--paired-bs", help="Paired bootstrap resampling: each system against the first."
    ),
    paired_ar: bool = typer.Option(
        False, "--paired-ar", help="Paired approximate randomization: each system against the first."
    ),
    samples: int = typer.Option(
        0, "--samples", min=0, help="Resamples (bootstrap) or trials (randomization); 0: sacrebleu's 1000 / 10000."
    ),
    sentence: bool = typer.Option(False, "--sentence", help="Per-line sentence BLEU and chrF (TSV, or JSON lines)."),
    worst: int = typer.Option(0, "--worst", min=0, help="List the K lines with the lowest sentence BLEU."),
    src: str | None = typer.Option(None, "--src", help="Source text: shown by --worst; read by --model."),
    model: Path | None = typer.Option(
        None, "--model", help="Score the references under this checkpoint (forced decoding); needs --src."
    ),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="--model: sentences per batch."),
    device: Device = typer.Option(Device.auto, "--device", help="--model: where to run."),
) -> None:
    """Score translations with sacrebleu (BLEU, chrF, TER), test significance, or score references under a model."""
    if model is not None:
        return _score_model(model, src, references, fmt, batch_size, device)
    from nmt_cli import score as scoring

    if paired_bs and paired_ar:
        raise NmtError("--paired-bs and --paired-ar: choose one test")
    if tokenize is not None:
        from sacrebleu.metrics import BLEU

        if tokenize not in BLEU.TOKENIZERS:
            raise NmtError(f"--tokenize {tokenize!r}: choose from {', '.join(BLEU.TOKENIZERS)}")
    opts = scoring.Options(
        scoring.parse_metrics(metrics),
        tokenize,
        lowercase,
        chrf_word_order,
        confidence,
        "bs" if paired_bs else "ar" if paired_ar else None,
        samples,
    )
    refs, systems = scoring.load(references, hypotheses or ["-"])
    if sentence or worst:
        if len(systems) != 1:
            raise NmtError("--sentence/--worst score one hypothesis file at a time")
        return _score_sentences(scoring, refs, systems[0][1], opts, fmt, worst, src)
    results, signatures = scoring.corpus_scores(refs, systems, opts)
    if fmt is Format.json:
        typer.echo(scoring.as_json(results, signatures))
    elif fmt is Format.tsv:
        typer.echo(scoring.as_tsv(results, signatures))
    else:
        from rich.console import Console

        Console().print(scoring.as_table(results, signatures, opts))
        for line in scoring.signature_lines(signatures, opts):
            typer.echo(line)


def _score_sentences(
    scoring: Any, refs: list, hyps: list[str], opts: Any, fmt: Format, worst: int, src: str | None
) -> None:
    import json

    rows = scoring.sentence_scores(refs, hyps, opts)
    if not worst:
        for row in rows:
            typer.echo(
                json.dumps(row) if fmt is Format.json else f"{row['line']}\t{row['bleu']:.2f}\t{row['chrf']:.2f}"
            )
        return
    sources = scoring.read_text(src, "source") if src else None
    if sources is not None and len(sources) != len(hyps):
        raise NmtError(f"--src {src} has {len(sources)} lines but the hypotheses have {len(hyps)}")
    picked = sorted(rows, key=lambda r: (r["bleu"], r["chrf"]))[:worst]
    for row in picked:
        i = row["line"] - 1
        row.update({"hypothesis": hyps[i], "reference": refs[0][i], **({"source": sources[i]} if sources else {})})
    if fmt is Format.json:
        typer.echo(json.dumps(picked, indent=2, ensure_ascii=False))
    elif fmt is Format.tsv:
        keys = ["line", "bleu", "chrf"] + (["source"] if sources else []) + ["hypothesis", "reference"]
        typer.echo("\t".join(keys))
        for row in picked:
            typer.echo("\t".join(f"{row[k]:.2f}" if isinstance(row[k], float) else str(row[k]) for k in keys))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"the {len(picked)} lowest sentence-BLEU lines", show_lines=True)
        for name in ["line", "BLEU", "chrF"] + (["source"] if sources else []) + ["hypothesis", "reference"]:
            table.add_column(name, overflow="fold", justify="right" if name in ("line", "BLEU", "chrF") else "left")
        for row in picked:
            table.add_row(
                str(row["line"]),
                f"{row['bleu']:.1f}",
                f"{row['chrf']:.1f}",
                *([row["source"]] if sources else []),
                row["hypothesis"],
                row["reference"],
            )
        Console().print(table)


def _score_model(
    model: Path, src: str | None, references: list[str], fmt: Format, batch_size: int, device: Device
) -> None:
    """Forced decoding: per-line log-probability of each reference under the model."""
    import json

    from nmt_cli import io as nio
    from nmt_cli.decode import forced
    from nmt_cli.decode.inference import Inference
    from nmt_cli.device import resolve

    if src is None:
        raise NmtError("--model needs --src SOURCE: the references are scored as translations of it")
    if len(references) != 1:
        raise NmtError("--model scores one reference file at a time")
    inference = Inference.load(model, {}, resolve(device.value), search=False)
    logprob, tokens, lines = 0.0, 0, 0
    held: list[str] = []  # rows of a piped input, printed once its line count is known to match
    emit = typer.echo if forced.counted_alike(src, references[0]) else held.append
    if fmt is not Format.json:
        emit("line\tlogprob\ttokens\tavg_logprob")
    for chunk in forced.read_pairs(inference, nio.paired_lines(src, references[0]), (src, references[0])):
        forced.score_pairs(inference, chunk, batch_size)
        for p in chunk:
            row = {
                "line": p.index + 1,
                "logprob": round(p.logprob, 4),
                "tokens": p.tokens,
                "avg_logprob": round(p.logprob / p.tokens, 4),
            }
            emit(json.dumps(row) if fmt is Format.json else "\t".join(str(v) for v in row.values()))
            logprob, tokens, lines = logprob + p.logprob, tokens + p.tokens, lines + 1
    for row in held:
        typer.echo(row)
    typer.echo(
        f"nmt score: {lines:,} lines, {tokens:,} target tokens; log-probability {logprob:.2f}, "
        f"{logprob / max(tokens, 1):.4f} per token; perplexity {forced.perplexity(logprob, tokens):.3f}",
        err=True,
    )


@app.command(epilog="Example: nmt plot work/de-en work/en-de -o curves.png")
def plot(
    runs: list[Path] = typer.Argument(
        ..., help="Model directories written by nmt train (their metrics.jsonl), overlaid."
    ),
    out: Path = typer.Option(Path("curves.png"), "--output", "-o", help="The PNG to write."),
) -> None:
    """Plot training curves: training loss, validation perplexity and BLEU against steps and minutes."""
    from nmt_cli.plot import plot as draw

    draw(runs, out)
    typer.echo(f"nmt plot: wrote {out}", err=True)


@app.command(epilog="Example: nmt info work/model/best.pt    nmt info work/prep --json")
def info(
    path: Path = typer.Argument(
        ..., help="A checkpoint, a model directory (from nmt train) or a prep directory (from nmt prep)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show what a checkpoint, model directory or prep directory holds: config, vocabulary, step, scores, data."""
    import json

    from nmt_cli.info import describe, table

    if not path.exists():
        raise NmtError(f"{path}: no such file or directory")
    described = describe(path)
    if as_json:
        typer.echo(json.dumps(described, indent=2, ensure_ascii=False))
    else:
        from rich.console import Console

        Console().print(table(described))


def main() -> None:
    """The console script: like ``app()``, but usage errors are one line too."""
    from nmt_cli.io import named_stdout

    sys.stdout = named_stdout()  # a full device or a closed stdout is then one line, exit code 1
    try:
        code = app(prog_name="nmt", standalone_mode=False)
    except typer.TyperException as e:  # the parser's errors: bad option, missing value...
        if type(e).__name__ != "NoArgsIsHelpError":  # (that one has printed the help)
            where = getattr(getattr(e, "ctx", None), "command_path", "nmt")
            typer.echo(f"nmt: error: {e.format_message()} (see '{where} --help')", err=True)
        code = getattr(e, "exit_code", 2)
    except typer.Abort:
        code = 1
    except OSError as e:  # outside a command (--version, --help): stdout unwritable
        if (message := _environment_failure(e)) is None:
            raise
        typer.echo(f"nmt: error: {message}", err=True)
        code = 1
    _exit(code or 0)


def _exit(code: int) -> NoReturn:
    """End the process without the interpreter's teardown, once the standard streams are
    flushed. With torch loaded, that teardown (freeing some 1,100 modules and their
    objects) is a large share of a short ``nmt translate`` (docs/performance.md);
    every file a command writes is closed, and renamed into place, before it returns.
    Under a profiler or tracer (cProfile, coverage) the usual exit lets it write its report."""
    code = _flush_stdout(code)
    if _observed():
        sys.exit(code)
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code)


def _flush_stdout(code: int) -> int:
    """The exit code once stdout is flushed: output that could not be written (a full
    device, a closed descriptor) is an error of the system, exit code 1."""
    try:
        sys.stdout.flush()
    except OSError as e:
        if code or e.errno == errno.EPIPE:  # reported already, or a reader gone (| head)
            return code
        typer.echo(f"nmt: error: {e.filename or '<stdout>'}: {os_reason(e)}", err=True)
        return 1
    except ValueError:  # a stream closed
        pass
    return code


def _observed() -> bool:
    """A profiler, tracer or debugger is attached: the old hooks, or (Python 3.12 on, where
    cProfile and coverage use them) a ``sys.monitoring`` tool."""
    monitoring = getattr(sys, "monitoring", None)
    tools = [monitoring.get_tool(i) for i in range(6)] if monitoring else []  # tool ids 0-5
    return bool(sys.getprofile() or sys.gettrace() or any(tools))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
