"""A checkpoint made ready for inference: the model on its device, in the asked precision
(or with int8 products), with its SentencePiece models and length limit.

Shared by ``nmt translate`` (search) and ``nmt score --model`` (forced decoding).
"""

from __future__ import annotations

import gc
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import sentencepiece as spm
import torch

from nmt_cli import checkpoint
from nmt_cli import device as devices
from nmt_cli.config import Config, DecodeConfig, ModelConfig, with_values
from nmt_cli.errors import NmtError, warn
from nmt_cli.model import rewrites, saved, shapes
from nmt_cli.model.seq2seq import Seq2Seq
from nmt_cli.prep import filters, subwords
from nmt_cli.vocab import PAD, SOS

NO_LIMIT = 1024  # subwords kept per sentence when the checkpoint sets no data.max_len


@dataclass
class Inference:
    model: Seq2Seq
    cfg: Config  # the checkpoint's config, decode: section overridden by the command line
    src_sp: spm.SentencePieceProcessor
    tgt_sp: spm.SentencePieceProcessor
    limit: int  # the model's length limit in subwords (its training max_len)
    device: torch.device
    autocast: Callable
    precision_line: str = ""  # which precision runs and why (``auto``'s choice)

    @classmethod
    def load(cls, path: Path | str, overrides: dict, device: torch.device, search: bool = True) -> Inference:
        """``search``: the model will translate, so its output layer may keep to the words
        it was trained to produce (``rewrites.inference_decoder``); forced decoding, which
        scores given targets, needs every word."""
        # mapped, not read: the optimizer's state is never touched
        payload = checkpoint.load(path, device="cpu", mmap=True, require=checkpoint.FOR_INFERENCE)
        model, cfg = saved.load_model(payload, path=path)
        cfg = with_values(cfg, "decode", overrides)
        vocab = payload["vocab"]
        words = torch.tensor(vocab["tgt_words"]) if search and "tgt_words" in vocab else None  # older: every word
        _check_sampling_options(overrides, cfg.decode)
        if search and not cfg.decode.sampling:  # before the precision probe, which times beam-wide products
            _check_beam(cfg.decode.beam, model, words, path)
        decode, precision_line = choose_precision(cfg.decode, cfg.model, device)
        cfg = replace(cfg, decode=decode)
        src_sp = subwords.from_bytes(vocab["src_spm"], f"{path} (source)")
        tgt_sp = subwords.from_bytes(vocab["tgt_spm"], f"{path} (target)")
        checkpoint.check_subwords(src_sp, vocab["src_size"], path, "source")
        checkpoint.check_subwords(tgt_sp, vocab["tgt_size"], path, "target")
        return cls(
            _prepare(model, cfg.decode, device, words),
            cfg,
            src_sp,
            tgt_sp,
            cfg.data.max_len or NO_LIMIT,
            device,
            devices.autocast(device, decode.precision, "--precision"),
            precision_line,
        )

    @property
    def decode(self) -> DecodeConfig:
        return self.cfg.decode

    def normalize(self, text: str) -> str:
        """The text steps prep applied to the training data (NFKC, whitespace...)."""
        return filters.normalize(text, self.cfg.data)

    def split(self, text: str, sp: spm.SentencePieceProcessor, where: str) -> list[int]:
        """Subword ids of normalized text, truncated to the model's limit with a warning."""
        ids = sp.encode(text) if text else []
        if len(ids) > self.limit:
            warn(f"{where}: {len(ids)} subwords, truncated to the model's limit of {self.limit}")
            ids = ids[: self.limit]
        return ids


def load_all(
    paths: Path | str | Sequence[Path | str], overrides: dict, device: torch.device, search: bool = True
) -> list[Inference]:
    """Checkpoints made ready as an ensemble: every one in the first one's precision; they
    must share the source and target SentencePiece models (so the target vocabulary)."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    first = Inference.load(paths[0], overrides, device, search)
    same = {**overrides, "precision": first.decode.precision, "quantize": first.decode.quantize}
    members = [first] + [Inference.load(path, same, device, search) for path in paths[1:]]
    for path, other in zip(paths[1:], members[1:]):
        for side, name in (("source", "src_sp"), ("target", "tgt_sp")):
            a, b = (getattr(m, name).serialized_model_proto() for m in (first, other))
            if a != b:
                raise NmtError(
                    f"{path}: its {side} SentencePiece model differs from {paths[0]}'s: an ensemble shares them"
                )
    return members


def ensemble_weights(weights: Sequence[float] | str | None, count: int) -> list[float] | None:
    """``--weights`` (``0.5,0.3,0.2``) checked: one positive number per model, scaled to sum 1."""
    if weights is None:
        return None
    if isinstance(weights, str):
        try:
            weights = [float(w) for w in weights.split(",")]
        except ValueError:
            raise NmtError(f"--weights {weights}: expected numbers separated by commas, e.g. 0.5,0.5") from None
    if len(weights) != count or not all(0 < w < math.inf for w in weights):  # inf: nan once scaled
        raise NmtError(f"--weights: give {count} finite positive numbers, one per model; got {len(weights)}: {weights}")
    return [w / sum(weights) for w in weights]


def choose_precision(decode: DecodeConfig, model: ModelConfig, device: torch.device) -> tuple[DecodeConfig, str]:
    """``decode`` with a concrete precision, and a phrase saying which and why.

    ``auto``: what :func:`device.resolve_precision` picks for this model's search products
    (bf16 on a CPU that runs it clearly faster than fp32, else fp32); on a CPU that fbgemm's
    int8 products serve (x86), int8 in place of fp32 (docs/performance.md). int8 takes
    fp32 for the rest.
    """
    int8 = ", int8" if decode.quantize == "int8" else ""
    if decode.precision != "auto":
        return decode, decode.precision + int8
    if int8:
        return replace(decode, precision="fp32"), "auto -> fp32, int8"
    rows = decode.sentences_per_batch * (decode.nbest if decode.sampling else decode.beam)  # sampling: no beam
    precision, why = devices.resolve_precision("auto", device, shapes.product_shapes(model, rows))
    if precision == "fp32" and device.type == "cpu" and devices.int8_products():
        return replace(decode, precision="fp32", quantize="int8"), f"auto -> int8 ({why})"
    return replace(decode, precision=precision), f"auto -> {precision} ({why})"


def _check_sampling_options(overrides: dict, decode: DecodeConfig) -> None:
    """Options that shape sampling's draws alone, given to a search, which would ignore them.
    The checkpoint's values (its recipe's ``decode:`` section) stay: they are the defaults
    of a later ``--sampling``."""
    for key in ("topk", "topp", "temperature", "seed"):
        if overrides.get(key) is not None and not decode.sampling:
            raise NmtError(f"--{key} applies to --sampling: without it, search ignores --{key}")


def _check_beam(beam: int, model: Seq2Seq, words: torch.Tensor | None, path: Path | str) -> None:
    """A beam wider than the words search may produce (the output layer's rows once
    ``rewrites.inference_decoder`` cuts it to ``words``, or to the decoder's own, PAD and
    SOS never picked) holds rows it cannot fill, for time and memory that grow with it."""
    ids = words if words is not None else model.decoder.output_ids
    count = model.decoder.output.out_features - 2 if ids is None else int(((ids != PAD) & (ids != SOS)).sum())
    if beam > count:
        raise NmtError(f"--beam {beam}: more than the {count:,} words {path} can output (its output layer's size)")


def _own(model: Seq2Seq) -> None:
    """Copies of the model's tensors in place of views of the mapped checkpoint file, so
    that the mapping goes with the payload."""
    with torch.no_grad():
        for tensor in itertools.chain(model.parameters(), model.buffers()):
            tensor.data = tensor.data.clone()


def _prepare(model: Seq2Seq, decode: DecodeConfig, device: torch.device, words: torch.Tensor | None) -> Seq2Seq:
    """The model on ``device`` rewritten for inference (``rewrites.for_inference``), its
    tensors its own (:func:`_own`)."""
    int8 = decode.quantize == "int8"
    if int8 and device.type != "cpu":
        raise NmtError("--quantize int8 is for CPU decoding; on CUDA use --precision fp16 or bf16")
    model = rewrites.for_inference(model.to(device), decode, device, words)
    if int8:
        gc.collect()  # the float layers it replaced are in reference cycles, and hold the mapping
    if device.type == "cpu":
        _own(model)
    return model
