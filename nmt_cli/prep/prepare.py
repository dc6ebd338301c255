"""``nmt prep``: raw parallel text in, a prep directory out.

The stages, each streaming (memory stays flat as the corpus grows, beyond the
SentencePiece training sample and, when ``dedup`` is on, 16 bytes per kept pair):

1. **scan** every input once: sha256, line count, UTF-8 check; source and target of a
   split must have as many lines. Errors surface here, before any work is written.
2. **no-op check**: the fingerprint of version, options and input bytes equals the one in
   an existing ``OUT/manifest.json``: nothing to do.
3. **clean** the training split (text steps, empty and duplicate filters) into temporary
   text files; **train** SentencePiece on them (or load given models).
4. **encode** every split into memory-mappable id files (``prep/store.py``); the training
   split also passes the length and ratio filters, which count subwords.
5. write ``manifest.json``; the whole directory was built under a temporary name and is
   renamed into place only now.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nmt_cli import __version__, lock, vocab, writing
from nmt_cli import io as nio
from nmt_cli.config import DataConfig, to_dict
from nmt_cli.errors import NmtError
from nmt_cli.prep import manifest as mf
from nmt_cli.prep import store, subwords
from nmt_cli.prep.filters import PairFilter
from nmt_cli.progress import Reporter

CHUNK = 8192  # sentences encoded per SentencePiece call


@dataclass
class Split:
    name: str  # "train", "valid", or a test prefix's file name (e.g. "test_2016_flickr")
    role: str  # "train" | "valid" | "test"
    prefix: str


@dataclass
class Outcome:
    out: Path
    manifest: dict[str, Any]
    noop: bool
    seconds: float

    @property
    def summary(self) -> str:
        """One line: each split's pairs kept (and why others were dropped), the vocabulary."""
        if self.noop:
            return f"nmt prep: {self.out} is up to date (same inputs and options); nothing to do"
        parts = []
        for name, split in self.manifest["splits"].items():
            drops = ", ".join(f"{k} {v}" for k, v in split["drops"].items() if v)
            kept = f"{split['lines_read']} -> " if split["role"] == "train" else ""
            parts.append(f"{name} {kept}{split['pairs_kept']} pairs" + (f" (dropped: {drops})" if drops else ""))
        vocab = self.manifest["vocab"]
        sizes = "/".join(str(n) for n in dict.fromkeys(vocab["size"].values()))
        kind = ("joint" if vocab["joint"] else "separate") + (
            ", reused" if vocab["reused"] else f" {self.manifest['options']['spm_type']}"
        )
        return f"nmt prep: {'; '.join(parts)}; vocab {sizes} ({kind}); wrote {self.out} in {self.seconds:.1f}s"


def prepare(cfg: DataConfig, out: Path | str, force: bool = False, reporter: Reporter | None = None) -> Outcome:
    """Run every stage of prep; returns the manifest and whether anything was done.

    One process at a time builds ``out`` (:func:`nmt_cli.lock.owner`); it first removes
    what a killed build of ``out`` left beside it.
    """
    with lock.owner(out):
        lock.remove_stale(Path(out).parent, lock.build_names(Path(out)))
        return _prepare(cfg, out, force, reporter)


def _prepare(cfg: DataConfig, out: Path | str, force: bool, reporter: Reporter | None) -> Outcome:
    start = time.perf_counter()
    out, reporter = Path(out), reporter or Reporter(enabled=False)
    splits = plan_splits(cfg)
    existing = check_out_dir(out)
    with reporter.session():
        inputs = scan_inputs(splits, cfg, reporter)
        reused = {role: _sha256(subwords.read_model(path, role)) for role, path in reused_model_paths(cfg).items()}
        fingerprint = mf.fingerprint(to_dict(cfg), inputs, reused)
        if is_up_to_date(out, existing, fingerprint, force):
            return Outcome(out, existing, True, time.perf_counter() - start)
        with writing.atomic_dir(out) as tmp:
            manifest = build(tmp, cfg, splits, inputs, fingerprint, reporter)
    return Outcome(out, manifest, False, time.perf_counter() - start)


def plan_splits(cfg: DataConfig) -> list[Split]:
    for key in ("src_lang", "tgt_lang", "train", "valid"):
        if not getattr(cfg, key):
            raise NmtError(f"missing --{key.replace('_', '-')} (data.{key})")
    if cfg.src_lang == cfg.tgt_lang:
        raise NmtError(f"--src-lang and --tgt-lang are both {cfg.src_lang!r}")
    splits = [Split("train", "train", cfg.train), Split("valid", "valid", cfg.valid)]
    for prefix in cfg.test:
        name = Path(prefix).name
        if name in {s.name for s in splits}:
            raise NmtError(f"--test {prefix}: a split named {name!r} is already there; give test files distinct names")
        splits.append(Split(name, "test", prefix))
    return splits


def scan_inputs(splits: list[Split], cfg: DataConfig, reporter: Reporter) -> list[dict[str, Any]]:
    """Hash, count and UTF-8-check every input; a split's two sides must have equal lines."""
    hint = "; use --on-invalid-utf8 replace to go on with U+FFFD"
    inputs = []
    for split in reporter.track(splits, "scanning inputs", total=len(splits)):
        src, tgt = (nio.input_path(split.prefix, lang) for lang in (cfg.src_lang, cfg.tgt_lang))
        infos = [nio.scan_file(path, cfg.on_invalid_utf8, hint) for path in (src, tgt)]
        if infos[0].lines != infos[1].lines:
            raise NmtError(
                f"{split.name}: {src} has {infos[0].lines} lines but {tgt} has {infos[1].lines}; "
                "source and target must be line-aligned"
            )
        for lang, info in zip((cfg.src_lang, cfg.tgt_lang), infos):
            inputs.append({"split": split.name, "lang": lang, **vars(info)})
    return inputs


def reused_model_paths(cfg: DataConfig) -> dict[str, Path]:
    if cfg.spm_model:
        return {"joint": Path(cfg.spm_model)}
    if cfg.src_spm_model:
        return {"src": Path(cfg.src_spm_model), "tgt": Path(cfg.tgt_spm_model)}
    return {}


def check_out_dir(out: Path) -> dict[str, Any] | None:
    """The manifest of the prep directory already at ``out`` (``None`` when absent or empty).

    Refuses, before any work, a file or a directory that is not a prep directory.
    """
    if out.resolve() == Path.cwd() or out.resolve() in Path.cwd().parents:
        raise NmtError(f"--out {out}: is the current directory (or holds it); name a directory to create")
    if not out.exists():
        return None
    if not out.is_dir():
        raise NmtError(f"{out}: exists and is not a directory")
    if not any(out.iterdir()):
        return None
    existing = mf.read(out)
    if existing is None:
        raise NmtError(f"{out}: holds other files (it is not an nmt prep directory); choose another --out")
    return existing


def is_up_to_date(out: Path, existing: dict[str, Any] | None, fingerprint: str, force: bool) -> bool:
    """Whether ``out`` already holds this very prep; other preps are replaced only with ``force``."""
    if existing is None:
        return False
    if existing.get("fingerprint") == fingerprint and mf.is_intact(out, existing):
        return True
    if not force:
        raise NmtError(f"{out}: holds a prep of other inputs or options (or a damaged one); add --force to replace it")
    return False


def build(
    tmp: Path, cfg: DataConfig, splits: list[Split], inputs: list[dict], fingerprint: str, reporter: Reporter
) -> dict:
    """Fill ``tmp`` with models, vocabularies, id files and the manifest."""
    langs = (cfg.src_lang, cfg.tgt_lang)
    path_of = {(i["split"], i["lang"]): Path(i["path"]) for i in inputs}
    lines_of = {i["split"]: i["lines"] for i in inputs}
    invalid_of = {i["split"]: 0 for i in inputs}
    for i in inputs:
        invalid_of[i["split"]] += i["invalid_utf8_lines"]

    train_filter = PairFilter(cfg)
    clean = [tmp / f"train.clean.{lang}" for lang in langs]
    read = clean_train(
        cfg, [path_of["train", lang] for lang in langs], clean, train_filter, reporter, lines_of["train"]
    )
    models = subword_models(tmp, cfg, clean)
    dtypes = {lang: store.id_dtype(models[lang][1].get_piece_size()) for lang in langs}

    report: dict[str, Any] = {}
    for split in splits:
        if split.role == "train":
            pairs: Iterable[tuple[str, str]] = zip(*[nio.read_lines(p) for p in clean])
            split_filter = train_filter
        else:
            split_filter = PairFilter(cfg)
            pairs = _copy_and_clean(tmp, split, langs, path_of, cfg, split_filter)
        pairs = reporter.track(pairs, f"encoding {split.name}", total=lines_of[split.name])
        tokens, longest, kept = encode_split(tmp, split, langs, pairs, models, dtypes, split_filter)
        if split.role == "train" and kept == 0:
            raise NmtError(f"train: no pairs left after filtering ({_drops_text(read, split_filter)})")
        report[split.name] = {
            "role": split.role,
            "lines_read": lines_of[split.name],
            "pairs_kept": kept,
            "drops": dict(split_filter.dropped) if split.role == "train" else {},
            "changed": {k: split_filter.changed[k] for k in ("nfkc", "whitespace") if getattr(cfg, k)},
            "invalid_utf8_lines": invalid_of[split.name],
            "tokens": tokens,
            "longest": longest,
        }
    for path in clean:
        path.unlink()

    manifest = {
        "tool": mf.TOOL,
        "version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "fingerprint": fingerprint,
        "src_lang": cfg.src_lang,
        "tgt_lang": cfg.tgt_lang,
        "options": to_dict(cfg),
        "inputs": inputs,
        "splits": report,
        "vocab": {
            "joint": models[cfg.src_lang][0] == models[cfg.tgt_lang][0],
            "reused": bool(reused_model_paths(cfg)),
            "model": {lang: models[lang][0] for lang in langs},
            "vocab_file": {lang: models[lang][0].replace(".model", ".vocab") for lang in langs},
            "size": {lang: models[lang][1].get_piece_size() for lang in langs},
        },
        "special_ids": dict(vocab.SPECIAL_IDS),
        "special_pieces": dict(vocab.SPECIAL_PIECES),
        "id_dtype": {lang: dtypes[lang].name for lang in langs},
        "files": {p.name: {"bytes": p.stat().st_size, "sha256": nio.sha256_file(p)} for p in sorted(tmp.iterdir())},
    }
    mf.write(tmp, manifest)
    return manifest


def clean_train(
    cfg: DataConfig, sources: list[Path], clean: list[Path], filt: PairFilter, reporter: Reporter, total: int
) -> int:
    """Stream the training pairs through the text steps and filters into ``clean``."""
    read = kept = 0
    with (
        open(clean[0], "w", encoding="utf-8", newline="\n") as fs,
        open(clean[1], "w", encoding="utf-8", newline="\n") as ft,
    ):
        lines = zip(*[nio.read_lines(p, cfg.on_invalid_utf8) for p in sources])
        for src, tgt in reporter.track(lines, "cleaning train", total=total):
            read += 1
            src, tgt = filt.clean(src), filt.clean(tgt)
            if filt.keep_text(src, tgt):
                fs.write(src + "\n")
                ft.write(tgt + "\n")
                kept += 1
    if kept == 0:
        raise NmtError(f"train: no pairs left after filtering ({_drops_text(read, filt)})")
    return read


def subword_models(tmp: Path, cfg: DataConfig, clean: list[Path]) -> dict[str, tuple[str, Any]]:
    """Train (or load) the SentencePiece model(s); returns lang -> (file name, processor)."""
    src, tgt = cfg.src_lang, cfg.tgt_lang
    reused = reused_model_paths(cfg)
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if reused:
        joint = "joint" in reused
        sides = {src: "joint", tgt: "joint"} if joint else {src: "src", tgt: "tgt"}
        protos = {lang: subwords.read_model(reused[side], side) for lang, side in sides.items()}
    elif cfg.joint:
        joint = True
        proto = subwords.train(clean, cfg, threads, f"{src}+{tgt}")
        protos = {src: proto, tgt: proto}
    else:
        joint = False
        protos = {lang: subwords.train([path], cfg, threads, lang) for lang, path in zip((src, tgt), clean)}
    models = {}
    for lang, proto in protos.items():
        name = "spm.model" if joint else f"spm.{lang}.model"
        (tmp / name).write_bytes(proto)
        sp = subwords.from_bytes(proto, name)
        (tmp / name.replace(".model", ".vocab")).write_text(subwords.vocab_text(sp), encoding="utf-8")
        models[lang] = (name, sp)
    return models


def encode_split(tmp, split, langs, pairs, models, dtypes, filt: PairFilter):
    """Encode pairs chunk by chunk into the split's id files; returns (tokens, longest, kept)."""
    (src, tgt), kept = langs, 0
    longest = {src: 0, tgt: 0}
    with (
        store.IdWriter(tmp, split.name, src, dtypes[src]) as ws,
        store.IdWriter(tmp, split.name, tgt, dtypes[tgt]) as wt,
    ):
        for chunk in _chunks(pairs, CHUNK):
            src_ids = models[src][1].encode([s for s, _ in chunk], out_type=int)
            tgt_ids = models[tgt][1].encode([t for _, t in chunk], out_type=int)
            for s, t in zip(src_ids, tgt_ids):
                if split.role == "train" and not filt.keep_lengths(len(s), len(t)):
                    continue
                ws.add(s)
                wt.add(t)
                kept += 1
                longest[src], longest[tgt] = max(longest[src], len(s)), max(longest[tgt], len(t))
        tokens = {src: ws.tokens, tgt: wt.tokens}
    return tokens, longest, kept


def _copy_and_clean(tmp, split, langs, path_of, cfg, filt: PairFilter) -> Iterator[tuple[str, str]]:
    """Valid/test pairs: keep the raw text beside the ids (references for BLEU), clean it."""
    files = [open(tmp / f"{split.name}.{lang}.txt", "w", encoding="utf-8", newline="\n") for lang in langs]
    with files[0], files[1]:
        for src, tgt in zip(*[nio.read_lines(path_of[split.name, lang], cfg.on_invalid_utf8) for lang in langs]):
            files[0].write(src + "\n")
            files[1].write(tgt + "\n")
            yield filt.clean(src), filt.clean(tgt)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _drops_text(read: int, filt: PairFilter) -> str:
    drops = ", ".join(f"{name} {n}" for name, n in filt.dropped.items() if n)
    return f"read {read}" + (f"; dropped: {drops}" if drops else "")
