"""A model from a checkpoint: its config, vocabulary and weights checked against one
another before anything is built from them (:func:`validate`), and the model built from
them (:func:`load_model`). The file format itself is ``checkpoint.py``'s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from nmt_cli.checkpoint import FOR_INFERENCE, RESUME
from nmt_cli.config import Config, from_dict
from nmt_cli.errors import NmtError, shown
from nmt_cli.model.seq2seq import Seq2Seq

MAX_VOCAB = 1 << 24


class _SkipInit(TorchFunctionMode):
    """Builds modules without drawing their random initial weights, which the checkpoint's
    replace anyway: drawing them is a visible part of a short ``nmt translate``
    (docs/performance.md). Not the meta device: its context imports ``torch._dynamo``,
    which costs more start-up than it saves."""

    SKIP = {torch.Tensor.uniform_, torch.Tensor.normal_, nn.init.uniform_, nn.init.normal_, nn.init.kaiming_uniform_}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.SKIP:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


class _Shapes(_SkipInit):
    """Builds modules on the meta device (shapes, no memory): what a config asks for can
    be compared with the weights a file holds before anything is allocated. Its own
    mode, not ``torch.device("meta")``, for the reason given at :class:`_SkipInit`, which
    it extends: a random draw on a meta tensor also imports ``torch._dynamo``.
    ``torch.tensor`` is left out: its data is in memory already, and the model reads it
    back (``output_vocab: target`` sorts the list of target words); so is ``torch.arange``
    (a few ids), which on the meta device first sets up torch's Python decompositions."""

    FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.FACTORIES:
            kwargs["device"] = "meta"
        return super().__torch_function__(func, types, args, kwargs)


def validate(payload: dict[str, Any], path: Path | str, resume: bool = False) -> Config:
    """The checkpoint's Config, once its structure and sizes are checked: the config is
    one, the vocabulary's sizes and word ids agree, every weight has the shape the config
    asks for and is finite (and, to ``resume``, the training state is there). Nothing is
    built from the file before this holds; a one-line error names what does not."""

    def bad(what: str) -> NmtError:
        return NmtError(f"{path}: malformed nmt checkpoint ({what})")

    for key in FOR_INFERENCE + (RESUME if resume else ()):
        if key not in payload:
            if resume and "averaged" in payload:
                raise NmtError(
                    f"{path}: written by `nmt average`, for translating: it holds no training "
                    "state to resume from; resume from a step checkpoint (ckpt-*.pt)"
                )
            raise bad(f"no {key}")
        if not isinstance(payload[key], dict):
            raise bad(f"{key} is not a mapping")
    try:
        cfg = from_dict(Config, payload["config"])
        cfg.validate()
    except NmtError as e:
        raise bad(f"config: {e}") from None
    vocab, weights = payload["vocab"], payload["model"]
    for side in ("src", "tgt"):
        size = vocab.get(f"{side}_size")
        if type(size) is not int or not 4 < size <= MAX_VOCAB:
            raise bad(f"vocab.{side}_size is {shown(size)}, not a vocabulary size")
        if not isinstance(vocab.get(f"{side}_spm"), bytes):
            raise bad(f"vocab.{side}_spm is not a SentencePiece model")
    words = vocab.get("tgt_words")
    if words is not None and not (
        isinstance(words, list) and all(type(w) is int and 0 <= w < vocab["tgt_size"] for w in words)
    ):
        raise bad(f"vocab.tgt_words are not word ids below the target vocabulary's size {vocab['tgt_size']}")
    try:
        with _Shapes():
            expected = Seq2Seq(cfg.model, vocab["src_size"], vocab["tgt_size"], words).state_dict()
    except (ValueError, RuntimeError, TypeError) as e:
        raise bad(f"its config and vocabulary make no model: {shown(e)}") from None
    if set(weights) != set(expected):
        odd = sorted(set(weights) ^ set(expected))
        raise bad(f"weights {', '.join(map(str, odd[:3]))}{'...' if len(odd) > 3 else ''} are missing or foreign")
    for name, tensor in weights.items():
        if (
            not isinstance(tensor, torch.Tensor)
            or tensor.shape != expected[name].shape
            or not tensor.is_floating_point()
        ):
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else shown(tensor)
            raise bad(f"weight {name} is {shape}, the config makes it {tuple(expected[name].shape)}")
        if not torch.isfinite(tensor).all():
            raise bad(f"weight {name} holds NaN or infinite values")
    return cfg


def load_model(payload: dict[str, Any], device: str | torch.device = "cpu", path: Path | str = "checkpoint"):
    """The Seq2Seq model a checkpoint holds, in eval mode, with its config (checked first,
    :func:`validate`)."""
    cfg = validate(payload, path)
    vocab = payload["vocab"]
    with _SkipInit():  # every weight is replaced below
        model = Seq2Seq(cfg.model, vocab["src_size"], vocab["tgt_size"], vocab.get("tgt_words"))
    model.load_state_dict(payload["model"], assign=True)  # take the (possibly mmapped) tensors, no copy
    if cfg.model.tie_output:  # assign=True set each name's tensor: tie the output layer again
        model.decoder.output.weight = model.decoder.embedding.weight
    return model.to(device).eval(), cfg
