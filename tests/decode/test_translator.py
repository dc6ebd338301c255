"""The translator between search and text: UNK replacement and alignments of hand-made
hypotheses over the trained tiny model's real subword models."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import pytest
import torch
from conftest import EOS_ID, PAD_ID, SOS_ID, UNK_ID, assert_ok, make_pairs, manifest, run_train, sets

from nmt_cli import checkpoint
from nmt_cli.decode.alignment import WORD_START
from nmt_cli.decode.translate import Line, Outputs, Search, format_line, write_attention
from nmt_cli.search.hypothesis import Hypothesis


def translator_for(path: Path, keep_attention: bool = False, **overrides) -> Search:
    """A CPU Search for a checkpoint (whether it takes the path or a loaded Inference)."""
    try:
        from nmt_cli.decode.inference import Inference
    except ImportError:
        return Search(path, overrides, torch.device("cpu"), keep_attention=keep_attention)
    return Search(Inference.load(path, overrides, torch.device("cpu")), keep_attention=keep_attention)


def spm_of(translator: Search, side: str):
    return getattr(getattr(translator, "inference", translator), f"{side}_sp")


def encoded(translator: Search, text: str) -> Line:
    line = Line(0, text)
    translator.encode(line, "test")
    assert line.ids
    return line


def copying_unks(line: Line) -> Hypothesis:
    """A hypothesis of one UNK per source subword, each attending to that subword."""
    n = len(line.ids)
    return Hypothesis([UNK_ID] * n, -1.0, -1.0, torch.eye(n + 1, n + 1))


@pytest.fixture(scope="module")
def separate_checkpoint(trained, prepped_separate, tmp_path_factory) -> Path:
    """The trained tiny model with one subword model per language instead of the joint
    one (same sizes, so the weights load): what a --separate prep gives."""
    payload = torch.load(trained / "best.pt", weights_only=True)
    models = manifest(prepped_separate)["vocab"]["model"]
    vocab = payload["vocab"]
    vocab["src_spm"] = (prepped_separate / models["de"]).read_bytes()
    vocab["tgt_spm"] = (prepped_separate / models["en"]).read_bytes()
    vocab["joint"] = False
    path = tmp_path_factory.mktemp("separate") / "separate.pt"
    checkpoint.save(path, payload)  # a new digest: the vocabulary changed on purpose
    return path


@pytest.mark.parametrize("overrides", [{"beam": 1}, {"beam": 4, "nbest": 4}, {"beam": 3, "alpha": 0.0, "beta": 0.3}])
def test_hypotheses_hold_no_special_ids(trained, overrides):
    translator = translator_for(trained / "best.pt", keep_attention=True, **overrides)
    lines = [Line(i, de) for i, (de, _) in enumerate(make_pairs(12, 21))] + [Line(12, "")]
    for line in lines:
        translator.encode(line, "test")
    translator.translate(lines)
    assert lines[-1].hyps == []  # an empty line is never searched
    for line in lines[:-1]:
        assert 1 <= len(line.hyps) <= overrides.get("nbest", 1)
        for hyp in line.hyps:
            assert not {PAD_ID, SOS_ID, EOS_ID} & set(hyp.tokens)
            assert hyp.attention is not None and hyp.attention.size(0) >= len(hyp.tokens)


def test_replace_unk_puts_back_the_most_attended_source_subwords(trained):
    translator = translator_for(trained / "best.pt", replace_unk=True)
    line = encoded(translator, "Hund  Katze")
    assert line.text == "Hund Katze"  # normalized as at prep time
    assert translator.detokenize(line, copying_unks(line)) == "Hund Katze"


def test_without_replace_unk_an_unk_stays_unknown(trained):
    translator = translator_for(trained / "best.pt", keep_attention=True)
    line = encoded(translator, "Hund Katze")
    assert "Hund" not in translator.detokenize(line, copying_unks(line))


def test_replace_unk_with_separate_vocabularies_gives_plain_words(separate_checkpoint):
    translator = translator_for(separate_checkpoint, replace_unk=True)
    line = encoded(translator, "Hund Katze")
    text = translator.detokenize(line, copying_unks(line))
    assert WORD_START not in text
    assert text == "Hund Katze"


def test_alignment_target_indices_are_words_of_the_printed_line(trained):
    translator = translator_for(trained / "best.pt", keep_attention=True)
    line = encoded(translator, "Hund")
    sp = spm_of(translator, "tgt")
    tokens = [sp.piece_to_id(WORD_START), sp.piece_to_id(WORD_START), sp.piece_to_id("o")]
    assert UNK_ID not in tokens
    weights = torch.zeros(len(tokens) + 1, len(line.ids) + 1)
    weights[:, 0] = 1.0
    line.hyps = [Hypothesis(tokens, -1.0, -1.0, weights)]
    buffer = io.StringIO()
    text = format_line(translator, line, Outputs(alignments=buffer))
    write_attention(translator, line, Outputs(alignments=buffer))
    links = buffer.getvalue().rstrip("\n")
    assert re.fullmatch(r"(\d+-\d+)( \d+-\d+)*", links)
    words = len(text.split())
    assert words >= 1
    for link in links.split():
        assert int(link.split("-")[1]) < words, (links, repr(text))


def test_int8_quantizes_every_product_but_bahdanaus_v(trained):
    """--quantize int8: the decoder's joined input layer, its output layer and every other
    linear layer are int8; Bahdanau's v (one output per (row, source position) pair,
    whose input would be quantized anew at every step) and the encoder stay fp32."""
    from nmt_cli.decode.inference import Inference
    from nmt_cli.model.rewrites import FusedEncoder, Int8Linear

    model = Inference.load(trained / "best.pt", {"quantize": "int8"}, torch.device("cpu")).model
    assert model.cfg.attention == "bahdanau"
    linear = {name: type(m) for name, m in model.named_modules() if isinstance(m, (torch.nn.Linear, Int8Linear))}
    assert {"decoder.joined_inputs", "decoder.joined_query", "decoder.output"} <= linear.keys()
    assert linear.pop("decoder.attention.v") is torch.nn.Linear
    assert set(linear.values()) == {Int8Linear}
    assert isinstance(model.encoder, FusedEncoder) and next(model.encoder.parameters()).dtype == torch.float32


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/self/maps")
@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_a_loaded_model_does_not_keep_its_checkpoint_file_mapped(trained, quantize):
    """The checkpoint is mapped while it loads (its optimizer state is never read), and
    the mapping goes with it: the translator's tensors are its own, so the file's pages
    do not count towards its memory."""
    from nmt_cli.decode.inference import Inference

    inference = Inference.load(trained / "best.pt", {"quantize": quantize}, torch.device("cpu"))
    assert inference.model is not None
    assert str(trained / "best.pt") not in Path("/proc/self/maps").read_text()


def test_translation_scores_only_the_training_targets_words_and_forced_decoding_all(trained):
    from nmt_cli.decode import forced
    from nmt_cli.decode.inference import Inference

    words = torch.load(trained / "best.pt", weights_only=True)["vocab"]["tgt_words"]
    search = Inference.load(trained / "best.pt", {}, torch.device("cpu"))
    assert search.model.decoder.output_ids.tolist() == [w for w in words if w not in (PAD_ID, SOS_ID)]
    assert search.model.decoder.output.out_features == len(words)  # UNK and EOS in, PAD and SOS never were
    scoring = Inference.load(trained / "best.pt", {}, torch.device("cpu"), search=False)
    assert scoring.model.decoder.output_ids is None
    with pytest.raises(ValueError, match="search=False"):
        forced.score_pairs(search, [], 8)


def test_a_model_trained_on_its_target_words_translates_and_scores_over_them(tmp_path, prepped):
    """``output_vocab: target``: training, validation, search and forced decoding all run
    over the training targets' words; forced decoding counts any other word as UNK."""
    from nmt_cli.decode import forced
    from nmt_cli.decode.inference import Inference

    out = tmp_path / "m"
    assert_ok(run_train(prepped, out, *sets("model.output_vocab=target", "train.max_steps=4", "train.valid_every=2")))
    payload = torch.load(out / "best.pt", weights_only=True)
    words = payload["vocab"]["tgt_words"]
    assert payload["config"]["model"]["output_vocab"] == "target"
    scoring = Inference.load(out / "best.pt", {}, torch.device("cpu"), search=False)
    assert scoring.model.decoder.output_ids.tolist() == [PAD_ID, *words]
    other = next(i for i in range(4, payload["vocab"]["tgt_size"]) if i not in words)
    pairs = [forced.Pair(0, [5, 6, 7], [words[-1], other])]  # scored as UNK (tests/model/test_decoder.py)
    forced.score_pairs(scoring, pairs, 8)
    assert math.isfinite(pairs[0].logprob) and pairs[0].logprob < 0
    int8 = Inference.load(out / "best.pt", {"quantize": "int8"}, torch.device("cpu"), search=False)
    quantized = [forced.Pair(0, [5, 6, 7], [words[-1], other])]
    forced.score_pairs(int8, quantized, 8)
    assert quantized[0].logprob == pytest.approx(pairs[0].logprob, rel=0.05)
    search = Inference.load(out / "best.pt", {}, torch.device("cpu"))
    assert search.model.decoder.output_ids.tolist() == [w for w in words if w not in (PAD_ID, SOS_ID)]
    translator = Search(search)
    line = encoded(translator, "ein Hund läuft")
    translator.translate([line])
    assert line.hyps and set(line.hyps[0].tokens) <= set(words)
