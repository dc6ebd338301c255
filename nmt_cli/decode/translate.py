"""Streaming translation of raw text: one output line per input line, in order, always.

Input is read in chunks of at most ``CHUNK_BATCHES`` batches of lines (so memory does not
grow with the input and output starts before the input ends). Inside a chunk each line is
normalized as at prep time, split into subwords with the checkpoint's own SentencePiece
model, truncated to the model's length limit, sorted by length into batches, searched
(greedy for beam 1, else beam search, or sampling), detokenized and written back in input
order. Empty lines give empty lines without touching the model, unless they have a prefix.

Several models translate as an ensemble (``search/scorer.py``: a weighted product of
experts); the first one's config, subwords and attention serve. A target prefix (raw text,
normalized and split by the target SentencePiece model, no EOS) is forced on the first
steps of its line, in greedy, beam and sampling search alike; its words' log-probabilities
count in the reported score (as fairseq's and Sockeye's do).
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
from nmt_cli import writing
from nmt_cli.config import DecodeConfig
from nmt_cli.decode import alignment
from nmt_cli.decode.inference import Inference, ensemble_weights, load_all
from nmt_cli.errors import NmtError, warn
from nmt_cli.model.batch import Batch, token_batches
from nmt_cli.search.beam import beam_search
from nmt_cli.search.greedy import greedy_encoded
from nmt_cli.search.hypothesis import Hypothesis, output_limits
from nmt_cli.search.sampling import Prefixes, Sampler
from nmt_cli.search.scorer import Scorer
from nmt_cli.vocab import UNK

CHUNK_BATCHES = 8  # a chunk of input holds this many batches' worth of lines


@dataclass
class Line:
    """One input line and what became of it."""

    index: int  # 0-based line number
    text: str
    ids: list[int] = field(default_factory=list)  # source subword ids (truncated), EOS not included
    hyps: list[Hypothesis] = field(default_factory=list)  # best first (sampled: as drawn); empty for an empty line
    prefix: list[int] = field(default_factory=list)  # target subword ids forced first


class Search:
    """Search over an :class:`Inference` model (with ``others``: an ensemble), line by line."""

    def __init__(
        self,
        inference: Inference,
        keep_attention: bool = False,
        logprobs: bool = True,
        others: Sequence[Inference] = (),
        weights: Sequence[float] | None = None,
    ):
        self.inference = inference
        self.decode = inference.decode
        self.scorer = Scorer([inference.model, *(other.model for other in others)], weights)
        self.keep_attention = keep_attention or self.decode.replace_unk
        self.logprobs = logprobs or self.decode.nbest > 1  # greedy's log-probabilities: --scores, or n-best rows

    @property
    def chunk_lines(self) -> int:
        """Lines of input translated together (sorted by length into batches)."""
        return self.decode.sentences_per_batch * CHUNK_BATCHES

    def encode(self, line: Line, name: str, prefix: str | None = None, prefix_name: str = "prefix") -> None:
        """Normalize and split one line (and its target ``prefix``) into subword ids,
        truncated with a warning."""
        line.text = self.inference.normalize(line.text)
        line.ids = self.inference.split(line.text, self.inference.src_sp, f"{name}:{line.index + 1}")
        if prefix:
            where = f"{prefix_name}:{line.index + 1}"
            line.prefix = self.inference.split(self.inference.normalize(prefix), self.inference.tgt_sp, where)
            if not self.scorer.producible(line.prefix):
                raise NmtError(f"{where}: the prefix holds a subword the model never outputs (output_vocab: target)")

    @torch.no_grad()
    def translate(self, lines: list[Line]) -> None:
        """Fill ``line.hyps`` for every non-empty line; batches are sorted by length."""
        todo = sorted((line for line in lines if line.ids or line.prefix), key=lambda line: -len(line.ids))
        sizes = [len(line.ids) + 1 for line in todo]  # with EOS
        for batch in token_batches(todo, sizes, self.decode.batch_tokens, self.decode.sentences_per_batch):
            padded = Batch.of([line.ids for line in batch])
            src, lengths = padded.src.to(self.inference.device), padded.src_lengths
            with self.inference.autocast():
                members = self.scorer.encode(src, lengths)
                results = self._search(batch, members, lengths)
            for line, hyps in zip(batch, results):
                line.hyps = hyps

    def _search(self, batch: list[Line], members: list, lengths: torch.Tensor) -> list[list[Hypothesis]]:
        """Beam search, greedy search, or ``nbest`` samples of each line (as drawn: each
        line's rows repeated, each row's uniforms its own, :class:`Sampler`)."""
        d, device = self.decode, self.inference.device
        n = d.nbest if d.sampling else 1
        if n > 1:
            rows = torch.arange(len(batch), device=device).repeat_interleave(n)
            members, lengths = self.scorer.select(members, rows, rows), lengths.repeat_interleave(n)
        lines = [line for line in batch for _ in range(n)]
        prefixes = Prefixes([line.prefix for line in lines], device) if any(line.prefix for line in lines) else None
        a, b = d.max_len_a, d.max_len_b
        if d.beam > 1 and not d.sampling:
            return beam_search(
                self.scorer, members, lengths, d.beam, a, b, d.alpha, d.beta, d.nbest, self.keep_attention, prefixes
            )
        sampler = None
        if d.sampling:
            steps = [
                max(limit, len(line.prefix) + 1) for limit, line in zip(output_limits(lengths, a, b).tolist(), lines)
            ]
            keys = [(line.index, i % n) for i, line in enumerate(lines)]
            sampler = Sampler.seeded(keys, steps, d.seed, device, topk=d.topk, topp=d.topp, temperature=d.temperature)
        hyps = greedy_encoded(
            self.scorer, members, lengths, a, b, self.keep_attention, self.logprobs, sampler=sampler, prefixes=prefixes
        )
        return [hyps[i : i + n] for i in range(0, len(hyps), n)]

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


@dataclass
class Outputs:
    """Where results go besides the translations themselves."""

    scores: bool = False
    alignments: TextIO | None = None
    plot_dir: Path | None = None
    plot_max: int = 10
    show_attention: bool = False
    shown: int = 0


def format_line(translator: Search, line: Line, outputs: Outputs) -> str:
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


def write_attention(translator: Search, line: Line, outputs: Outputs) -> None:
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


def translate_texts(
    translator: Search, texts: list[str], first: int, name: str, prefixes: Sequence[str] | None = None
) -> list[Line]:
    """``texts``, lines ``first``... of input ``name`` (the name warnings give), as
    translated :class:`Line` s, in order: what ``nmt translate`` and the Python API's
    ``Translator.translate`` both do with a chunk of input. ``prefixes``: a target prefix
    for each text, which the search is to continue."""
    lines = [Line(first + i, text) for i, text in enumerate(texts)]
    for i, line in enumerate(lines):
        translator.encode(line, name, prefixes[i] if prefixes is not None else None)
    translator.translate(lines)
    return lines


def load(models: Path | str | Sequence[Path | str], decode: dict, device: str) -> tuple[list[Inference], str | None]:
    """The checkpoints ``models`` ready to translate (several: an ensemble, the first one's
    config serving), the first's ``decode:`` section overridden by ``decode``'s non-``None``
    values, and a note when bf16 was asked for where it runs slower than fp32; what
    ``nmt translate`` and the Python API's ``Translator.load`` both call."""
    members = load_all(models, decode, devices.resolve(device))
    return members, devices.slow_bf16_note(members[0].device, decode.get("precision"), "--precision")


def stream(
    translator: Search, source: str | None, out: TextIO, outputs: Outputs, prefixes: Sequence[str] | None = None
) -> dict:
    """Translate ``source`` (a path, or stdin for ``None``/``-``) into ``out``, each line's
    output starting with its line of ``prefixes`` when given; returns counts."""
    start, count, tokens = time.perf_counter(), 0, 0
    if prefixes is not None and source not in (None, "-") and Path(source).is_file():
        _same_count(sum(1 for _ in nio.read_lines(source)), len(prefixes))  # before any output
    with nio.open_input(source) as (stream, name, interactive):
        for raw_lines in nio.checked(nio.line_chunks(stream, translator.chunk_lines, interactive), name):
            texts = []
            for raw in raw_lines:
                text, replaced = nio.decode_line(raw, name, count + len(texts) + 1, "replace")
                if replaced:
                    warn(f"{name}:{count + len(texts) + 1}: invalid UTF-8 replaced with U+FFFD")
                texts.append(text)
            if prefixes is not None and count + len(texts) > len(prefixes):
                _same_count(count + len(texts), len(prefixes))
            chunk = prefixes[count : count + len(texts)] if prefixes is not None else None
            lines = translate_texts(translator, texts, count, name, chunk)
            count += len(lines)
            for line in lines:
                out.write(format_line(translator, line, outputs) + "\n")
                write_attention(translator, line, outputs)
                tokens += len(line.hyps[0].tokens) + 1 if line.hyps else 0
            out.flush()
            if outputs.alignments is not None:
                outputs.alignments.flush()
    if prefixes is not None:
        _same_count(count, len(prefixes))
    return {"lines": count, "tokens": tokens, "seconds": time.perf_counter() - start}


def _same_count(lines: int, prefixes: int) -> None:
    if lines != prefixes:
        raise NmtError(f"--prefix has {prefixes} lines but the input has {'at least ' * (lines > prefixes)}{lines}")


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
        search = "sampling" if self.decode.sampling else search
        rate = self.lines / max(self.seconds, 1e-9)
        line = (
            f"nmt translate: {self.lines:,} line{'s' * (self.lines != 1)}, {self.tokens:,} target tokens "
            f"in {self.seconds:.1f}s ({rate:,.0f} lines/s; {search}, {self.precision})"
        )
        return f"{self.note}\n{line}" if self.note else line


def run(
    model: Path | str | Sequence[Path | str],
    source: str,
    output: str,
    decode: dict,
    device: str,
    outputs: Outputs,
    alignments: Path | None,
    prefixes: Path | str | Sequence[str] | None = None,
    weights: Sequence[float] | str | None = None,
) -> Result:
    """Translate ``source`` (a path, or ``-``: stdin) with checkpoint ``model`` (several: an
    ensemble, with ``weights``) into ``output`` (a path, written whole or not at all, or
    ``-``: stdout). ``decode`` holds the keys that replace the first checkpoint's
    ``decode:`` section (``None`` values keep it); ``alignments`` is a file for the hard
    alignments, besides what ``outputs`` asks for; ``prefixes``: a file of target
    prefixes, or the prefixes, one per input line."""
    if alignments and "-" not in (output, str(alignments)) and Path(output).resolve() == Path(alignments).resolve():
        if not writing.written_through(Path(output)):  # /dev/null twice is fine: nothing is replaced
            # whichever of the two writes of one file finishes last would replace the other
            raise NmtError(f"-o {output} and --alignments {alignments}: the same file; give each its own")
    if outputs.plot_dir is not None:
        alignment.check_matplotlib()
        if outputs.plot_dir.exists() and not outputs.plot_dir.is_dir():
            raise NmtError(f"--attention-plot {outputs.plot_dir}: exists and is not a directory")
        outputs.plot_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(prefixes, (str, Path)):
        prefixes = list(nio.read_lines(prefixes))
    (inference, *others), note = load(model, decode, device)
    keep_attention = bool(alignments or outputs.plot_dir or outputs.show_attention)
    translator = Search(inference, keep_attention, outputs.scores, others, ensemble_weights(weights, 1 + len(others)))
    with contextlib.ExitStack() as stack:
        out = sys.stdout if output == "-" else stack.enter_context(writing.atomic_file(output))
        if alignments:
            outputs = replace(outputs, alignments=stack.enter_context(writing.atomic_file(alignments)))
        counts = stream(translator, source, out, outputs, prefixes)
    return Result(**counts, decode=translator.decode, precision=inference.precision_line, note=note)
