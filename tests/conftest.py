"""Shared fixtures: a tiny generated de-en corpus, a CliRunner wrapper, manifest helpers.

All text is generated from the fixed word lists below with fixed seeds: no corpus text
is copied into the repository, and every run sees the same bytes.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
import sentencepiece as spm
from typer.testing import CliRunner

from nmt_cli.cli import app
from nmt_cli.prep.store import IdStore

# A small parallel dictionary (de, en): sentences pick the same entries on both sides.
LEXICON = [
    tuple(entry.split("/"))
    for entry in (
        "der/the ein/a eine/one und/and mit/with auf/on unter/under neben/beside Mann/man "
        "Frau/woman Kind/child Hund/dog Katze/cat Ball/ball Haus/house Straße/street "
        "Wasser/water Wiese/meadow Baum/tree Auto/car Fahrrad/bicycle Hemd/shirt rot/red "
        "blau/blue grün/green groß/big klein/small alt/old jung/young spielt/plays läuft/runs "
        "sitzt/sits steht/stands hält/holds trägt/wears schaut/looks fährt/rides springt/jumps "
        "über/over vor/before hinter/behind Mädchen/girl Junge/boy Gruppe/group Leute/people "
        "Hut/hat Jacke/jacket Strand/beach Berg/mountain Schnee/snow Fluss/river Boot/boat "
        "Brücke/bridge Markt/market Stadt/city Musik/music Gitarre/guitar Zeitung/newspaper "
        "Kamera/camera schwarz/black weiß/white gelb/yellow Fenster/window Tisch/table "
        "Küche/kitchen Garten/garden Himmel/sky Sonne/sun Regen/rain Zug/train Bahnhof/station "
        "Schule/school Lehrer/teacher Koch/cook Arbeiter/worker Polizist/officer Tänzerin/dancer "
        "Pferd/horse Vogel/bird Fisch/fish Blume/flower Park/park Bank/bench Treppe/stairs "
        "lacht/laughs singt/sings kocht/cooks liest/reads wirft/throws fängt/catches"
    ).split()
]

TRAIN_PAIRS, VALID_PAIRS, TEST_PAIRS = 300, 40, 20
VOCAB = "100"  # small enough for the tiny corpus, joint or separate, unigram or bpe


def make_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` generated (de, en) pairs of 4 to 12 words, word for word from LEXICON."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        words = rng.choices(LEXICON, k=rng.randint(4, 12))
        pairs.append((" ".join(de for de, _ in words), " ".join(en for _, en in words)))
    return pairs


def write_lines(path: Path, lines: Iterable[str | bytes], gz: bool = False, newline: str = "\n") -> Path:
    """Write lines (str as UTF-8, bytes as they are) to ``path`` (``path.gz`` with ``gz``)."""
    data = b"".join((line if isinstance(line, bytes) else line.encode("utf-8")) + newline.encode() for line in lines)
    path = Path(f"{path}.gz") if gz else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def write_split(directory: Path, name: str, pairs: Sequence[tuple[str | bytes, str | bytes]], gz: bool = False) -> str:
    """Write ``NAME.de`` and ``NAME.en`` (or ``.gz``) in ``directory``; returns the prefix."""
    for side, lang in enumerate(("de", "en")):
        write_lines(directory / f"{name}.{lang}", [pair[side] for pair in pairs], gz=gz)
    return str(directory / name)


def write_corpus(tmp_path: Path, train=None, valid=None, test=None, gz: bool = False) -> Path:
    """The tiny corpus in ``tmp_path/data``: generated splits unless given explicitly."""
    data = tmp_path / "data"
    write_split(data, "train", make_pairs(TRAIN_PAIRS, 1) if train is None else train, gz)
    write_split(data, "valid", make_pairs(VALID_PAIRS, 2) if valid is None else valid, gz)
    write_split(data, "test", make_pairs(TEST_PAIRS, 3) if test is None else test, gz)
    return data


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A tiny plain-text de-en corpus (train/valid/test prefixes in the returned dir)."""
    return write_corpus(tmp_path)


def run_prep(tmp_path: Path, *args):
    """``nmt prep ARGS`` through CliRunner; languages, --train/--valid (the tiny corpus in
    ``tmp_path/data``), --out (``tmp_path/out``) and --vocab-size default unless given."""
    args = [str(a) for a in args]
    defaults = {
        "--src-lang": "de",
        "--tgt-lang": "en",
        "--train": tmp_path / "data" / "train",
        "--valid": tmp_path / "data" / "valid",
        "--out": tmp_path / "out",
        "--vocab-size": VOCAB,
    }
    extra = [str(x) for flag, value in defaults.items() if flag not in args for x in (flag, value)]
    return CliRunner().invoke(app, ["prep", *extra, *args])


def assert_ok(result) -> None:
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output


def assert_one_line_error(result, *fragments: str) -> str:
    """Exit 2, exactly one ``nmt: error:`` line on stderr, no traceback; returns it."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("nmt: error: "), lines[0]
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def assert_error_ends(result, code: int, *fragments: str) -> str:
    """Exit ``code``, one ``nmt: error:`` line, the last on stderr (progress lines may come
    first), no traceback; returns it."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("nmt: error: ")]
    assert len(errors) == 1 and result.stderr.splitlines()[-1] == errors[0], result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def leftovers(out: Path) -> list[str]:
    """Temporary build directories of ``out`` left in its parent."""
    return sorted(p.name for p in out.parent.glob(f".{out.name}.*"))


def hold_in_child(directory: Path) -> subprocess.Popen:
    """Another process holding ``directory`` (nmt_cli.lock.owner) until it is killed;
    returns once it holds it."""
    code = f"from nmt_cli import lock\nwith lock.owner({str(directory)!r}):\n    print('held', flush=True)\n    input()"
    root = Path(__file__).resolve().parents[1]
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert child.stdout.readline() == "held\n"
    return child


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def model(out: Path, lang: str) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(out / manifest(out)["vocab"]["model"][lang]))


def ids(out: Path, split: str, lang: str) -> list[list[int]]:
    """Every sentence of a split as a list of ids, read through IdStore."""
    store = IdStore(out, split, lang, manifest(out)["id_dtype"][lang])
    return [store[i].tolist() for i in range(len(store))]


def decoded(out: Path, split: str, lang: str) -> list[str]:
    return model(out, lang).decode(ids(out, split, lang))


def read_text_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def on_ci(environ=os.environ) -> bool:
    """Whether CI is set to a true value, as CI services spell it (true, True, 1, yes)."""
    return environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


@pytest.fixture(scope="session")
def multi30k_dir() -> Path:
    """$MULTI30K_DIR; unset: skip locally, but fail on CI, which must provide the data."""
    value = os.environ.get("MULTI30K_DIR")
    if not value:
        if on_ci():
            pytest.fail("MULTI30K_DIR is not set: CI must set MULTI30K_DIR to the Multi30k data directory")
        pytest.skip("MULTI30K_DIR is not set (integration test on Multi30k)")
    path = Path(value).resolve()  # Makefile default is relative; tests may chdir
    if not (path / "train.de.gz").is_file():
        pytest.fail(f"MULTI30K_DIR={value} does not hold train.de.gz")
    return path


def train_foreign_model(text: Path, prefix: Path, vocab_size: int = 100) -> Path:
    """A SentencePiece model trained directly, with SentencePiece's default special ids
    (unk=0, bos=1, eos=2, pad=-1), which nmt must refuse."""
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(prefix), vocab_size=vocab_size, minloglevel=2, num_threads=1
    )
    return Path(f"{prefix}.model")


# --------------------------------------------------------------------------- nmt train
# Shared by tests/model, tests/train and tests/decode: id batches as the trainer builds
# them, tiny model configs, a prepared tiny corpus and a trained tiny model.

TINY_RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"
PAD_ID, UNK_ID, SOS_ID, EOS_ID = 0, 1, 2, 3  # fixed in every nmt vocabulary


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny models: thread hand-offs cost more than they save, and on a busy 2-core
    machine torch's spinning worker threads make a second of training take minutes."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def _fp32_where_auto():
    """``precision: auto`` resolves to fp32 in the tests, whatever the CPU's bf16 speed and
    int8 products, so that outputs compare exactly; tests of the probe stub it themselves,
    or call ``REAL_BF16_SPEEDUP``."""
    from nmt_cli import device

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(device, "bf16_speedup", lambda *args, **kwargs: 1.0)
        patch.setattr(device, "int8_products", lambda: False)
        yield


def make_batch(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]] | None = None):
    """A ``Batch`` as ``train/batching.py`` builds it: src = ids + EOS, tgt_in = SOS + ids,
    tgt_out = ids + EOS, PAD-padded; ``targets`` defaults to ``sources`` (copy task)."""
    import torch

    from nmt_cli.model.seq2seq import Batch

    targets = sources if targets is None else targets
    n = len(sources)
    src = torch.full((n, max(len(s) for s in sources) + 1), PAD_ID, dtype=torch.long)
    tgt_in = torch.full((n, max(len(t) for t in targets) + 1), PAD_ID, dtype=torch.long)
    tgt_out = tgt_in.clone()
    for row, (s, t) in enumerate(zip(sources, targets)):
        src[row, : len(s) + 1] = torch.tensor([*s, EOS_ID])
        tgt_in[row, : len(t) + 1] = torch.tensor([SOS_ID, *t])
        tgt_out[row, : len(t) + 1] = torch.tensor([*t, EOS_ID])
    lengths = torch.tensor([len(s) + 1 for s in sources], dtype=torch.long)
    return Batch(src, lengths, tgt_in, tgt_out, sum(len(t) + 1 for t in targets))


def random_sequences(n: int, vocab: int, min_len: int, max_len: int, generator) -> list[list[int]]:
    """``n`` lists of word ids (never a special id) of min_len..max_len words."""
    import torch

    lengths = torch.randint(min_len, max_len + 1, (n,), generator=generator).tolist()
    return [torch.randint(4, vocab, (k,), generator=generator).tolist() for k in lengths]


def tiny_model_config(**overrides):
    """A ModelConfig small enough for hundreds of forward passes a second, with distinct
    sizes everywhere (so a mixed-up dimension fails loudly); dropout off unless given."""
    from nmt_cli.config import ModelConfig

    values = dict(
        emb_size=16,
        encoder_hidden=12,
        encoder_layers=1,
        bidirectional=True,
        decoder_hidden=20,
        decoder_layers=1,
        attention_size=10,
        output_size=14,
        emb_dropout=0.0,
        dropout=0.0,
    )
    values.update(overrides)
    if values.get("attention") == "luong_dot" and "decoder_hidden" not in overrides:
        values["decoder_hidden"] = values["encoder_hidden"] * (2 if values["bidirectional"] else 1)
    if values.get("tie_output") and "output_size" not in overrides:
        values["output_size"] = values["emb_size"]
    cfg = ModelConfig(**values)
    cfg.validate()
    return cfg


COPY_VOCAB, COPY_MIN, COPY_MAX = 20, 3, 8


@pytest.fixture(scope="session")
def copy_model():
    """A tiny GRU + Bahdanau model trained with Adam to copy random id sequences
    (vocab 20, 3-8 words): 300 steps of 32 sentences, a few seconds on one CPU thread.

    Returns (model in eval mode, final training-batch loss per token)."""
    import torch

    from nmt_cli.model.seq2seq import Seq2Seq

    torch.manual_seed(0)
    cfg = tiny_model_config(emb_size=32, encoder_hidden=32, decoder_hidden=64, attention_size=32, output_size=32)
    model = Seq2Seq(cfg, COPY_VOCAB, COPY_VOCAB)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    data = torch.Generator().manual_seed(1)
    steps = 300
    for step in range(steps):
        if step == 3 * steps // 4:  # a lower rate for the last quarter settles the loss
            for group in optimizer.param_groups:
                group["lr"] = 0.002
        batch = make_batch(random_sequences(32, COPY_VOCAB, COPY_MIN, COPY_MAX, data))
        loss, _ = model.loss(batch, 0.0)
        (loss / batch.tokens).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    return model, loss.item() / batch.tokens


def run_train(prep: Path, out: Path, *args, recipe: Path = TINY_RECIPE):
    """``nmt train RECIPE --data PREP --out OUT --device cpu ARGS`` through CliRunner."""
    argv = ["train", str(recipe), "--data", str(prep), "--out", str(out), "--device", "cpu", *map(str, args)]
    return CliRunner().invoke(app, argv)


def sets(*assignments: str) -> list[str]:
    """``--set A --set B ...``"""
    return [x for a in assignments for x in ("--set", a)]


@pytest.fixture(scope="session")
def prepped(tmp_path_factory) -> Path:
    """The tiny corpus prepared with a joint vocabulary (read-only: copy before changing)."""
    root = tmp_path_factory.mktemp("prepped")
    write_corpus(root)
    assert_ok(run_prep(root))
    return root / "out"


@pytest.fixture(scope="session")
def prepped_separate(tmp_path_factory) -> Path:
    """The tiny corpus prepared with one vocabulary per language (read-only)."""
    root = tmp_path_factory.mktemp("prepped_separate")
    write_corpus(root)
    assert_ok(run_prep(root, "--separate"))
    return root / "out"


# One uninterrupted tiny training run, shared read-only by the checkpoint, metrics and
# resume tests: dropout on (so resuming must restore the RNG), validation every 10 steps,
# a log line every 5, 30 steps (over an epoch boundary), the 2 newest step checkpoints kept.
TRAINED_STEPS = 30
TRAINED_SETS = (
    "model.dropout=0.2",
    "model.emb_dropout=0.2",
    "train.valid_every=10",
    "train.log_every=5",
    "train.keep_last=2",
)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, prepped) -> Path:
    """The model directory of `nmt train recipes/tiny.yaml` for TRAINED_STEPS steps."""
    out = tmp_path_factory.mktemp("trained") / "model"
    result = run_train(prepped, out, *sets(*TRAINED_SETS, f"train.max_steps={TRAINED_STEPS}"))
    assert_ok(result)
    return out


@pytest.fixture(scope="session")
def ckpt(trained) -> Path:
    """The best.pt of :func:`trained`."""
    return trained / "best.pt"


SEARCH_VOCAB = 25  # the vocabulary of the search tests' untrained models


def untrained(seed: int = 0, **overrides):
    """An untrained tiny Seq2Seq over SEARCH_VOCAB words, in eval mode, from ``seed``."""
    import torch

    from nmt_cli.model.seq2seq import Seq2Seq

    torch.manual_seed(seed)
    return Seq2Seq(tiny_model_config(**overrides), SEARCH_VOCAB, SEARCH_VOCAB).eval()


def sources(n: int = 6, seed: int = 3, vocab: int = SEARCH_VOCAB, low: int = 1, high: int = 9) -> list[list[int]]:
    """``n`` random source id sequences of ``low``..``high`` words."""
    import torch

    return random_sequences(n, vocab, low, high, torch.Generator().manual_seed(seed))
