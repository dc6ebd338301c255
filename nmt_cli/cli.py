"""The ``nmt`` command line: a thin Typer layer that parses, calls a stage, maps errors.

Each command turns its flags into the shared config (``config.py``), calls one function
of its stage, and prints a one-line summary on stderr. A user's mistake is raised as
``NmtError`` anywhere below and becomes one ``nmt: error: ...`` line and exit code 2
here; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import sys
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer
from typer.core import TyperGroup

from nmt_cli import __version__
from nmt_cli.errors import NmtError

EXAMPLES = {
    "prep": "nmt prep --src-lang de --tgt-lang en --train D/train --valid D/val --test D/test_2016_flickr --out work/prep",
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
    """Maps a user's mistake to one line on stderr and exit code 2, Ctrl-C to 130."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except NmtError as e:
            if _debug:
                raise
            typer.echo(f"nmt: error: {e}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            if _debug:
                raise
            typer.echo("nmt: interrupted", err=True)
            raise typer.Exit(130) from None


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
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors."),
) -> None:
    global _debug
    _debug = debug


@app.command(epilog=f"Example: {EXAMPLES['prep']}")
def prep(
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (built under a temporary name, then renamed)."),
    src_lang: Optional[str] = typer.Option(None, "--src-lang", "-s", help="Source language suffix, e.g. de."),
    tgt_lang: Optional[str] = typer.Option(None, "--tgt-lang", "-t", help="Target language suffix, e.g. en."),
    train: Optional[str] = typer.Option(None, "--train", help="Training prefix: reads PREFIX.SRC and PREFIX.TGT (or .gz)."),
    valid: Optional[str] = typer.Option(None, "--valid", help="Validation prefix (never filtered)."),
    test: Optional[list[str]] = typer.Option(None, "--test", help="Test prefix (repeatable; never filtered)."),
    recipe: Optional[Path] = typer.Option(None, "--recipe", "-r", help="YAML recipe; its data: section sets defaults."),
    assignments: Optional[list[str]] = typer.Option(None, "--set", help="Override a recipe key: data.KEY=VALUE (repeatable)."),
    vocab_size: Optional[int] = typer.Option(None, "--vocab-size", help="Subword vocabulary size per model [8000]."),
    spm_type: Optional[SpmType] = typer.Option(None, "--spm-type", help="SentencePiece algorithm [unigram]."),
    joint: Optional[bool] = typer.Option(None, "--joint/--separate", help="One subword model for both languages, or one each [joint]."),
    character_coverage: Optional[float] = typer.Option(None, "--character-coverage", help="Share of characters the model covers [1.0]."),
    spm_sample: Optional[int] = typer.Option(None, "--spm-sample", help="Sentences sampled to train SentencePiece [1000000]."),
    spm_model: Optional[str] = typer.Option(None, "--spm-model", help="Reuse this joint SentencePiece model."),
    src_spm_model: Optional[str] = typer.Option(None, "--src-spm-model", help="Reuse this source SentencePiece model."),
    tgt_spm_model: Optional[str] = typer.Option(None, "--tgt-spm-model", help="Reuse this target SentencePiece model."),
    max_len: Optional[int] = typer.Option(None, "--max-len", help="Drop training pairs over this many subwords on a side; 0: off [128]."),
    max_ratio: Optional[float] = typer.Option(None, "--max-ratio", help="Drop training pairs whose length ratio exceeds this; 0: off [3.0]."),
    dedup: Optional[bool] = typer.Option(None, "--dedup/--no-dedup", help="Drop exact duplicate training pairs [no-dedup]."),
    nfkc: Optional[bool] = typer.Option(None, "--nfkc/--no-nfkc", help="Unicode NFKC normalization [nfkc]."),
    whitespace: Optional[bool] = typer.Option(None, "--whitespace/--no-whitespace", help="Strip and collapse whitespace [whitespace]."),
    drop_empty: Optional[bool] = typer.Option(None, "--drop-empty/--keep-empty", help="Drop training pairs with an empty side [drop-empty]."),
    on_invalid_utf8: Optional[OnInvalid] = typer.Option(None, "--on-invalid-utf8", help="Invalid UTF-8: stop, or replace with U+FFFD [error]."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for SentencePiece's sampling [1]."),
    force: bool = typer.Option(False, "--force", help="Replace an existing prep of other inputs or options."),
) -> None:
    """Clean parallel text, learn subwords, write memory-mappable ids and a manifest."""
    flags = {k: v.value if isinstance(v, Enum) else v for k, v in locals().items() if k not in ("out", "recipe", "assignments", "force")}
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
        kept = f"{split['lines_read']} -> {split['pairs_kept']} pairs" if split["role"] == "train" else f"{split['pairs_kept']} pairs"
        parts.append(f"{name} {kept}" + (f" (dropped: {drops})" if drops else ""))
    vocab = m["vocab"]
    sizes = "/".join(str(n) for n in dict.fromkeys(vocab["size"].values()))
    kind = ("joint" if vocab["joint"] else "separate") + (", reused" if vocab["reused"] else f" {m['options']['spm_type']}")
    return f"nmt prep: {'; '.join(parts)}; vocab {sizes} ({kind}); wrote {out} in {outcome.seconds:.1f}s"


def _not_yet(stage: str, issue: int) -> None:
    raise NmtError(f"`nmt {stage}` is not implemented yet (issue #{issue}); `nmt prep` is available")


_PENDING = {"context_settings": {"allow_extra_args": True, "ignore_unknown_options": True}}


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@app.command(epilog=f"Example: {EXAMPLES['train']}")
def train(
    recipe: Path = typer.Argument(..., help="YAML recipe (data:, model:, train: sections)."),
    data: Path = typer.Option(..., "--data", "-d", help="Prep directory written by `nmt prep`."),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory: checkpoints, metrics.jsonl, config.yaml."),
    assignments: Optional[list[str]] = typer.Option(None, "--set", help="Override a recipe key: SECTION.KEY=VALUE (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in --out."),
    device: Device = typer.Option(Device.auto, "--device", help="Where to train."),
    threads: int = typer.Option(0, "--threads", help="CPU threads for torch (0: torch's default)."),
) -> None:
    """Train an attentional encoder-decoder from a YAML recipe."""
    from nmt_cli import config
    from nmt_cli.progress import TrainDisplay
    from nmt_cli.train.loop import train as run_training

    cfg = config.apply_overrides(config.load_recipe(recipe), assignments or [])
    if threads:
        import torch

        torch.set_num_threads(threads)
    with TrainDisplay() as display:
        progress = run_training(cfg, data, out, resume, device.value, display)
    if progress.stop_reason.startswith("signal"):
        typer.echo(f"nmt train: checkpoint written; continue with: nmt train {recipe} --data {data} --out {out} --resume", err=True)
        raise typer.Exit(130)


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Quantize(str, Enum):
    none = "none"
    int8 = "int8"


@app.command(epilog=f"Example: {EXAMPLES['translate']}")
def translate(
    input: str = typer.Argument("-", help="Raw source text, one sentence a line (plain or .gz); - for stdin."),
    model: Path = typer.Option(..., "--model", "-m", help="Checkpoint written by `nmt train` (e.g. MODEL_DIR/best.pt)."),
    output: str = typer.Option("-", "--output", "-o", help="Translations, one line per input line; - for stdout."),
    beam: Optional[int] = typer.Option(None, "--beam", "-b", help="Beam size; 1 is greedy search [recipe's decode.beam, 5]."),
    nbest: Optional[int] = typer.Option(None, "--nbest", help="Write this many hypotheses per line as TSV: line index, rank, score, text [1]."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="GNMT length penalty exponent; 0: off [0.6]."),
    beta: Optional[float] = typer.Option(None, "--beta", help="GNMT coverage penalty weight; 0: off [0]."),
    max_len_a: Optional[float] = typer.Option(None, "--max-len-a", help="Output at most A*source_length + B subwords [1.5]."),
    max_len_b: Optional[int] = typer.Option(None, "--max-len-b", help="See --max-len-a [10]."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Sentences per batch [128]."),
    batch_tokens: Optional[int] = typer.Option(None, "--batch-tokens", help="Source subwords per batch, padding included; 0: no limit [0]."),
    replace_unk: Optional[bool] = typer.Option(None, "--replace-unk/--no-replace-unk", help="Replace UNK by the source subword with the most attention."),
    precision: Optional[Precision] = typer.Option(None, "--precision", help="Compute precision (fp16: CUDA only) [fp32]."),
    quantize: Optional[Quantize] = typer.Option(None, "--quantize", help="Dynamic int8 quantization of the linear layers (CPU) [none]."),
    scores: bool = typer.Option(False, "--scores", help="Append each translation's log-probability after a tab."),
    alignments: Optional[Path] = typer.Option(None, "--alignments", help="Write hard word alignments (Pharaoh i-j) per line to this file."),
    attention_plot: Optional[Path] = typer.Option(None, "--attention-plot", help="Write a PNG attention heatmap per sentence into this directory (needs matplotlib)."),
    plot_max: int = typer.Option(10, "--plot-max", min=0, help="Sentences plotted or shown at most."),
    show_attention: bool = typer.Option(False, "--show-attention", help="Print each sentence's attention grid on stderr."),
    device: Device = typer.Option(Device.auto, "--device", help="Where to decode."),
    threads: int = typer.Option(0, "--threads", help="CPU threads for torch (0: torch's default)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary line on stderr."),
) -> None:
    """Translate raw text with greedy or beam search, streaming: one output line per input line."""
    flags = {k: v.value if isinstance(v, Enum) else v for k, v in locals().items()
             if k in ("beam", "nbest", "alpha", "beta", "max_len_a", "max_len_b", "batch_size", "batch_tokens",
                      "replace_unk", "precision", "quantize")}
    import torch

    from nmt_cli import io as nio
    from nmt_cli.decode import alignment as attention_out
    from nmt_cli.decode.translate import Outputs, Translator, run
    from nmt_cli.device import resolve

    if threads:
        torch.set_num_threads(threads)
    if attention_plot is not None:
        attention_out.check_matplotlib()
        if attention_plot.exists() and not attention_plot.is_dir():
            raise NmtError(f"--attention-plot {attention_plot}: exists and is not a directory")
        attention_plot.mkdir(parents=True, exist_ok=True)
    wants_attention = bool(alignments or attention_plot or show_attention)
    translator = Translator(model, flags, resolve(device.value), keep_attention=wants_attention)
    with contextlib.ExitStack() as stack:
        out = sys.stdout if output == "-" else stack.enter_context(nio.atomic_file(output))
        align = stack.enter_context(nio.atomic_file(alignments)) if alignments else None
        outputs = Outputs(scores, align, attention_plot, plot_max, show_attention)
        counts = run(translator, input, out, outputs)
    if not quiet:
        d = translator.decode
        search = "greedy" if d.beam == 1 else f"beam {d.beam}"
        rate = counts["lines"] / max(counts["seconds"], 1e-9)
        typer.echo(f"nmt translate: {counts['lines']:,} lines, {counts['tokens']:,} target tokens in {counts['seconds']:.1f}s "
                   f"({rate:,.0f} lines/s; {search}, {d.precision}{', int8' if d.quantize == 'int8' else ''})", err=True)


@app.command(epilog=f"Example: {EXAMPLES['score']}", **_PENDING)
def score(ctx: typer.Context) -> None:
    """Score translations with BLEU, chrF and TER (not implemented yet)."""
    _not_yet("score", 5)


def main() -> None:
    """The console script: like ``app()``, but usage errors are one line too."""
    try:
        code = app(prog_name="nmt", standalone_mode=False)
    except typer.TyperException as e:  # the parser's errors: bad option, missing value...
        if type(e).__name__ != "NoArgsIsHelpError":  # (that one has printed the help)
            where = getattr(getattr(e, "ctx", None), "command_path", "nmt")
            typer.echo(f"nmt: error: {e.format_message()} (see '{where} --help')", err=True)
        code = getattr(e, "exit_code", 2)
    except typer.Abort:
        code = 1
    sys.exit(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
