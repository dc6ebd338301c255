"""Integration: `nmt prep` on the first 2,000 Multi30k de-en training pairs and the real
validation set (data from $MULTI30K_DIR; nothing is copied into the repository)."""

from __future__ import annotations

import gzip
import hashlib
import itertools

import pytest
from conftest import assert_ok, decoded, ids, manifest, read_text_lines, run_prep

from nmt_cli.config import DataConfig
from nmt_cli.prep.filters import normalize

pytestmark = pytest.mark.multi30k

SLICE = 2000


@pytest.fixture(scope="module")
def prepped(tmp_path_factory, multi30k_dir):
    tmp_path = tmp_path_factory.mktemp("multi30k")
    for lang in ("de", "en"):
        with gzip.open(multi30k_dir / f"train.{lang}.gz", "rb") as f:
            (tmp_path / f"train.{lang}").write_bytes(b"".join(itertools.islice(f, SLICE)))
    result = run_prep(
        tmp_path,
        "--train", tmp_path / "train",
        "--valid", multi30k_dir / "val",
        "--vocab-size", "1000",
        "--out", tmp_path / "out",
    )  # fmt: skip
    assert_ok(result)
    return tmp_path / "out"


def test_manifest(prepped, multi30k_dir):
    m = manifest(prepped)
    train, valid = m["splits"]["train"], m["splits"]["valid"]
    assert train["lines_read"] == SLICE
    assert 1900 < train["pairs_kept"] <= SLICE
    assert train["pairs_kept"] == SLICE - sum(train["drops"].values())
    assert valid["lines_read"] == valid["pairs_kept"] == 1014
    assert m["vocab"]["size"] == {"de": 1000, "en": 1000}
    assert m["special_ids"] == {"pad": 0, "unk": 1, "sos": 2, "eos": 3}
    val_inputs = [i for i in m["inputs"] if i["split"] == "valid"]
    for info in val_inputs:
        path = multi30k_dir / f"val.{info['lang']}.gz"
        assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert info["lines"] == 1014


def test_id_files(prepped):
    m = manifest(prepped)
    for split, n in (("train", m["splits"]["train"]["pairs_kept"]), ("valid", 1014)):
        for lang in ("de", "en"):
            sentences = ids(prepped, split, lang)
            assert len(sentences) == n
            assert (prepped / f"{split}.{lang}.off").stat().st_size == 8 * (n + 1)
            assert all(sentences[:50]) and max(max(s) for s in sentences if s) < 1000
            assert sum(map(len, sentences)) == m["splits"][split]["tokens"][lang]
            if split == "train":
                assert max(map(len, sentences)) <= 128


def test_round_trip(prepped):
    cfg = DataConfig()
    for lang in ("de", "en"):
        raw = read_text_lines(prepped / f"valid.{lang}.txt")
        assert len(raw) == 1014
        sentences = ids(prepped, "valid", lang)
        texts = decoded(prepped, "valid", lang)
        # characters never seen in the 2,000 training pairs become <unk> (id 1): compare the rest
        known = [(text, line) for text, line, s in zip(texts, raw, sentences) if 1 not in s]
        assert len(known) > 0.9 * len(raw)
        assert all(text == normalize(line, cfg) for text, line in known)
