"""End-to-end `nmt prep` on the tiny generated corpus: outputs, filters, manifest, re-runs
and every kind of bad input."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import pytest
from conftest import (
    TRAIN_PAIRS,
    VALID_PAIRS,
    assert_ok,
    assert_one_line_error,
    decoded,
    hold_in_child,
    ids,
    leftovers,
    make_pairs,
    manifest,
    model,
    read_text_lines,
    run_prep,
    run_train,
    sets,
    train_foreign_model,
    write_corpus,
    write_lines,
    write_split,
)

import nmt_cli
from nmt_cli.config import DataConfig
from nmt_cli.prep.filters import normalize

BASE = make_pairs(TRAIN_PAIRS, 1)
ISOLATE = ("--max-len", "0", "--max-ratio", "0")  # length filters off: only the tested one acts


def prep_ok(tmp_path: Path, *args, **corpus) -> dict:
    """Write the corpus (with overrides), run prep into tmp_path/out, return the manifest."""
    write_corpus(tmp_path, **corpus)
    result = run_prep(tmp_path, *args)
    assert_ok(result)
    return manifest(tmp_path / "out")


# --------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("spm_type", ["unigram", "bpe"])
@pytest.mark.parametrize("joint", [True, False], ids=["joint", "separate"])
def test_prep_writes_models_ids_and_manifest(tmp_path, corpus, spm_type, joint):
    result = run_prep(tmp_path, "--spm-type", spm_type, "--joint" if joint else "--separate", "--test", corpus / "test")
    assert_ok(result)
    assert result.stdout == ""  # stdout carries data in pipelines: the summary goes to stderr
    (summary,) = result.stderr.splitlines()
    assert summary.startswith("nmt prep: train 300 -> ")
    assert f"({'joint' if joint else 'separate'} {spm_type})" in summary

    out = tmp_path / "out"
    names = {p.name for p in out.iterdir()}
    models = {"spm.model", "spm.vocab"} if joint else {"spm.de.model", "spm.de.vocab", "spm.en.model", "spm.en.vocab"}
    id_files = {
        f"{s}.{lang}.{ext}" for s in ("train", "valid", "test") for lang in ("de", "en") for ext in ("ids", "off")
    }
    texts = {f"{s}.{lang}.txt" for s in ("valid", "test") for lang in ("de", "en")}
    assert names == models | id_files | texts | {"manifest.json"}

    m = manifest(out)
    assert m["options"]["spm_type"] == spm_type and m["options"]["joint"] is joint
    assert m["vocab"]["joint"] is joint and m["vocab"]["reused"] is False
    expected_model = {lang: "spm.model" if joint else f"spm.{lang}.model" for lang in ("de", "en")}
    assert m["vocab"]["model"] == expected_model
    assert m["vocab"]["vocab_file"] == {k: v.replace(".model", ".vocab") for k, v in expected_model.items()}
    assert m["vocab"]["size"] == {"de": 100, "en": 100}
    assert m["id_dtype"] == {"de": "uint16", "en": "uint16"}
    if not joint:
        assert (out / "spm.de.model").read_bytes() != (out / "spm.en.model").read_bytes()
    assert leftovers(out) == []


def test_bpe_and_unigram_models_differ(tmp_path, corpus):
    for kind in ("unigram", "bpe"):
        assert_ok(run_prep(tmp_path, "--spm-type", kind, "--out", tmp_path / kind))
    assert (tmp_path / "unigram/spm.model").read_bytes() != (tmp_path / "bpe/spm.model").read_bytes()


@pytest.mark.parametrize("joint", [True, False], ids=["joint", "separate"])
def test_special_ids_of_trained_models(tmp_path, corpus, joint):
    assert_ok(run_prep(tmp_path, "--joint" if joint else "--separate", "--spm-type", "bpe"))
    out = tmp_path / "out"
    m = manifest(out)
    assert m["special_ids"] == {"pad": 0, "unk": 1, "sos": 2, "eos": 3}
    assert m["special_pieces"] == {"pad": "<pad>", "unk": "<unk>", "sos": "<s>", "eos": "</s>"}
    for lang in ("de", "en"):
        sp = model(out, lang)
        assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (0, 1, 2, 3)
        assert [sp.id_to_piece(i) for i in range(4)] == ["<pad>", "<unk>", "<s>", "</s>"]
        vocab_lines = (out / m["vocab"]["vocab_file"][lang]).read_text(encoding="utf-8").splitlines()
        assert [line.split("\t")[0] for line in vocab_lines[:4]] == ["<pad>", "<unk>", "<s>", "</s>"]
        assert len(vocab_lines) == sp.get_piece_size() == 100
        # ids are stored without SOS/EOS, and every id is a real piece
        all_ids = [i for sentence in ids(out, "train", lang) for i in sentence]
        assert min(all_ids) > 3 and max(all_ids) < 100


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("spm_type", ["unigram", "bpe"])
@pytest.mark.parametrize("joint", [True, False], ids=["joint", "separate"])
def test_encode_decode_round_trip(tmp_path, gz, spm_type, joint):
    cfg = DataConfig()
    # raw valid/test text with things the text steps change
    valid = make_pairs(VALID_PAIRS, 2)
    valid[0] = ("  der   Mann\tläuft ", "the man  runs ")
    valid[1] = ("ein Ｈｕｎｄ", "a ｄｏｇ")
    data = write_corpus(tmp_path, valid=valid, gz=gz)
    args = ("--spm-type", spm_type, "--joint" if joint else "--separate", "--test", data / "test")
    assert_ok(run_prep(tmp_path, *args, *ISOLATE))
    out = tmp_path / "out"
    for split, n in (("valid", VALID_PAIRS), ("test", 20)):
        for lang in ("de", "en"):
            raw = read_text_lines(out / f"{split}.{lang}.txt")
            source = data / (f"{split}.{lang}.gz" if gz else f"{split}.{lang}")
            expected_raw = (
                (gzip.decompress(source.read_bytes()) if gz else source.read_bytes()).decode().split("\n")[:-1]
            )
            assert raw == expected_raw and len(raw) == n
            assert decoded(out, split, lang) == [normalize(line, cfg) for line in raw]
    assert decoded(out, "valid", "de")[:2] == ["der Mann läuft", "ein Hund"]
    splits = manifest(out)["splits"]
    assert splits["valid"]["changed"] == {"nfkc": 2, "whitespace": 2}  # counted per split
    assert splits["train"]["changed"] == {"nfkc": 0, "whitespace": 0}
    # with the length filters off nothing is dropped here, so train decodes line for line
    assert manifest(out)["splits"]["train"]["pairs_kept"] == TRAIN_PAIRS
    assert decoded(out, "train", "en") == [en for _, en in BASE]


# --------------------------------------------------------------------------- manifest


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_manifest_records_inputs_splits_and_files(tmp_path, gz):
    data = write_corpus(tmp_path, gz=gz)
    assert_ok(run_prep(tmp_path, "--test", data / "test", "--dedup"))
    out = tmp_path / "out"
    m = manifest(out)
    assert m["tool"] == "nmt prep" and m["version"] == nmt_cli.__version__
    assert (m["src_lang"], m["tgt_lang"]) == ("de", "en")
    assert len(m["fingerprint"]) == 64

    options = m["options"]
    assert set(options) == set(DataConfig.__dataclass_fields__)
    assert options["dedup"] is True and options["vocab_size"] == 100 and options["max_len"] == 128
    assert options["train"] == str(data / "train") and options["test"] == [str(data / "test")]

    suffix = ".gz" if gz else ""
    expected = [(s, lang) for s in ("train", "valid", "test") for lang in ("de", "en")]
    assert [(i["split"], i["lang"]) for i in m["inputs"]] == expected
    for info in m["inputs"]:
        path = data / f"{info['split']}.{info['lang']}{suffix}"
        assert info["path"] == str(path.resolve())
        assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()  # the .gz bytes, for .gz
        assert info["lines"] == {"train": 300, "valid": 40, "test": 20}[info["split"]]
        assert info["invalid_utf8_lines"] == 0

    train = m["splits"]["train"]
    assert train["role"] == "train" and train["lines_read"] == 300
    assert set(train["drops"]) == {"empty", "duplicate", "too_long", "ratio"}
    assert train["pairs_kept"] == 300 - sum(train["drops"].values())
    assert set(train["changed"]) == {"nfkc", "whitespace"}
    for name, split in m["splits"].items():
        for lang in ("de", "en"):
            lengths = [len(s) for s in ids(out, name, lang)]
            assert len(lengths) == split["pairs_kept"]
            assert split["tokens"][lang] == sum(lengths) and split["longest"][lang] == max(lengths)
    assert m["splits"]["valid"]["role"] == "valid" and m["splits"]["test"]["role"] == "test"

    assert m["vocab"]["size"] == {"de": 100, "en": 100}
    assert m["special_ids"] == {"pad": 0, "unk": 1, "sos": 2, "eos": 3}
    on_disk = {p.name for p in out.iterdir()} - {"manifest.json"}
    assert set(m["files"]) == on_disk
    for name, info in m["files"].items():
        data_bytes = (out / name).read_bytes()
        assert info["bytes"] == len(data_bytes)
        assert info["sha256"] == hashlib.sha256(data_bytes).hexdigest()


# --------------------------------------------------------------------------- filters

NFKC_PAIRS = [("der ﬁsch springt", "the fish jumps"), ("Ｍａｎｎ läuft", "ｍａｎ runs"), ("ein ﬂuss", "a river")]
WHITESPACE_PAIRS = [("  der Mann  läuft ", "the man\truns"), ("ein   Hund", "a dog  "), ("   ", "the dog")]
EMPTY_PAIRS = [("", "the dog runs"), ("der Hund", ""), ("", "")]
DUPLICATE_PAIRS = [BASE[0], BASE[5], (BASE[7][0].replace(" ", "  "), BASE[7][1])]  # the last differs in spaces only

# name: (extra pairs, counter in the split's manifest entry, count when on, flags on, flags off)
TEXT_FILTERS = {
    "nfkc": (NFKC_PAIRS, ("changed", "nfkc"), 4, [], ["--no-nfkc"]),
    "whitespace": (WHITESPACE_PAIRS, ("changed", "whitespace"), 5, [], ["--no-whitespace"]),
    "empty": (EMPTY_PAIRS, ("drops", "empty"), 3, [], ["--keep-empty"]),
    "duplicate": (DUPLICATE_PAIRS, ("drops", "duplicate"), 3, ["--dedup"], []),
}


@pytest.mark.parametrize("on", [True, False], ids=["on", "off"])
@pytest.mark.parametrize("name", TEXT_FILTERS)
def test_text_filter_is_counted_and_switchable(tmp_path, name, on):
    extra, (group, key), count, flags_on, flags_off = TEXT_FILTERS[name]
    m = prep_ok(tmp_path, *ISOLATE, *(flags_on if on else flags_off), train=extra + BASE)
    train = m["splits"]["train"]
    assert train["lines_read"] == len(extra) + len(BASE)
    if on:
        assert train[group][key] == count
    elif group == "changed":
        assert key not in train["changed"]  # the step did not run
    else:
        assert train["drops"][key] == 0
    assert train["pairs_kept"] == train["lines_read"] - sum(train["drops"].values())
    if not on:
        assert train["pairs_kept"] == train["lines_read"]  # nothing else drops these pairs
    valid = m["splits"]["valid"]  # plain generated text: counted on its own, nothing changed
    assert valid["drops"] == {} and set(valid["changed"].values()) <= {0}


@pytest.mark.parametrize("on", [True, False], ids=["nfkc", "no-nfkc"])
def test_nfkc_folds_ligatures_and_full_width(tmp_path, on):
    prep_ok(tmp_path, *ISOLATE, *([] if on else ["--no-nfkc"]), train=NFKC_PAIRS + BASE)
    de, en = decoded(tmp_path / "out", "train", "de")[:3], decoded(tmp_path / "out", "train", "en")[:3]
    if on:
        assert (de, en) == (["der fisch springt", "Mann läuft", "ein fluss"], ["the fish jumps", "man runs", "a river"])
    else:
        assert (de, en) == ([p[0] for p in NFKC_PAIRS], [p[1] for p in NFKC_PAIRS])


@pytest.mark.parametrize("on", [True, False], ids=["whitespace", "no-whitespace"])
def test_whitespace_only_side_is_empty_only_after_whitespace_step(tmp_path, on):
    m = prep_ok(tmp_path, *ISOLATE, *([] if on else ["--no-whitespace"]), train=[("   ", "the dog")] + BASE)
    assert m["splits"]["train"]["drops"]["empty"] == (1 if on else 0)
    if on:
        assert decoded(tmp_path / "out", "train", "en")[:2] == [p[1] for p in BASE[:2]]


def test_keep_empty_keeps_empty_pairs_as_empty_sentences(tmp_path):
    prep_ok(tmp_path, *ISOLATE, "--keep-empty", train=EMPTY_PAIRS + BASE)
    out = tmp_path / "out"
    assert decoded(out, "train", "de")[:3] == ["", "der Hund", ""]
    assert [len(s) > 0 for s in ids(out, "train", "en")[:3]] == [True, False, False]


def test_dedup_keeps_the_first_of_each_pair(tmp_path):
    extra = [BASE[3], BASE[3], ("der Hund", "the dog"), ("der  Hund", "the dog"), ("der Hund", "a dog")]
    prep_ok(tmp_path, *ISOLATE, "--dedup", train=extra + BASE)
    seen, expected = set(), []
    for pair in extra + BASE:
        pair = tuple(normalize(side, DataConfig()) for side in pair)
        if pair not in seen:
            seen.add(pair)
            expected.append(pair)
    out = tmp_path / "out"
    assert list(zip(decoded(out, "train", "de"), decoded(out, "train", "en"))) == expected
    assert manifest(out)["splits"]["train"]["drops"]["duplicate"] == len(extra) + len(BASE) - len(expected) == 3


def expected_length_drops(out: Path, pairs, max_len: int, max_ratio: float) -> tuple[int, int]:
    """(too_long, ratio) drops recomputed with prep's own model, in subwords."""
    src = [len(s) for s in model(out, "de").encode([p[0] for p in pairs])]
    tgt = [len(t) for t in model(out, "en").encode([p[1] for p in pairs])]
    too_long = ratio = 0
    for s, t in zip(src, tgt):
        if max_len and max(s, t) > max_len:
            too_long += 1
        elif max_ratio and max(s, t) > max_ratio * max(1, min(s, t)):
            ratio += 1
    return too_long, ratio


LONG = (" ".join(p[0] for p in BASE[:12]), " ".join(p[1] for p in BASE[:12]))  # well over 128 subwords
SKEWED = [
    ("der Mann", "the man runs over the bridge with a big black dog and a small cat"),
    ("Hund", "the dog jumps over the old tree"),
]


@pytest.mark.parametrize(
    "flags, key",
    [
        (["--max-ratio", "0"], "too_long"),
        (["--max-len", "20", "--max-ratio", "0"], "too_long"),
        (["--max-len", "0"], "ratio"),
        ([], "ratio"),
    ],
    ids=["max-len-128", "max-len-20", "max-ratio-3", "max-ratio-3-with-max-len"],
)
def test_length_filters_count_subwords(tmp_path, flags, key):
    train = [LONG, *SKEWED] + BASE
    m = prep_ok(tmp_path, *flags, train=train)
    opts = m["options"]
    too_long, ratio = expected_length_drops(tmp_path / "out", train, opts["max_len"], opts["max_ratio"])
    drops = m["splits"]["train"]["drops"]
    assert (drops["too_long"], drops["ratio"]) == (too_long, ratio)
    assert drops[key] > 0
    if opts["max_len"] == 20:  # no pair has 20 words: the filter counts subwords
        assert max(len(side.split()) for p in train[3:] for side in p) <= 12
    for lang in ("de", "en"):
        lengths = [len(s) for s in ids(tmp_path / "out", "train", lang)]
        assert len(lengths) == m["splits"]["train"]["pairs_kept"] == len(train) - too_long - ratio
        if opts["max_len"]:
            assert max(lengths) <= opts["max_len"]


@pytest.mark.parametrize("flag", ["--max-len", "--max-ratio"])
def test_length_filters_off(tmp_path, flag):
    train = [LONG, *SKEWED] + BASE
    m = prep_ok(tmp_path, flag, "0", train=train)
    drops = m["splits"]["train"]["drops"]
    assert drops["too_long" if flag == "--max-len" else "ratio"] == 0
    if flag == "--max-len":
        assert m["splits"]["train"]["longest"]["de"] > 128  # the long pair is in


@pytest.mark.parametrize("split", ["valid", "test"])
def test_valid_and_test_are_never_filtered(tmp_path, split):
    odd = make_pairs(VALID_PAIRS, 2)
    odd[3] = ("", "")  # empty
    odd[4] = ("der Hund", "")  # one side empty
    odd[5] = odd[6]  # duplicate
    odd[7] = LONG  # far over --max-len
    odd[8] = SKEWED[0]  # over --max-ratio
    kwargs = {split: odd}
    data = write_corpus(tmp_path, **kwargs)
    m = prep_ok(tmp_path, "--dedup", "--max-len", "20", "--test", data / "test", **kwargs)
    s = m["splits"][split]
    assert s["pairs_kept"] == s["lines_read"] == len(odd)
    assert s["drops"] == {}
    out = tmp_path / "out"
    for lang in ("de", "en"):
        offsets = (out / f"{split}.{lang}.off").read_bytes()
        assert len(offsets) == 8 * (len(odd) + 1)
        assert len(read_text_lines(out / f"{split}.{lang}.txt")) == len(odd)
    assert decoded(out, split, "de")[3:9] == ["", "der Hund", odd[6][0], odd[6][0], LONG[0], "der Mann"]
    assert len(ids(out, split, "de")[7]) > 20


# --------------------------------------------------------------------------- invalid UTF-8


def test_invalid_utf8_replace_goes_on(tmp_path):
    train = list(BASE)
    train[6] = ("der \xff Hund".encode("latin-1"), "the dog")
    valid = make_pairs(VALID_PAIRS, 2)
    valid[2] = (b"ein \xc3 Ball", "a ball")
    data = write_corpus(tmp_path, train=train, valid=valid)
    result = run_prep(tmp_path, "--on-invalid-utf8", "replace")
    assert_ok(result)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("nmt: warning:")]
    assert warnings == [
        f"nmt: warning: {data / 'train.de'}:7: invalid UTF-8 replaced with U+FFFD",
        f"nmt: warning: {data / 'valid.de'}:3: invalid UTF-8 replaced with U+FFFD",
    ]
    out = tmp_path / "out"
    m = manifest(out)
    assert m["splits"]["train"]["invalid_utf8_lines"] == 1 and m["splits"]["valid"]["invalid_utf8_lines"] == 1
    assert decoded(out, "train", "de")[6] == "der \ufffd Hund"
    assert read_text_lines(out / "valid.de.txt")[2] == "ein \ufffd Ball"


# --------------------------------------------------------------------------- reusing models


@pytest.mark.parametrize("joint", [True, False], ids=["joint", "separate"])
def test_reusing_models_gives_the_same_ids(tmp_path, corpus, joint):
    first = tmp_path / "first"
    assert_ok(run_prep(tmp_path, "--out", first, "--joint" if joint else "--separate"))
    if joint:
        reuse = ["--spm-model", first / "spm.model"]
    else:
        reuse = ["--src-spm-model", first / "spm.de.model", "--tgt-spm-model", first / "spm.en.model"]
    # a different --vocab-size is moot: the given models decide
    assert_ok(run_prep(tmp_path, *reuse, "--vocab-size", "8000"))
    out = tmp_path / "out"
    m = manifest(out)
    assert m["vocab"]["reused"] is True and m["vocab"]["joint"] is joint
    assert m["vocab"]["size"] == {"de": 100, "en": 100}
    for lang in ("de", "en"):
        name = m["vocab"]["model"][lang]
        assert (out / name).read_bytes() == (first / name).read_bytes()
        for split in ("train", "valid"):
            assert ids(out, split, lang) == ids(first, split, lang)


def test_reusing_a_checkpoints_models_gives_the_ids_of_the_prep_it_trained_on(tmp_path, corpus, trained, prepped):
    """`nmt prep --spm-model CKPT` takes the vocabulary a model was trained with (to fine-tune it)."""
    assert_ok(run_prep(tmp_path, "--spm-model", trained / "best.pt"))
    out = tmp_path / "out"
    assert manifest(out)["vocab"]["reused"] is True
    assert (out / "spm.model").read_bytes() == (prepped / "spm.model").read_bytes()
    for lang in ("de", "en"):
        for split in ("train", "valid"):
            assert ids(out, split, lang) == ids(prepped, split, lang)
    assert_ok(run_train(out, tmp_path / "tuned", "--init", trained / "best.pt", *sets("train.max_steps=1")))


def test_a_checkpoint_with_separate_models_gives_one_per_side(tmp_path, corpus, prepped_separate):
    best = tmp_path / "model" / "best.pt"
    assert_ok(run_train(prepped_separate, best.parent, *sets("train.max_steps=1", "train.valid_every=1")))
    result = run_prep(tmp_path, "--spm-model", best)
    assert_one_line_error(result, "separate source and target", f"give --src-spm-model {best} --tgt-spm-model {best}")
    both = ["--src-spm-model", best, "--tgt-spm-model", best]
    assert_ok(run_prep(tmp_path, *both))
    for lang in ("de", "en"):
        assert ids(tmp_path / "out", "train", lang) == ids(prepped_separate, "train", lang)


def test_summary_of_a_reused_model_does_not_claim_another_type(tmp_path, corpus):
    assert_ok(run_prep(tmp_path, "--spm-type", "bpe", "--out", tmp_path / "bpe"))
    result = run_prep(tmp_path, "--spm-model", tmp_path / "bpe" / "spm.model")
    assert_ok(result)
    assert "unigram" not in result.stderr


# --------------------------------------------------------------------------- re-runs


def _mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in [out, *out.iterdir()]}


def test_identical_rerun_is_a_noop(tmp_path, corpus):
    assert_ok(run_prep(tmp_path, "--test", corpus / "test"))
    out = tmp_path / "out"
    before, manifest_bytes = _mtimes(out), (out / "manifest.json").read_bytes()
    os.utime(out / "manifest.json", ns=(1, 1))  # an old mtime: a rewrite would show
    before["manifest.json"] = 1
    result = run_prep(tmp_path, "--test", corpus / "test")
    assert_ok(result)
    (line,) = result.stderr.splitlines()
    assert "up to date" in line and str(out) in line
    assert _mtimes(out) == before
    assert (out / "manifest.json").read_bytes() == manifest_bytes
    assert leftovers(out) == []


def test_noop_ignores_where_the_inputs_live(tmp_path, corpus):
    assert_ok(run_prep(tmp_path))
    moved = tmp_path / "moved"
    corpus.rename(moved)
    result = run_prep(tmp_path, "--train", moved / "train", "--valid", moved / "valid")
    assert_ok(result)
    assert "up to date" in result.stderr


@pytest.mark.parametrize(
    "change",
    [["--vocab-size", "120"], ["--separate"], ["--dedup"], ["--no-nfkc"], ["--seed", "2"], "input"],
    ids=["vocab-size", "separate", "dedup", "no-nfkc", "seed", "input-bytes"],
)
def test_changed_run_needs_force(tmp_path, corpus, change):
    assert_ok(run_prep(tmp_path))
    out = tmp_path / "out"
    before = (out / "manifest.json").read_bytes()
    if change == "input":
        write_split(corpus, "train", [(de + " Hund", en + " dog") for de, en in BASE])
        change = []
    assert_one_line_error(run_prep(tmp_path, *change), str(out), "--force")
    assert (out / "manifest.json").read_bytes() == before
    assert leftovers(out) == []

    assert_ok(run_prep(tmp_path, *change, "--force"))
    after = manifest(out)
    assert after["fingerprint"] != json.loads(before)["fingerprint"]
    assert (out / "manifest.json").read_bytes() != before
    if change == ["--separate"]:
        names = {p.name for p in out.iterdir()}
        assert "spm.model" not in names and {"spm.de.model", "spm.en.model"} <= names
    if change == ["--vocab-size", "120"]:
        assert after["vocab"]["size"] == {"de": 120, "en": 120}
    assert leftovers(out) == []


def test_damaged_prep_is_not_a_noop(tmp_path, corpus):
    assert_ok(run_prep(tmp_path))
    out = tmp_path / "out"
    (out / "train.de.ids").unlink()
    assert_one_line_error(run_prep(tmp_path), "damaged", "--force")
    assert_ok(run_prep(tmp_path, "--force"))
    assert (out / "train.de.ids").stat().st_size == manifest(out)["files"]["train.de.ids"]["bytes"]


def test_failed_forced_run_keeps_the_old_prep(tmp_path, corpus):
    assert_ok(run_prep(tmp_path))
    out = tmp_path / "out"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert_one_line_error(run_prep(tmp_path, "--vocab-size", "50000", "--force"), "--vocab-size 50000")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert leftovers(out) == []


def test_empty_out_dir_is_used(tmp_path, corpus):
    (tmp_path / "out").mkdir()
    assert_ok(run_prep(tmp_path))
    assert manifest(tmp_path / "out")["splits"]["train"]["lines_read"] == 300


# --------------------------------------------------------------------------- bad inputs


def plain(*args):
    """A setup: the standard corpus, then ``args`` (a callable arg is called with tmp_path)."""

    def setup(tmp_path: Path) -> list:
        write_corpus(tmp_path)
        return [a(tmp_path) if callable(a) else a for a in args]

    return setup


def recipe(text: str):
    def write(tmp_path: Path) -> Path:
        path = tmp_path / "recipe.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


def _invalid_utf8(gz: bool):
    def setup(tmp_path: Path) -> list:
        train = list(BASE)
        train[6] = (b"der \xff Hund", "the dog")
        write_corpus(tmp_path, train=train, gz=gz)
        return []

    return setup


def _damaged_gz(corrupt: bool):
    def setup(tmp_path: Path) -> list:
        path = write_corpus(tmp_path, gz=True) / "train.de.gz"
        raw = path.read_bytes()
        if corrupt:  # same length, a damaged deflate stream
            raw = raw[:20] + bytes(b ^ 0xFF for b in raw[20:60]) + raw[60:]
        else:
            raw = raw[: len(raw) // 2]
        path.write_bytes(raw)
        return []

    return setup


def _extra_line(tmp_path: Path) -> list:
    data = write_corpus(tmp_path)
    with open(data / "train.en", "a", encoding="utf-8") as f:
        f.write("one line more\n")
    return []


def _all_empty_target(tmp_path: Path) -> list:
    write_corpus(tmp_path, train=[(de, "") for de, _ in BASE])
    return []


def _foreign_model(tmp_path: Path) -> Path:
    return train_foreign_model(tmp_path / "data" / "train.de", tmp_path / "foreign")


def _garbage_model(tmp_path: Path) -> Path:
    (tmp_path / "garbage.model").write_bytes(b"\x00not a model at all\xff" * 20)
    return tmp_path / "garbage.model"


def _test_dir(tmp_path: Path) -> Path:
    (tmp_path / "data" / "more.de").mkdir()
    write_lines(tmp_path / "data" / "more.en", ["the dog"])
    return tmp_path / "data" / "more"


BAD_INPUTS = {
    "missing-file": (plain("--train", lambda t: t / "data" / "nope"), ["nope.de: no such file (nor ", "nope.de.gz)"]),
    "line-counts": (_extra_line, ["train.de has 300 lines", "train.en has 301", "line-aligned"]),
    "invalid-utf8": (_invalid_utf8(gz=False), ["train.de:7: invalid UTF-8", "byte 0xff", "--on-invalid-utf8 replace"]),
    "invalid-utf8-gz": (_invalid_utf8(gz=True), ["train.de.gz:7: invalid UTF-8"]),
    "empty-after-filtering": (
        _all_empty_target,
        ["train: no pairs left after filtering (read 300; dropped: empty 300)"],
    ),
    "all-too-long": (plain("--max-len", "1"), ["train: no pairs left after filtering", "too_long 300"]),
    "vocab-too-big": (
        plain("--vocab-size", "50000"),
        ["--vocab-size 50000 is more than", "at most", "lower --vocab-size"],
    ),
    "vocab-too-small": (plain("--vocab-size", "10"), ["--vocab-size 10 is below", "raise --vocab-size"]),
    "truncated-gz": (_damaged_gz(corrupt=False), ["train.de.gz: cannot read"]),
    "same-langs": (plain("--tgt-lang", "de"), ["both 'de'"]),
    "split-name-clash": (plain("--test", lambda t: t / "data" / "train"), ["a split named 'train'"]),
    "test-is-dir": (plain("--test", _test_dir), ["more.de: is a directory"]),
    "recipe-missing": (plain("--recipe", lambda t: t / "nope.yaml"), ["nope.yaml: no such recipe file"]),
    "recipe-invalid-yaml": (plain("--recipe", recipe("data:\n  vocab_size: [1,\n")), ["recipe.yaml", "not valid YAML"]),
    "recipe-unknown-key": (
        plain("--recipe", recipe("data:\n  vocab_szie: 100\n")),
        ["recipe.yaml: unknown key 'data.vocab_szie'; did you mean 'data.vocab_size'?"],
    ),
    "recipe-wrong-type": (
        plain("--recipe", recipe("data:\n  dedup: 3\n")),
        ["recipe.yaml: data.dedup must be a boolean (true/false), got 3"],
    ),
    "set-no-equals": (plain("--set", "data.vocab_size"), ["--set 'data.vocab_size'", "SECTION.KEY=VALUE"]),
    "set-unknown-key": (plain("--set", "data.max_lne=5"), ["unknown key 'data.max_lne'; did you mean 'data.max_len'?"]),
    "set-wrong-type": (plain("--set", "data.max_len=long"), ["data.max_len must be an integer, got 'long'"]),
    "set-out-of-range": (plain("--set", "data.max_ratio=0.5"), ["data.max_ratio must be >= 1"]),
    "foreign-special-ids": (
        plain("--spm-model", _foreign_model),
        ["foreign.model: special ids", "pad_id=0 unk_id=1 bos_id=2 eos_id=3"],
    ),
    "not-a-model": (plain("--spm-model", _garbage_model), ["garbage.model: not a SentencePiece model"]),
    "joint-and-separate-models": (
        plain("--spm-model", "a.model", "--src-spm-model", "b.model", "--tgt-spm-model", "c.model"),
        ["exclude each other"],
    ),
    "half-separate-models": (plain("--src-spm-model", "b.model"), ["go together"]),
}
BAD_INPUTS.update(
    {
        "missing-model": (
            plain("--spm-model", lambda t: t / "nope.model"),
            ["nope.model: no such SentencePiece model"],
        ),
        "model-is-dir": (plain("--spm-model", lambda t: t / "data"), ["is a directory"]),
        "corrupt-gz": (_damaged_gz(corrupt=True), ["train.de.gz: cannot read"]),
    }
)


@pytest.mark.parametrize(
    "setup, fragments",
    [pytest.param(*case, id=name) for name, case in BAD_INPUTS.items()],
)
def test_bad_input_is_one_line_error_and_writes_nothing(tmp_path, setup, fragments):
    args = setup(tmp_path)
    out = tmp_path / "out"
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run_prep(tmp_path, *args)
    assert_one_line_error(result, *fragments)
    assert not out.exists()
    assert leftovers(out) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("force", [False, True], ids=["no-force", "force"])
def test_out_dir_holding_other_files_is_refused(tmp_path, corpus, force):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    result = run_prep(tmp_path, *(["--force"] if force else []))
    assert_one_line_error(result, str(out), "not an nmt prep directory")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "mine\n"
    assert leftovers(out) == []


def test_out_that_is_a_file_is_refused(tmp_path, corpus):
    out = tmp_path / "out"
    out.write_text("a file\n")
    assert_one_line_error(run_prep(tmp_path), str(out), "not a directory")
    assert out.read_text() == "a file\n"
    assert leftovers(out) == []


def test_out_dot_in_an_empty_directory(tmp_path, monkeypatch):
    write_corpus(tmp_path)
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    result = run_prep(tmp_path, "--out", ".")
    assert result.exit_code in (0, 2), (result.exit_code, result.exception)
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "here"]
    assert not [p.name for p in here.iterdir() if p.name.startswith("..")]


def test_no_whitespace_round_trip_keeps_spaces(tmp_path):
    valid = make_pairs(VALID_PAIRS, 2)
    valid[0] = ("der  Mann läuft", "the man  runs")
    train = [("der  Mann läuft", "the man  runs")] + BASE
    prep_ok(tmp_path, "--no-whitespace", train=train, valid=valid)
    assert decoded(tmp_path / "out", "valid", "de")[0] == "der  Mann läuft"


def test_a_prep_directory_being_built_has_one_owner(tmp_path, corpus):
    out = tmp_path / "out"
    holder = hold_in_child(out)
    try:
        assert_one_line_error(run_prep(tmp_path), f"{out}: in use by another nmt process (pid {holder.pid})")
        assert not out.exists()
    finally:
        holder.kill()  # kill -9: its lock file stays, and blocks nothing
        holder.wait()
    assert_ok(run_prep(tmp_path))
    assert leftovers(out) == []


def test_a_killed_builds_leftovers_are_removed_by_the_next_prep(tmp_path, corpus):
    out = tmp_path / "out"
    for name in (".out.abcd1234.tmp", ".out.k1ll3d_9.old"):  # a half-built and a half-replaced prep
        (tmp_path / name / "x").mkdir(parents=True)
    (tmp_path / ".out.v2.abcd1234.tmp").mkdir()  # another directory's: not ours to remove
    assert_ok(run_prep(tmp_path))
    assert leftovers(out) == [".out.v2.abcd1234.tmp"]
