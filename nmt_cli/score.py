"""`nmt score`: corpus and sentence scores with sacrebleu, paired significance tests, and
the log-probability of references under a model (forced decoding, ``decode/forced.py``).

Everything numeric is sacrebleu's own (BLEU, chrF, TER, paired bootstrap resampling and
approximate randomization), so figures and signatures match what the field reports;
this module reads the files, checks them, and lays the results out as a table, JSON or
TSV.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from sacrebleu.metrics import BLEU, CHRF, TER

from nmt_cli import io as nio
from nmt_cli.errors import NmtError

METRICS = ("bleu", "chrf", "ter")


@dataclass
class Options:
    metrics: tuple[str, ...] = ("bleu", "chrf")
    tokenize: str | None = None  # BLEU/TER tokenizer; None: sacrebleu's default (13a)
    lowercase: bool = False
    chrf_word_order: int = 0  # 2: chrF++
    confidence: bool = False  # bootstrap 95% confidence intervals
    paired: str | None = None  # "bs" or "ar": test every system against the first
    samples: int = 0  # resamples / trials; 0: sacrebleu's defaults (1000 / 10000)

    def __post_init__(self) -> None:
        if self.tokenize is not None and self.tokenize not in BLEU.TOKENIZERS:
            raise NmtError(f"--tokenize {self.tokenize!r}: choose from {', '.join(BLEU.TOKENIZERS)}")


@dataclass
class SystemScore:
    name: str
    scores: dict[str, float] = field(default_factory=dict)  # metric -> score
    ci: dict[str, float] = field(default_factory=dict)  # metric -> 95% half-width
    p_value: dict[str, float] = field(default_factory=dict)  # metric -> p against the first system


def paired_test(bootstrap: bool, randomization: bool) -> str | None:
    """``--paired-bs`` / ``--paired-ar`` as :attr:`Options.paired`."""
    if bootstrap and randomization:
        raise NmtError("--paired-bs and --paired-ar: choose one test")
    return "bs" if bootstrap else "ar" if randomization else None


def parse_metrics(text: str) -> tuple[str, ...]:
    names = tuple(m.strip().lower() for m in text.split(",") if m.strip())
    for name in names:
        if name not in METRICS:
            raise NmtError(f"--metrics: unknown metric {name!r}; choose from {', '.join(METRICS)}")
    if not names:
        raise NmtError("--metrics: give at least one of " + ", ".join(METRICS))
    return names


def make_metrics(opts: Options, references: list[list[str]] | None = None) -> dict[str, object]:
    """sacrebleu metric objects by name; with ``references``, they cache them (paired tests)."""
    kwargs = {"references": references} if references is not None else {}
    made = {}
    for name in opts.metrics:
        if name == "bleu":
            made[name] = BLEU(
                lowercase=opts.lowercase, **({"tokenize": opts.tokenize} if opts.tokenize else {}), **kwargs
            )
        elif name == "chrf":
            made[name] = CHRF(word_order=opts.chrf_word_order, lowercase=opts.lowercase, **kwargs)
        else:
            made[name] = TER(**kwargs)  # sacrebleu's default: case-insensitive, as its command line
    return made


def read_text(path: str, what: str) -> list[str]:
    """All lines of a plain/.gz file or stdin (``-``); invalid UTF-8 is an error with its line."""
    if path == "-":
        data = sys.stdin.buffer.read()
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        return [nio.decode_line(raw, "<stdin>", i, "error")[0] for i, raw in enumerate(lines, 1)]
    if Path(path).is_dir():
        raise NmtError(f"{path}: is a directory, not a {what} file")
    return list(nio.read_lines(path))


def load(references: list[str], hypotheses: list[str]) -> tuple[list[list[str]], list[tuple[str, list[str]]]]:
    """Read and check references and systems: same line counts, no empty system file."""
    refs = [read_text(r, "reference") for r in references]
    for path, lines in zip(references[1:], refs[1:]):
        if len(lines) != len(refs[0]):
            raise NmtError(
                f"references differ in length: {references[0]} has {len(refs[0])} lines, {path} has {len(lines)}"
            )
    systems = []
    for path in hypotheses:
        lines = read_text(path, "hypothesis")
        name = "<stdin>" if path == "-" else path
        if not lines:
            raise NmtError(f"{name}: empty hypothesis file (no lines)")
        if len(lines) != len(refs[0]):
            raise NmtError(f"{name} has {len(lines)} lines but reference {references[0]} has {len(refs[0])}")
        systems.append((name, lines))
    return refs, systems


def corpus_scores(
    refs: list[list[str]], systems: list[tuple[str, list[str]]], opts: Options
) -> tuple[list[SystemScore], dict[str, str]]:
    """Every system's scores (with CIs and p-values when asked) and each metric's signature."""
    if opts.paired and len(systems) < 2:
        raise NmtError("--paired-bs/--paired-ar compare systems against the first: give at least two hypothesis files")
    if opts.paired:
        return _paired(refs, systems, opts)
    metrics = make_metrics(opts)
    results, signatures = [], {}
    for name, hyps in systems:
        result = SystemScore(name)
        for key, metric in metrics.items():
            n_bootstrap = (opts.samples or 1000) if opts.confidence else 1
            score = metric.corpus_score(hyps, refs, n_bootstrap=n_bootstrap)
            result.scores[key] = score.score
            if opts.confidence:
                result.ci[key] = score._ci
            signatures[key] = str(metric.get_signature())
        results.append(result)
    return results, signatures


def _paired(refs, systems, opts: Options) -> tuple[list[SystemScore], dict[str, str]]:
    from sacrebleu.significance import PairedTest

    metrics = make_metrics(opts, refs)
    test = PairedTest(
        systems,
        {m.__class__.__name__: m for m in metrics.values()},
        None,
        test_type=opts.paired,
        n_samples=opts.samples,
        n_ar_confidence=0 if opts.paired == "ar" else -1,
    )
    signatures, table = test()  # both keyed by sacrebleu's display names ("chrF2"), in the metrics' order
    results = [SystemScore(name) for name in table.pop("System")]
    for key, column in zip(metrics, table.values()):
        for result, cell in zip(results, column):
            result.scores[key] = cell.score
            if cell.ci is not None:
                result.ci[key] = cell.ci
            if cell.p_value is not None:
                result.p_value[key] = cell.p_value
    return results, {key: str(sig) for key, sig in zip(metrics, signatures.values())}


def sentence_scores(refs: list[list[str]], hyps: list[str], opts: Options) -> list[dict[str, float]]:
    """Per line: sentence BLEU and chrF (sacrebleu's, with its smoothing for BLEU)."""
    bleu = BLEU(
        lowercase=opts.lowercase, effective_order=True, **({"tokenize": opts.tokenize} if opts.tokenize else {})
    )
    chrf = CHRF(word_order=opts.chrf_word_order, lowercase=opts.lowercase)
    rows = []
    for i, hyp in enumerate(hyps):
        line_refs = [r[i] for r in refs]
        bleu_score, chrf_score = bleu.sentence_score(hyp, line_refs).score, chrf.sentence_score(hyp, line_refs).score
        rows.append({"line": i + 1, "bleu": bleu_score, "chrf": chrf_score})
    return rows


def score(
    references: list[str],
    hypotheses: list[str],
    opts: Options,
    fmt: str = "text",
    sentence: bool = False,
    worst: int = 0,
    src: str | None = None,
    out: TextIO | None = None,
) -> None:
    """Score hypothesis files (``-``: stdin) against references and write to ``out`` (stdout)
    each system's corpus scores as a table, JSON or TSV; with ``sentence``, each line's
    scores; with ``worst``, the ``worst`` lines of lowest sentence BLEU (with ``src``'s lines)."""
    out = out or sys.stdout
    refs, systems = load(references, hypotheses)
    if (sentence or worst) and len(systems) != 1:
        raise NmtError("--sentence/--worst score one hypothesis file at a time")
    if worst:
        _worst_lines(sentence_scores(refs, systems[0][1], opts), refs[0], systems[0][1], src, worst, fmt, out)
    elif sentence:
        for row in sentence_scores(refs, systems[0][1], opts):
            out.write(
                json.dumps(row) + "\n" if fmt == "json" else f"{row['line']}\t{row['bleu']:.2f}\t{row['chrf']:.2f}\n"
            )
    elif fmt in ("json", "tsv"):
        out.write((as_json if fmt == "json" else as_tsv)(*corpus_scores(refs, systems, opts)) + "\n")
    else:
        from rich.console import Console

        results, signatures = corpus_scores(refs, systems, opts)
        Console(file=out).print(as_table(results, signatures, opts))
        out.writelines(f"{display_name(key, opts)} signature: {sig}\n" for key, sig in signatures.items())


def forced(
    model: Path | str | list[Path | str],
    src: str | None,
    references: list[str],
    fmt: str,
    batch_size: int,
    device: str,
    weights: str | None = None,
) -> str:
    """Forced decoding: each reference line's log-probability under ``model`` as a translation
    of its ``src`` line, written to stdout; returns the perplexity summary."""
    if src is None:
        raise NmtError("--model needs --src SOURCE: the references are scored as translations of it")
    if len(references) != 1:
        raise NmtError("--model scores one reference file at a time")
    from nmt_cli.decode.forced import score_file

    return score_file(model, src, references[0], sys.stdout, fmt == "json", batch_size, device, weights).summary


def _worst_lines(
    rows: list[dict], refs: list[str], hyps: list[str], src: str | None, count: int, fmt: str, out: TextIO
) -> None:
    """The ``count`` lines of lowest sentence BLEU, with their source, hypothesis and reference."""
    sources = read_text(src, "source") if src else None
    if sources is not None and len(sources) != len(hyps):
        raise NmtError(f"--src {src} has {len(sources)} lines but the hypotheses have {len(hyps)}")
    picked = sorted(rows, key=lambda r: (r["bleu"], r["chrf"]))[:count]
    for row in picked:
        i = row["line"] - 1
        row.update({"hypothesis": hyps[i], "reference": refs[i], **({"source": sources[i]} if sources else {})})
    if fmt == "json":
        out.write(json.dumps(picked, indent=2, ensure_ascii=False) + "\n")
        return
    keys = ["line", "bleu", "chrf"] + (["source"] if sources else []) + ["hypothesis", "reference"]
    digits = 2 if fmt == "tsv" else 1
    cells = [[f"{row[k]:.{digits}f}" if isinstance(row[k], float) else str(row[k]) for k in keys] for row in picked]
    if fmt == "tsv":
        out.writelines("\t".join(line) + "\n" for line in [keys, *cells])
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"the {len(picked)} lowest sentence-BLEU lines", show_lines=True)
    for key in keys:
        name = {"bleu": "BLEU", "chrf": "chrF"}.get(key, key)
        table.add_column(name, overflow="fold", justify="right" if key in ("line", "bleu", "chrf") else "left")
    for line in cells:
        table.add_row(*line)
    Console(file=out).print(table)


# --------------------------------------------------------------------------- output


def display_name(key: str, opts: Options) -> str:
    return {"bleu": "BLEU", "chrf": "chrF++" if opts.chrf_word_order == 2 else "chrF", "ter": "TER"}[key]


def as_json(results: list[SystemScore], signatures: dict[str, str]) -> str:
    """One object: metric -> {score, signature, ci?, p_value?}; keyed by system first when there are several."""

    def system(r: SystemScore) -> dict:
        out = {}
        for key, value in r.scores.items():
            entry = {"score": round(float(value), 4), "signature": signatures.get(key, "")}
            if key in r.ci:
                entry["ci95"] = round(float(r.ci[key]), 4)
            if key in r.p_value:
                entry["p_value"] = round(float(r.p_value[key]), 4)
            out[key] = entry
        return out

    data = system(results[0]) if len(results) == 1 else {r.name: system(r) for r in results}
    return json.dumps(data, indent=2, ensure_ascii=False)


def as_tsv(results: list[SystemScore], signatures: dict[str, str]) -> str:
    lines = ["system\tmetric\tscore\tci95\tp_value\tsignature"]
    for r in results:
        for key, value in r.scores.items():
            ci = f"{r.ci[key]:.4f}" if key in r.ci else ""
            p = f"{r.p_value[key]:.4f}" if key in r.p_value else ""
            lines.append(f"{r.name}\t{key}\t{value:.4f}\t{ci}\t{p}\t{signatures.get(key, '')}")
    return "\n".join(lines)


def as_table(results: list[SystemScore], signatures: dict[str, str], opts: Options):
    """A rich table: a row per system, a column per metric (the signatures go below it)."""
    from rich.table import Table

    table = Table()
    table.add_column("system", overflow="fold")
    keys = list(results[0].scores)
    for key in keys:
        table.add_column(display_name(key, opts), justify="right", no_wrap=True)
    for i, r in enumerate(results):
        cells = []
        for key in keys:
            cell = f"{r.scores[key]:.2f}"
            if key in r.ci:
                cell += f" ± {r.ci[key]:.2f}"
            if key in r.p_value:
                star = "*" if r.p_value[key] < 0.05 else ""
                cell += f" (p = {r.p_value[key]:.4f}){star}"
            elif opts.paired and i == 0:
                cell += " (baseline)"
            cells.append(cell)
        table.add_row(r.name, *cells)
    return table
