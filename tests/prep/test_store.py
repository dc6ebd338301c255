"""The memory-mappable id files of prep/store.py."""

from __future__ import annotations

import numpy as np
import pytest

from nmt_cli.prep.store import OFFSET_DTYPE, IdStore, IdWriter, id_dtype, paths

SENTENCES = [[5, 6, 7], [], [8], [65535, 4, 9, 10], [], [11, 12]]


@pytest.mark.parametrize(
    "vocab_size, dtype", [(100, "<u2"), (65535, "<u2"), (65536, "<u2"), (65537, "<i4"), (250_000, "<i4")]
)
def test_id_dtype_is_the_smallest_that_fits(vocab_size, dtype):
    assert id_dtype(vocab_size) == np.dtype(dtype)
    assert np.iinfo(id_dtype(vocab_size)).max >= vocab_size - 1


def write(root, sentences, dtype="<u2", flush_every=1 << 20, split="train", lang="de"):
    with IdWriter(root, split, lang, np.dtype(dtype), flush_every=flush_every) as w:
        for s in sentences:
            w.add(s)
    return w


def test_file_format(tmp_path):
    w = write(tmp_path, SENTENCES)
    assert (w.sentences, w.tokens) == (6, 10)
    ids_path, off_path = paths(tmp_path, "train", "de")
    assert (ids_path.name, off_path.name) == ("train.de.ids", "train.de.off")
    assert np.fromfile(ids_path, "<u2").tolist() == [i for s in SENTENCES for i in s]
    assert np.fromfile(off_path, OFFSET_DTYPE).tolist() == [0, 3, 3, 4, 8, 8, 10]
    assert off_path.stat().st_size == 8 * (len(SENTENCES) + 1)


@pytest.mark.parametrize("dtype", ["<u2", "<i4"])
@pytest.mark.parametrize("flush_every", [1, 3, 1 << 20])
def test_write_then_read_back(tmp_path, dtype, flush_every):
    write(tmp_path, SENTENCES, dtype, flush_every)
    store = IdStore(tmp_path, "train", "de", dtype)
    assert len(store) == len(SENTENCES)
    assert [store[i].tolist() for i in range(len(store))] == SENTENCES
    assert store.lengths().tolist() == [len(s) for s in SENTENCES]
    assert store.ids.dtype == np.dtype(dtype)
    assert isinstance(store.ids, np.memmap)


def test_flushing_in_chunks_gives_the_same_bytes(tmp_path):
    for name, flush_every in (("a", 1), ("b", 1 << 20)):
        (tmp_path / name).mkdir()
        write(tmp_path / name, SENTENCES, flush_every=flush_every)
    for name in ("train.de.ids", "train.de.off"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_split_of_empty_sentences(tmp_path):
    write(tmp_path, [[], [], []], split="valid", lang="en")
    assert paths(tmp_path, "valid", "en")[0].stat().st_size == 0
    store = IdStore(tmp_path, "valid", "en", "uint16")
    assert len(store) == 3
    assert [store[i].tolist() for i in range(3)] == [[], [], []]
    assert store.lengths().tolist() == [0, 0, 0]


def test_no_sentences(tmp_path):
    write(tmp_path, [])
    store = IdStore(tmp_path, "train", "de", "uint16")
    assert len(store) == 0 and store.lengths().tolist() == []
