"""Streaming translation of raw text: one output line per input line, in order, always.

Input is read in chunks of at most ``CHUNK_BATCHES`` batches of lines (so memory does not
grow with the input and output starts before the input ends). Inside a chunk each line is
normalized as at prep time, split into subwords with the checkpoint's own SentencePiece
model, truncated to the model's length limit, sorted by length into batches, searched
(greedy for beam 1, else beam search), detokenized and written back in input order.
Empty lines give empty lines without touching the model.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

import torch

from nmt_cli import device as devices
from nmt_cli import io as nio
from nmt_cli.config import DecodeConfig
from nmt_cli.decode import alignment
from nmt_cli.decode.inference import Inference, batches
from nmt_cli.errors import NmtError, warn
from nmt_cli.search.beam import beam_search
from nmt_cli.search.greedy import greedy_encoded
from nmt_cli.search.hypothesis import Hypothesis
from nmt_cli.vocab import UNK

CHUNK_BATCHES = 8  # a chunk of input holds this many batches' worth of lines


@dataclass
class Line:
    """One input line and what became of it."""

    index: int  # 0-based line number
    text: str
    ids: list[int] = field(default_factory=list)  # source subword ids (truncated), EOS not included
    hyps: list[Hypothesis] = field(default_factory=list)  # best first; empty for an empty line


class Translator:
    """Search over an :class:`Inference` model, line by line."""

    def __init__(self, inference: Inference, keep_attention: bool = False, logprobs: bool = True):
        self.inference = inference
        self.decode = inference.decode
        self.keep_attention = keep_attention or self.decode.replace_unk
        self.logprobs = logprobs  # greedy: compute log-probabilities (--scores)

    @property
    def chunk_lines(self) -> int:
        """Lines of input translated together (sorted by length into batches)."""
        return self.decode.sentences_per_batch * CHUNK_BATCHES

    def encode(self, line: Line, name: str) -> None:
        """Normalize and split one line into subword ids, truncated with a warning."""
        line.text = self.inference.normalize(line.text)
        line.ids = self.inference.split(line.text, self.inference.src_sp, f"{name}:{line.index + 1}")

    @torch.no_grad()
    def translate(self, lines: list[Line]) -> None:
        """Fill ``line.hyps`` for every non-empty line; batches are sorted by length."""
        todo = sorted((line for line in lines if line.ids), key=lambda line: -len(line.ids))
        for batch in batches(
            todo, lambda line: len(line.ids) + 1, self.decode.sentences_per_batch, self.decode.batch_tokens
        ):
            src, lengths = self.inference.source_tensor([line.ids for line in batch])
            with self.inference.autocast():
                encoded = self.inference.model.encode(src, lengths)
                results = self._search(encoded, lengths)
            for line, hyps in zip(batch, results):
                line.hyps = hyps

    def _search(self, encoded: tuple, lengths: torch.Tensor) -> list[list[Hypothesis]]:
        d, model = self.decode, self.inference.model
        if d.beam == 1:
            hyps = greedy_encoded(model, encoded, lengths, d.max_len_a, d.max_len_b, self.keep_attention, self.logprobs)
            return [[h] for h in hyps]
        return beam_search(
            model, encoded, lengths, d.beam, d.max_len_a, d.max_len_b, d.alpha, d.beta, d.nbest, self.keep_attention
        )

    def source_pieces(self, line: Line) -> list[str]:
        return [self.inference.src_sp.id_to_piece(i) for i in line.ids]

    def target_pieces(self, line: Line, hyp: Hypothesis) -> list[str]:
        """The hypothesis' subwords; with ``replace_unk``, each UNK becomes the source
        subword it attends to most."""
        pieces = [self.inference.tgt_sp.id_to_piece(i) for i in hyp.tokens]
        if self.decode.replace_unk and hyp.attention is not None:
            src = self.source_pieces(line)
            for step, token in enumerate(hyp.tokens):
                if token == UNK and src:
                    pieces[step] = src[alignment.most_attended(hyp.attention, step, len(src))]
        return pieces

    def detokenize(self, line: Line, hyp: Hypothesis) -> str:
        if self.decode.replace_unk and UNK in hyp.tokens:
            # a copied source subword may be unknown to the target model, which then keeps
            # it verbatim, word mark included: read the marks as spaces here
            text = self.inference.tgt_sp.decode_pieces(self.target_pieces(line, hyp))
            return " ".join(text.replace(alignment.WORD_START, " ").split())
        return self.inference.tgt_sp.decode(hyp.tokens)


def translate_texts(
    translator: Translator, texts: list[str], first: int, name: str, prefixes: list[str] | None = None
) -> list[Line]:
    """``texts``, lines ``first``... of input ``name`` (the name warnings give), as
    translated :class:`Line` s, in order: what ``nmt translate`` and the Python API's
    ``Translator.translate`` both do with a chunk of input. ``prefixes``: a target prefix
    for each text, which the search is to continue."""
    if prefixes is not None:
        raise NmtError("target prefixes need a search that continues them (not in this version)")
    lines = [Line(first + i, text) for i, text in enumerate(texts)]
    for line in lines:
        translator.encode(line, name)
    translator.translate(lines)
    return lines


def load(models: Path | str | Sequence[Path | str], decode: dict, device: str) -> tuple[Inference, str | None]:
    """The checkpoint ``models`` ready to translate, its ``decode:`` section overridden by
    ``decode``'s non-``None`` values, and a note when bf16 was asked for where it runs
    slower than fp32; what ``nmt translate`` and the Python API's ``Translator.load`` both
    call. Several paths ask for an ensemble of their models."""
    paths = [models] if isinstance(models, (str, Path)) else list(models)
    if len(paths) != 1:
        raise NmtError(f"{len(paths)} checkpoints: ensembles need a search over several models (not in this version)")
    inference = Inference.load(paths[0], decode, devices.resolve(device))
    return inference, devices.slow_bf16_note(inference.device, decode.get("precision"), "--precision")


@dataclass
class Outputs:
    """Where results go besides the translations themselves."""

    scores: bool = False
    alignments: TextIO | None = None
    plot_dir: Path | None = None
    plot_max: int = 10
    show_attention: bool = False
    shown: int = 0


def format_line(translator: Translator, line: Line, outputs: Outputs) -> str:
    """The text written for one input line: its translation, or its n-best rows."""
    if translator.decode.nbest > 1:
        hyps = line.hyps or [Hypothesis([], 0.0, 0.0)]
        rows = []
        for rank, hyp in enumerate(hyps, 1):
            cols = [str(line.index), str(rank), f"{hyp.score:.4f}"]
            if outputs.scores:
                cols.append(f"{hyp.logprob:.4f}")
            rows.append("\t".join(cols + [translator.detokenize(line, hyp)]))
        return "\n".join(rows)
    if not line.hyps:
        return "\t0.0000" if outputs.scores else ""
    best = line.hyps[0]
    text = translator.detokenize(line, best)
    return f"{text}\t{best.logprob:.4f}" if outputs.scores else text


def write_attention(translator: Translator, line: Line, outputs: Outputs) -> None:
    """Alignments, heatmap and terminal grid of one line's best hypothesis."""
    if outputs.alignments is None and outputs.plot_dir is None and not outputs.show_attention:
        return
    best = line.hyps[0] if line.hyps else None
    src = translator.source_pieces(line)
    tgt = translator.target_pieces(line, best) if best else []
    if outputs.alignments is not None:
        outputs.alignments.write((alignment.hard_alignment(best.attention, src, tgt) if best else "") + "\n")
    if best is None or outputs.shown >= outputs.plot_max:
        return
    outputs.shown += 1
    title = f"line {line.index + 1}: {line.text[:60]}"
    if outputs.plot_dir is not None:
        alignment.plot_heatmap(best.attention, src, tgt, outputs.plot_dir / f"line-{line.index + 1:06d}.png", title)
    if outputs.show_attention:
        from rich.console import Console

        table = alignment.attention_table(best.attention, src, tgt, title)
        Console(stderr=True, width=10_000).print(table)  # never squeeze columns: let the terminal wrap


def stream(translator: Translator, source: str | None, out: TextIO, outputs: Outputs) -> dict:
    """Translate ``source`` (a path, or stdin for ``None``/``-``) into ``out``; returns counts."""
    start, count, tokens = time.perf_counter(), 0, 0
    with nio.open_input(source) as (stream, name, interactive):
        for raw_lines in nio.checked(nio.line_chunks(stream, translator.chunk_lines, interactive), name):
            texts = []
            for raw in raw_lines:
                text, replaced = nio.decode_line(raw, name, count + len(texts) + 1, "replace")
                if replaced:
                    warn(f"{name}:{count + len(texts) + 1}: invalid UTF-8 replaced with U+FFFD")
                texts.append(text)
            lines = translate_texts(translator, texts, count, name)
            count += len(lines)
            for line in lines:
                out.write(format_line(translator, line, outputs) + "\n")
                write_attention(translator, line, outputs)
                tokens += len(line.hyps[0].tokens) + 1 if line.hyps else 0
            out.flush()
            if outputs.alignments is not None:
                outputs.alignments.flush()
    return {"lines": count, "tokens": tokens, "seconds": time.perf_counter() - start}


@dataclass
class Result:
    """What ``nmt translate`` did: counts, the search and precision that ran, a note on bf16."""

    lines: int
    tokens: int
    seconds: float
    decode: DecodeConfig
    precision: str  # which precision ran and why (``auto``'s choice)
    note: str | None = None  # bf16 asked for where it runs slower than fp32

    @property
    def summary(self) -> str:
        search = "greedy" if self.decode.beam == 1 else f"beam {self.decode.beam}"
        rate = self.lines / max(self.seconds, 1e-9)
        line = (
            f"nmt translate: {self.lines:,} lines, {self.tokens:,} target tokens in {self.seconds:.1f}s "
            f"({rate:,.0f} lines/s; {search}, {self.precision})"
        )
        return f"{self.note}\n{line}" if self.note else line


def run(
    model: Path | str, source: str, output: str, decode: dict, device: str, outputs: Outputs, alignments: Path | None
) -> Result:
    """Translate ``source`` (a path, or ``-``: stdin) with checkpoint ``model`` into ``output``
    (a path, written whole or not at all, or ``-``: stdout). ``decode`` holds the keys that
    replace the checkpoint's ``decode:`` section (``None`` values keep it); ``alignments``
    is a file for the hard alignments, besides what ``outputs`` asks for."""
    if outputs.plot_dir is not None:
        alignment.check_matplotlib()
        if outputs.plot_dir.exists() and not outputs.plot_dir.is_dir():
            raise NmtError(f"--attention-plot {outputs.plot_dir}: exists and is not a directory")
        outputs.plot_dir.mkdir(parents=True, exist_ok=True)
    inference, note = load(model, decode, device)
    translator = Translator(inference, bool(alignments or outputs.plot_dir or outputs.show_attention), outputs.scores)
    with contextlib.ExitStack() as stack:
        out = sys.stdout if output == "-" else stack.enter_context(nio.atomic_file(output))
        if alignments:
            outputs = replace(outputs, alignments=stack.enter_context(nio.atomic_file(alignments)))
        counts = stream(translator, source, out, outputs)
    return Result(**counts, decode=translator.decode, precision=inference.precision_line, note=note)
