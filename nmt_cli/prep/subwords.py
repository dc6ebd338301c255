"""SentencePiece subword models with the toolkit's fixed special ids (``vocab.py``)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import sentencepiece as spm

from nmt_cli.config import DataConfig
from nmt_cli.errors import NmtError
from nmt_cli.vocab import EOS, PAD, SOS, SPECIAL_IDS, SPECIAL_PIECES, UNK

ZIP = b"PK\x03\x04"  # how a file torch.save wrote starts: an nmt checkpoint, not a SentencePiece model


def train(inputs: list[Path], cfg: DataConfig, threads: int, what: str) -> bytes:
    """Train a SentencePiece model on cleaned text files; returns the serialized model.

    Our own cleaning (``prep/filters.py``) already normalized the text, so SentencePiece
    is told to apply no normalization of its own (``identity``, whitespace kept as is): the same cleaning runs
    again on raw text at translation time, and the model sees what it was trained on.
    """
    spm.set_random_generator_seed(cfg.seed)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            input=[str(p) for p in inputs],
            model_writer=model,
            model_type=cfg.spm_type,
            vocab_size=cfg.vocab_size,
            character_coverage=cfg.character_coverage,
            input_sentence_size=cfg.spm_sample,
            shuffle_input_sentence=True,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,  # whitespace is the `whitespace` text step's job
            pad_id=PAD,
            unk_id=UNK,
            bos_id=SOS,
            eos_id=EOS,
            pad_piece=SPECIAL_PIECES["pad"],
            unk_piece=SPECIAL_PIECES["unk"],
            bos_piece=SPECIAL_PIECES["sos"],
            eos_piece=SPECIAL_PIECES["eos"],
            num_threads=threads,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise NmtError(_explain(str(e), cfg, what)) from None
    return model.getvalue()


def _explain(message: str, cfg: DataConfig, what: str) -> str:
    """Turn SentencePiece's internal error text into advice a user can act on."""
    if m := re.search(r"Vocabulary size too high \((\d+)\).*<= (\d+)", message):
        return (
            f"--vocab-size {m[1]} is more than the {what} training text supports (at most {m[2]}); lower --vocab-size"
        )
    if m := re.search(r"smaller than required_chars\. (\d+) vs (\d+)", message):
        return (
            f"--vocab-size {m[1]} is below the {m[2]} symbols the {what} training text needs "
            f"(characters plus 4 specials); raise --vocab-size or lower --character-coverage"
        )
    return f"SentencePiece training failed for {what}: {message.splitlines()[-1]}"


def read_model(path: str | Path, side: str = "joint") -> bytes:
    """The bytes of a SentencePiece model file, or of the model for ``side`` (``src``,
    ``tgt``, ``joint``) in an nmt checkpoint, checked to use nmt's special ids."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            proto = f.read(4)
            if proto == ZIP:
                from nmt_cli import checkpoint  # torch, which prep needs for nothing else

                proto = checkpoint.subword_model(path, side)
            else:
                proto += f.read()
    except FileNotFoundError:
        raise NmtError(f"{path}: no such SentencePiece model") from None
    except IsADirectoryError:
        raise NmtError(f"{path}: is a directory, not a SentencePiece model") from None
    from_bytes(proto, str(path))
    return proto


def from_bytes(proto: bytes, name: str) -> spm.SentencePieceProcessor:
    sp = spm.SentencePieceProcessor()
    try:
        sp.load_from_serialized_proto(proto)
    except (RuntimeError, OSError):
        raise NmtError(f"{name}: not a SentencePiece model") from None
    found = {"pad": sp.pad_id(), "unk": sp.unk_id(), "sos": sp.bos_id(), "eos": sp.eos_id()}
    if found != SPECIAL_IDS:
        raise NmtError(
            f"{name}: special ids {found} differ from nmt's {SPECIAL_IDS}; "
            "retrain it with pad_id=0 unk_id=1 bos_id=2 eos_id=3"
        )
    return sp


def vocab_text(sp: spm.SentencePieceProcessor) -> str:
    """The vocabulary as ``piece<TAB>score`` lines, id order (line n is id n-1)."""
    return "".join(f"{sp.id_to_piece(i)}\t{sp.get_score(i) + 0.0:g}\n" for i in range(sp.get_piece_size()))
