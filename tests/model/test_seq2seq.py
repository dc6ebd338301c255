"""The whole encoder-decoder: every architecture option trains (finite loss, a gradient
for every parameter), the loss is cross-entropy, and a tiny model learns to copy."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import COPY_MAX, COPY_MIN, COPY_VOCAB, PAD_ID, make_batch, random_sequences, tiny_model_config

from nmt_cli.model.loss import token_losses
from nmt_cli.model.seq2seq import Seq2Seq, parameter_count

VOCAB = 27  # one (joint) vocabulary for both sides, so sharing embeddings is possible
ARCHITECTURES = [
    pytest.param(
        dict(
            attention=attention,
            cell=cell,
            input_feeding=feeding,
            bidirectional=bi,
            encoder_layers=layers,
            decoder_layers=layers,
            bridge=bridge,
        ),
        id=f"{attention}-{cell}-{'feed' if feeding else 'nofeed'}-{'bi' if bi else 'uni'}-{layers}l-"
        f"{'bridge' if bridge else 'zeros'}",
    )
    for attention in ("bahdanau", "luong_dot", "luong_general")
    for cell in ("gru", "lstm")
    for feeding in (True, False)
    for bi in (True, False)
    for layers in (1, 2)
    for bridge in (True, False)
]
VARIANTS = {  # sharing and tying, and encoder/decoder depths that differ
    "share": dict(share_embeddings=True),
    "tie": dict(tie_output=True),
    "share+tie": dict(share_embeddings=True, tie_output=True),
    "enc2-dec1": dict(encoder_layers=2, decoder_layers=1),
    "enc1-dec2": dict(encoder_layers=1, decoder_layers=2),
}
SHARING = [
    pytest.param(dict(attention=attention, cell=cell, **extra), id=f"{attention}-{cell}-{name}")
    for attention in ("bahdanau", "luong_dot", "luong_general")
    for cell in ("gru", "lstm")
    for name, extra in VARIANTS.items()
]


def training_batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    src = random_sequences(5, VOCAB, 1, 9, g)
    tgt = random_sequences(5, VOCAB, 1, 9, g)
    return make_batch(src, tgt)


def check_one_training_step(overrides: dict) -> None:
    torch.manual_seed(0)
    cfg = tiny_model_config(dropout=0.1, emb_dropout=0.1, **overrides)
    model = Seq2Seq(cfg, VOCAB, VOCAB).train()
    batch = training_batch()
    loss, nll = model.loss(batch, label_smoothing=0.1)
    assert loss.dim() == 0 and math.isfinite(loss.item()) and loss.item() > 0
    assert math.isfinite(nll.item()) and nll.item() > 0
    (loss / batch.tokens).backward()
    params = dict(model.named_parameters())  # each shared tensor once
    assert params
    for name, p in params.items():
        assert p.grad is not None, f"{name} got no gradient"
        assert bool(torch.isfinite(p.grad).all()), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient (not connected to the loss?)"
    # the PAD embedding row learns nothing as an input (tied, it is also the PAD output row)
    if not cfg.tie_output:
        for embedding in {id(e): e for e in (model.encoder.embedding, model.decoder.embedding)}.values():
            assert bool((embedding.weight.grad[PAD_ID] == 0).all())


@pytest.mark.parametrize("overrides", ARCHITECTURES)
def test_every_architecture_trains(overrides):
    check_one_training_step(overrides)


@pytest.mark.parametrize("overrides", SHARING)
def test_shared_tied_and_mixed_depth_models_train(overrides):
    check_one_training_step(overrides)


def test_parameter_count_counts_shared_tensors_once():
    torch.manual_seed(0)
    separate = Seq2Seq(tiny_model_config(), VOCAB, VOCAB)
    shared = Seq2Seq(tiny_model_config(share_embeddings=True), VOCAB, VOCAB)
    table = VOCAB * 16
    assert parameter_count(separate) == sum(p.numel() for p in separate.parameters())
    assert parameter_count(separate) - parameter_count(shared) == table


@pytest.mark.parametrize("share", [False, True])
def test_init_uniform_bounds_every_weight_and_keeps_pad_zero(share):
    torch.manual_seed(0)
    model = Seq2Seq(tiny_model_config(init_uniform=0.05, share_embeddings=share, tie_output=share), VOCAB, VOCAB)
    weights = list(model.parameters())
    assert max(p.abs().max().item() for p in weights) <= 0.05
    assert min(p.abs().max().item() for p in weights) > 0.03  # every tensor was drawn, not left at 0
    assert not model.encoder.embedding.weight[PAD_ID].any() and not model.decoder.embedding.weight[PAD_ID].any()
    if share:
        assert model.decoder.output.weight is model.decoder.embedding.weight


@pytest.mark.parametrize("attention", ["bahdanau", "luong_general", "luong_dot"])
def test_under_autocast_the_encoder_states_are_kept_once_for_backward(attention):
    """Attention reads the states at every decoder step; autocast would cast them (and keep
    the copy) at each one, so the model casts them once."""
    torch.manual_seed(0)
    model = Seq2Seq(tiny_model_config(attention=attention), VOCAB, VOCAB)
    batch = training_batch()
    src_len, memory_size = batch.src.size(1), model.encoder.output_size
    copies = {}

    def pack(t):
        if t.dtype == torch.bfloat16 and t.shape == (batch.src.size(0), src_len, memory_size):
            copies[t.untyped_storage().data_ptr()] = t
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    assert batch.tgt_in.size(1) > 2 and len(copies) == 1
    token_losses(logits, batch.tgt_out, 0.1)[0].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_model_loss_is_token_losses_of_its_logits():
    torch.manual_seed(0)
    model = Seq2Seq(tiny_model_config(), VOCAB, VOCAB).eval()
    batch = training_batch()
    with torch.no_grad():
        loss, nll = model.loss(batch, 0.2)
        want = token_losses(model(batch.src, batch.src_lengths, batch.tgt_in), batch.tgt_out, 0.2)
    assert torch.allclose(loss, want[0]) and torch.allclose(nll, want[1])
    assert batch.tokens == int((batch.tgt_out != PAD_ID).sum())


# ----------------------------------------------------------------------------- learning


def test_a_tiny_model_learns_to_copy(copy_model):
    model, final_train_loss = copy_model
    assert final_train_loss < 0.1
    held_out = make_batch(random_sequences(200, COPY_VOCAB, COPY_MIN, COPY_MAX, torch.Generator().manual_seed(99)))
    with torch.no_grad():
        nll = model.loss(held_out, 0.0)[1].item() / held_out.tokens
    assert nll < 0.1, nll
