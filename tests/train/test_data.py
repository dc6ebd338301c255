"""What `nmt train` reads from a prep directory."""

from __future__ import annotations

import numpy as np
from conftest import VALID_PAIRS, decoded, ids, manifest, read_text_lines

from nmt_cli.train import data as prepared_data
from nmt_cli.vocab import SPECIAL_IDS


def test_load_a_prep_directory(prepped):
    m = manifest(prepped)
    loaded = prepared_data.load(prepped)
    assert loaded.manifest == m
    assert len(loaded.train) == m["splits"]["train"]["pairs_kept"]
    assert len(loaded.valid) == VALID_PAIRS
    # the stores hold the prep's ids; lengths count EOS/SOS
    assert [loaded.train.src[i].tolist() for i in range(3)] == ids(prepped, "train", "de")[:3]
    assert np.array_equal(loaded.valid.tgt_len, [len(x) + 1 for x in ids(prepped, "valid", "en")])
    # references are the raw validation text, not decoded subwords
    assert loaded.valid_refs == read_text_lines(prepped / "valid.en.txt")
    assert len(loaded.valid_refs) == VALID_PAIRS and loaded.valid_refs[0] == decoded(prepped, "valid", "en")[0]
    vocab = loaded.vocab
    assert vocab["special_ids"] == SPECIAL_IDS and vocab["joint"] is True
    assert vocab["src_size"] == vocab["tgt_size"] == m["vocab"]["size"]["de"]


def test_the_target_words_are_those_of_the_training_targets_with_eos_and_unk(prepped):
    loaded = prepared_data.load(prepped)
    seen = {i for sentence in ids(prepped, "train", "en") for i in sentence}
    assert loaded.vocab["tgt_words"] == sorted(seen | {SPECIAL_IDS["eos"], SPECIAL_IDS["unk"]})
    source_only = {i for sentence in ids(prepped, "train", "de") for i in sentence} - seen
    assert source_only  # the joint vocabulary has words of its own per side: the list leaves them out
