"""Integration: prep a 2,000-pair Multi30k de-en slice, train the tiny recipe on it, and
translate a real validation sentence from the checkpoint alone."""

from __future__ import annotations

import gzip
import itertools
import json

import pytest
import torch
from conftest import assert_ok, run_prep, run_train, sets

from nmt_cli import checkpoint
from nmt_cli.model import saved
from nmt_cli.prep import subwords
from nmt_cli.search.greedy import greedy
from nmt_cli.vocab import EOS

pytestmark = pytest.mark.multi30k


def test_prep_train_translate_on_a_multi30k_slice(tmp_path, multi30k_dir):
    for lang in ("de", "en"):
        with gzip.open(multi30k_dir / f"train.{lang}.gz", "rb") as f:
            (tmp_path / f"train.{lang}").write_bytes(b"".join(itertools.islice(f, 2000)))
    prep = tmp_path / "prep"
    assert_ok(
        run_prep(
            tmp_path,
            "--train",
            tmp_path / "train",
            "--valid",
            multi30k_dir / "val",
            "--vocab-size",
            "1000",
            "--out",
            prep,
        )
    )
    model_dir = tmp_path / "model"
    assert_ok(
        run_train(prep, model_dir, *sets("train.max_steps=40", "train.valid_every=20", "train.valid_batch_size=256"))
    )

    events = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in events if e["event"] == "train"]
    assert losses[-1] < losses[0]  # it learns
    assert [e["step"] for e in events if e["event"] == "valid"] == [20, 40]

    payload = checkpoint.load(model_dir / "best.pt")
    model, _ = saved.load_model(payload)
    sp = subwords.from_bytes(payload["vocab"]["src_spm"], "source")
    with gzip.open(multi30k_dir / "val.de.gz", "rt", encoding="utf-8") as f:
        sentence = f.readline().strip()
    src = torch.tensor([sp.encode(sentence) + [EOS]])
    ids = greedy(model, src, torch.tensor([src.size(1)]), 1.5, 10)[0].tokens
    text = subwords.from_bytes(payload["vocab"]["tgt_spm"], "target").decode(ids)
    assert isinstance(text, str) and EOS not in ids
