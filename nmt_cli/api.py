"""The Python API: the ``nmt`` commands as a translator object and stage functions.

:class:`Translator` is ``nmt translate``: it loads a checkpoint through the same function
and translates through the same chunks, normalization, subwords, batches and length limit,
so its output equals the command's on the same lines and options. :func:`prep`,
:func:`train` and :func:`score` run the stage functions ``nmt prep``, ``nmt train`` and
``nmt score`` run, on the typed config (``config.py``) the commands build from recipes
and flags, and return what the stage made instead of printing it.

A user's mistake raises :class:`~nmt_cli.errors.NmtError`, a failure of the system
:class:`~nmt_cli.errors.EnvError` or an ``OSError``; nothing is printed unless
``progress=True`` asks for progress, and nmt's warnings (a line truncated to the model's
limit) are :class:`~nmt_cli.errors.NmtWarning` s of Python's :mod:`warnings`. Importing
this module loads neither torch nor a stage, and nmt sets nothing of the process, at
import or in a call, unlike the ``nmt`` command in a process of its own (``runtime.setup``):
a program sets torch's threads itself (``torch.set_num_threads``), and gets the command's
memory use in CPU training by setting ``LRU_CACHE_CAPACITY=64`` before it imports torch
(docs/performance.md). :func:`train` seeds torch's random generator, as ``nmt train`` does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from nmt_cli import config
from nmt_cli.config import Config, DataConfig, DecodeConfig
from nmt_cli.errors import NmtError, as_warnings, warn

if TYPE_CHECKING:
    from nmt_cli.decode.inference import Inference
    from nmt_cli.decode.translate import Line, Search
    from nmt_cli.prep.prepare import Outcome
    from nmt_cli.score import Options
    from nmt_cli.search.hypothesis import Hypothesis
    from nmt_cli.train.resume import Progress

__all__ = ["Translator", "Translation", "Scores", "prep", "train", "score"]


@dataclass
class Translation:
    """One line's translation, when :meth:`Translator.translate` is asked for more than text."""

    text: str
    score: float | None = None  # the search's ranking score (with alpha's and beta's penalties); with scores=True
    logprob: float | None = None  # log P(text | line); with scores=True
    tokens: list[str] = field(default_factory=list)  # the target subwords
    alignment: list[tuple[int, int]] | None = None  # (source word, target word) links; with alignments=True
    nbest: list[Translation] = field(
        default_factory=list
    )  # with nbest > 1: the n best, this one (its own nbest empty) first


class Translator:
    """A checkpoint ready to translate: ``nmt translate`` as an object (:meth:`load`)."""

    def __init__(self, members: list[Inference], weights: Sequence[float] | None = None):
        self.inference, self.others, self.weights = members[0], members[1:], weights

    @classmethod
    def load(
        cls,
        models: str | Path | Sequence[str | Path],
        beam: int | None = None,
        device: str = "auto",
        precision: str | None = None,
        quantize: str | None = None,
        weights: Sequence[float] | None = None,
        **options: object,
    ) -> Translator:
        """Load checkpoint ``models`` (``nmt train``'s ``best.pt``; several paths: an
        ensemble, its log-probabilities mixed by ``weights``, equal by default) on ``device``
        (``auto``: CUDA where present, ``cpu``, ``cuda``). ``beam``, ``precision``,
        ``quantize`` and ``options``, the other keys of the ``decode:`` section (``alpha``,
        ``max_len_a``, ``sampling``, ``seed``, ...), replace the checkpoint's values as
        ``nmt translate``'s flags do; ``None`` keeps them."""
        from nmt_cli.decode.inference import ensemble_weights
        from nmt_cli.decode.translate import load

        decode = dict(options, beam=beam, precision=precision, quantize=quantize)
        with as_warnings():
            members, note = load(models, decode, device)
            if note:
                warn(note)
        return cls(members, ensemble_weights(weights, len(members)))

    @property
    def decode(self) -> DecodeConfig:
        """The search settings in effect: the checkpoint's, replaced by :meth:`load`'s."""
        return self.inference.decode

    def translate(
        self,
        lines: Sequence[str],
        nbest: int = 1,
        scores: bool = False,
        alignments: bool = False,
        prefixes: Sequence[str] | None = None,
    ) -> list[str] | list[Translation]:
        """One translation a line, in order; an empty line gives an empty one.

        Texts (``list[str]``), unless more is asked for: then a :class:`Translation` a line,
        with the ``nbest`` best hypotheses (at most the beam), the ``scores`` and the word
        ``alignments`` of each. ``prefixes``: a target prefix a line, which its
        translation continues."""
        from nmt_cli.decode.translate import Search, translate_texts

        if isinstance(lines, str):
            raise NmtError("translate() takes a list of lines, not one string")
        lines = list(lines)
        if prefixes is not None and len(prefixes) != len(lines):
            raise NmtError(f"{len(prefixes)} prefixes for {len(lines)} lines: give one a line")
        inference = replace(self.inference, cfg=config.with_values(self.inference.cfg, "decode", {"nbest": nbest}))
        search = Search(inference, alignments, scores, self.others, self.weights)
        done: list[Line] = []
        with as_warnings():
            for start in range(0, len(lines), search.chunk_lines):
                stop = start + search.chunk_lines
                chunk = list(prefixes[start:stop]) if prefixes is not None else None
                done += translate_texts(search, lines[start:stop], start, "line", chunk)
        if nbest == 1 and not scores and not alignments:
            return [search.detokenize(line, line.hyps[0]) if line.hyps else "" for line in done]
        return [_translation(search, line, nbest, scores, alignments) for line in done]


def _translation(search: Search, line: Line, nbest: int, scores: bool, alignments: bool) -> Translation:
    """A line's :class:`Translation` (an empty line's: an empty hypothesis of score 0, as
    ``nmt translate`` writes it)."""
    from nmt_cli.decode.alignment import links
    from nmt_cli.search.hypothesis import Hypothesis

    def one(hyp: Hypothesis) -> Translation:
        tokens = search.target_pieces(line, hyp)
        pairs = links(hyp.attention, search.source_pieces(line), tokens) if alignments else None
        score, logprob = (hyp.score, hyp.logprob) if scores else (None, None)
        return Translation(search.detokenize(line, hyp), score, logprob, tokens, pairs)

    hyps = [one(hyp) for hyp in line.hyps or [Hypothesis([], 0.0, 0.0)]]
    return replace(hyps[0], nbest=hyps) if nbest > 1 else hyps[0]


def _config(cfg: Config | str | Path) -> Config:
    """``cfg``, or the recipe at that path, checked (a config built in Python may hold
    values no recipe could)."""
    cfg = config.load_recipe(cfg) if isinstance(cfg, (str, Path)) else cfg
    cfg.validate()
    return cfg


def prep(
    cfg: Config | DataConfig | str | Path, out: str | Path, force: bool = False, progress: bool = False
) -> Outcome:
    """``nmt prep``: clean the parallel text ``cfg`` (a config, its ``data:`` section or a
    recipe's path) names, learn subwords and write the prep directory ``out``; ``force``
    replaces a prep of other inputs or options. Returns its manifest (``.manifest``) and
    whether it was up to date already (``.noop``); ``.summary`` is the command's line."""
    from nmt_cli.prep import prepare
    from nmt_cli.progress import Reporter

    data = cfg if isinstance(cfg, DataConfig) else _config(cfg).data
    if isinstance(cfg, DataConfig):
        data.validate()
    with as_warnings():
        return prepare.prepare(data, out, force, Reporter(enabled=None if progress else False))


def train(
    cfg: Config | str | Path,
    data: str | Path,
    out: str | Path,
    resume: bool = False,
    init: str | Path | None = None,
    device: str = "auto",
    progress: bool = False,
) -> Progress:
    """``nmt train``: train the model of ``cfg`` (a config or a recipe's path) on prep
    directory ``data`` into model directory ``out``; ``resume`` continues its newest
    checkpoint, ``init`` starts from a checkpoint's weights. ``progress``: the log and
    validation lines on stderr. Returns where training stopped; a run that Ctrl-C or SIGTERM
    stopped has written a checkpoint, and its ``stop_reason`` begins with ``signal``."""
    from nmt_cli.progress import TrainDisplay
    from nmt_cli.train import loop

    display = TrainDisplay() if progress else None  # None: the loop's quiet display
    with as_warnings(), display or contextlib.nullcontext():
        initial = Path(init) if init is not None else None
        return loop.train(_config(cfg), Path(data), Path(out), resume, device, display, initial)


@dataclass
class Scores:
    """Corpus scores of one system, by metric name (``bleu``, ``chrf``, ``ter``)."""

    scores: dict[str, float]
    signatures: dict[str, str]  # sacrebleu's, to report beside the scores
    ci: dict[str, float] = field(default_factory=dict)  # 95% half-widths, with options.confidence


def score(
    hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]], options: Options | None = None
) -> Scores:
    """``nmt score``: sacrebleu's corpus scores of ``hypotheses`` (lines) against one list
    of reference lines or several; ``options``: ``score.Options`` (BLEU and chrF unless
    it says otherwise)."""
    from nmt_cli import score as scoring

    if not hypotheses:
        raise NmtError("no hypotheses to score")
    refs = [list(references)] if references and isinstance(references[0], str) else [list(r) for r in references]
    for ref in refs:
        if len(ref) != len(hypotheses):
            raise NmtError(f"{len(hypotheses)} hypotheses but {len(ref)} references: give one a line")
    results, signatures = scoring.corpus_scores(refs, [("hypotheses", list(hypotheses))], options or scoring.Options())
    return Scores(results[0].scores, signatures, results[0].ci)
