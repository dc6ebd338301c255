"""The prepared data a training run reads: id stores, references and vocabularies."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nmt_cli import io as nio
from nmt_cli import vocab
from nmt_cli.errors import NmtError
from nmt_cli.prep import manifest as mf
from nmt_cli.prep import subwords
from nmt_cli.prep.store import IdStore
from nmt_cli.train.batching import PairData

WORDS_CHUNK = 1 << 20  # target ids read at a time by target_words


@dataclass
class Prepared:
    manifest: dict[str, Any]
    train: PairData
    valid: PairData
    valid_refs: list[str]  # raw target text of the validation split
    vocab: dict[str, Any]  # what a checkpoint stores to translate alone
    tgt_spm: Any  # SentencePiece processor that detokenizes validation output


def target_words(train: PairData, vocab_size: int) -> list[int]:
    """The ids that occur on the training data's target side, and EOS and UNK: the words a
    trained model can give any weight to. With a joint vocabulary this leaves out the
    source language's own subwords (Multi30k de-en: 3,960 of 8,000), which translation
    then never scores (``rewrites.inference_decoder``). The mapped ids are read in chunks, so
    memory does not grow with the corpus."""
    seen = np.zeros(vocab_size, dtype=bool)
    ids = train.tgt.ids
    for start in range(0, len(ids), WORDS_CHUNK):
        seen[np.unique(ids[start : start + WORDS_CHUNK])] = True
    seen[[vocab.EOS, vocab.UNK]] = True
    return np.flatnonzero(seen).tolist()


def check_ids(store: IdStore, name: str, vocab_size: int) -> None:
    """Every id of a split below its vocabulary's size, and offsets that make sentences
    of it; else a one-line error naming the file and the first bad sentence."""
    offsets = store.offsets
    if len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != len(store.ids) or (np.diff(offsets) < 0).any():
        raise NmtError(f"{name}: its offsets (.off) do not cut it into sentences; run `nmt prep --force` again")
    for start in range(0, len(store.ids), WORDS_CHUNK):
        chunk = store.ids[start : start + WORDS_CHUNK]
        bad = np.flatnonzero((chunk >= vocab_size) | (chunk < 0))
        if bad.size:
            at = start + int(bad[0])
            sentence = int(np.searchsorted(offsets, at, side="right"))  # 1-based
            raise NmtError(
                f"{name}: sentence {sentence} holds id {int(store.ids[at])}, beyond the vocabulary "
                f"of {vocab_size}; run `nmt prep --force` again"
            )


def load(directory: Path | str) -> Prepared:
    directory = Path(directory)
    manifest = mf.load(directory)
    if changed := mf.changed_files(directory, manifest):
        raise NmtError(
            f"{directory}: {', '.join(changed[:3])}{' and more' if len(changed) > 3 else ''} missing or "
            "changed since prep (size or sha256 differs from manifest.json); run `nmt prep --force` again"
        )
    src, tgt = manifest["src_lang"], manifest["tgt_lang"]
    dtype = manifest["id_dtype"]

    def pairs(split: str) -> PairData:
        return PairData(IdStore(directory, split, src, dtype[src]), IdStore(directory, split, tgt, dtype[tgt]))

    vocab = {
        "src_lang": src,
        "tgt_lang": tgt,
        "src_size": manifest["vocab"]["size"][src],
        "tgt_size": manifest["vocab"]["size"][tgt],
        "joint": manifest["vocab"]["joint"],
        "src_spm": (directory / manifest["vocab"]["model"][src]).read_bytes(),
        "tgt_spm": (directory / manifest["vocab"]["model"][tgt]).read_bytes(),
        "special_ids": manifest["special_ids"],
    }
    train, valid = pairs("train"), pairs("valid")
    for split, data in (("train", train), ("valid", valid)):
        check_ids(data.src, f"{directory}/{split}.{src}.ids", vocab["src_size"])
        check_ids(data.tgt, f"{directory}/{split}.{tgt}.ids", vocab["tgt_size"])
    vocab["tgt_words"] = target_words(train, vocab["tgt_size"])
    refs = list(nio.read_lines(directory / f"valid.{tgt}.txt"))
    return Prepared(manifest, train, valid, refs, vocab, subwords.from_bytes(vocab["tgt_spm"], "target model"))
