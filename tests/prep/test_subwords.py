"""SentencePiece models with nmt's fixed special ids (prep/subwords.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_pairs, train_foreign_model, write_lines

from nmt_cli import vocab
from nmt_cli.config import DataConfig
from nmt_cli.errors import NmtError
from nmt_cli.prep import subwords


@pytest.fixture
def text(tmp_path) -> Path:
    """300 generated German sentences, one per line."""
    return write_lines(tmp_path / "train.de", [de for de, _ in make_pairs(300, 1)])


def cfg(**kw) -> DataConfig:
    return DataConfig(vocab_size=kw.pop("vocab_size", 100), **kw)


def test_constants():
    assert (vocab.PAD, vocab.UNK, vocab.SOS, vocab.EOS) == (0, 1, 2, 3)
    assert vocab.SPECIAL_IDS == {"pad": 0, "unk": 1, "sos": 2, "eos": 3}
    assert vocab.SPECIAL_PIECES == {"pad": "<pad>", "unk": "<unk>", "sos": "<s>", "eos": "</s>"}


@pytest.mark.parametrize("spm_type", ["unigram", "bpe"])
def test_trained_model_has_nmt_special_ids(text, spm_type):
    proto = subwords.train([text], cfg(spm_type=spm_type), 1, "de")
    sp = subwords.from_bytes(proto, "m")
    assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (0, 1, 2, 3)
    assert [sp.id_to_piece(i) for i in range(4)] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert sp.get_piece_size() == 100
    line = text.read_text(encoding="utf-8").splitlines()[0]
    assert sp.decode(sp.encode(line)) == line


def test_training_is_deterministic(text):
    assert subwords.train([text], cfg(), 1, "de") == subwords.train([text], cfg(), 1, "de")


def test_no_normalization_of_its_own(tmp_path):
    """NFKC is prep's job: the model keeps a ligature it was trained on as it is."""
    path = write_lines(tmp_path / "t", ["ﬁsch und ﬂuss"] * 50 + [de for de, _ in make_pairs(100, 4)])
    sp = subwords.from_bytes(subwords.train([path], cfg(vocab_size=60), 1, "de"), "m")
    assert sp.decode(sp.encode("ﬁsch")) == "ﬁsch"
    assert vocab.UNK not in sp.encode("ﬁsch")


def test_vocab_size_too_high(text):
    with pytest.raises(
        NmtError,
        match=r"^--vocab-size 50000 is more than the de training text supports \(at most \d+\); lower --vocab-size$",
    ):
        subwords.train([text], cfg(vocab_size=50000), 1, "de")


def test_vocab_size_below_characters(text):
    with pytest.raises(NmtError, match=r"^--vocab-size 10 is below the \d+ symbols the de\+en training text needs"):
        subwords.train([text], cfg(vocab_size=10), 1, "de+en")


def test_other_training_errors_show_sentencepiece_last_line():
    message = subwords._explain("trainer.cc(1) [x]\nsomething odd happened", cfg(), "en")
    assert message == "SentencePiece training failed for en: something odd happened"


def test_vocab_text(text):
    sp = subwords.from_bytes(subwords.train([text], cfg(), 1, "de"), "m")
    lines = subwords.vocab_text(sp).splitlines()
    assert len(lines) == sp.get_piece_size()
    assert [line.split("\t")[0] for line in lines] == [sp.id_to_piece(i) for i in range(len(lines))]
    assert all(float(line.split("\t")[1]) == pytest.approx(sp.get_score(i), abs=1e-4) for i, line in enumerate(lines))


def test_read_model_returns_its_bytes(tmp_path, text):
    proto = subwords.train([text], cfg(), 1, "de")
    (tmp_path / "m.model").write_bytes(proto)
    assert subwords.read_model(tmp_path / "m.model") == proto


def test_model_with_default_special_ids_is_refused(tmp_path, text):
    path = train_foreign_model(text, tmp_path / "foreign")
    with pytest.raises(NmtError) as e:
        subwords.read_model(path)
    message = str(e.value)
    assert message.startswith(f"{path}: special ids ")
    assert "'pad': -1, 'unk': 0, 'sos': 1, 'eos': 2" in message
    assert "retrain it with pad_id=0 unk_id=1 bos_id=2 eos_id=3" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "nope.model", "no such SentencePiece model"),
        (lambda p: p, "is a directory, not a SentencePiece model"),
        (
            lambda p: (p / "junk.model").write_bytes(b"\x00\xff junk" * 10) and p / "junk.model",
            "not a SentencePiece model",
        ),
    ],
    ids=["missing", "directory", "garbage"],
)
def test_read_model_errors(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(NmtError, match=f"^{path}: {message}$"):
        subwords.read_model(path)
