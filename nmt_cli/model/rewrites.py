"""Rewrites of the reference network that compute the same function faster, by stage;
``tests/model/test_rewrites.py`` checks them against the reference. Each swaps a module:
a rewritten decoder holds the reference's submodules under their names (the same
state_dict) and overrides how a step makes its products, never the equations.

Training (:func:`for_training`), joined products under teacher forcing
(:class:`TrainingDecoder`): Bahdanau's query W_q s_{t-1} and the top layer's recurrent
product W_hh s_{t-1} + b_hh read the same state, and layer 0's context and fed-back parts
come together: one product each, [W_q; W_hh] s_{t-1} and [W_context W_feed] [c_t; h̃_{t-1}],
the weights joined and cast to autocast's dtype once a pass. A step makes two products
instead of four, and its backward pass as many fewer (docs/performance.md).

Inference (:func:`for_inference`):

* joined products (:class:`InferenceDecoder`): one layer [W_emb W_context W_feed] over
  [y_{t-1}; c_t; h̃_{t-1}], one layer [W_q; W_hh] over s_{t-1};
* cut output: a plain layer of the output layer's rows for the words it scores (int8 can
  take it), for search restricted to the words it may produce: the output layer, softmax
  and top-k of a step shrink as much;
* :class:`FusedEncoder`: torch's fused recurrent kernels; :class:`HardAttention`, a
  diagnostic; :class:`Int8Linear`: int8 products, each input row on its own range.
"""

from __future__ import annotations

import contextlib
import copy
import warnings

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from nmt_cli.config import DecodeConfig
from nmt_cli.device import to_autocast_dtype
from nmt_cli.model.attention import Attention
from nmt_cli.model.decoder import Decoder
from nmt_cli.model.encoder import Encoder, RecurrentLayer
from nmt_cli.model.seq2seq import Batch, Seq2Seq
from nmt_cli.vocab import PAD, SOS


def swapped(module: nn.Module, cls: type) -> nn.Module:
    """``module`` as ``cls``, a subclass of its class: the same submodules, parameters and
    buffers under the same names (the optimizer's and the checkpoint's), ``cls``'s methods."""
    new = cls.__new__(cls)
    new.__dict__.update({k: copy.copy(v) if isinstance(v, (dict, set, list)) else v for k, v in vars(module).items()})
    return new


def _query_weights(decoder: Decoder) -> tuple[Tensor, Tensor]:
    """[W_q; W_hh] (heads*att + gates*hidden, hidden) and [0; b_hh]: Bahdanau's query and
    the top layer's recurrent product, which read the same state s_{t-1}."""
    query, hh = decoder.attention.query_layer.weight, decoder.rnn.hh[-1]
    hh_bias = hh.bias if hh.bias is not None else hh.weight.new_zeros(hh.out_features)  # an LSTM's is in gi
    return torch.cat([query, hh.weight]), torch.cat([query.new_zeros(query.size(0)), hh_bias])


def _split_query(decoder: Decoder, both: Tensor) -> tuple[Tensor, Tensor]:
    """(rows, heads*att + gates*hidden) -> W_q s_{t-1} and W_hh s_{t-1} + b_hh."""
    size = decoder.attention.query_layer.out_features
    return both[:, :size], both[:, size:]


def _side_by_side(decoder: Decoder, parts: list[str]) -> Tensor:
    """[W_a W_b ...] (gates*hidden, Σ sizes): layer 0's weights for the named parts."""
    return torch.cat([decoder.rnn.inputs[k].weight for k in parts], dim=1)


class TrainingDecoder(Decoder):
    """The decoder with joined products under teacher forcing (module docstring), made
    from the parameters as they are at the start of each pass; a step outside a pass
    (validation's search) is the reference's."""

    _joined: tuple = (None, None)  # during a pass: [W_context W_feed] or None; ([W_q; W_hh], [0; b_hh]) or None

    def forward(self, *args) -> Tensor:
        with self._joining():
            return super().forward(*args)

    def sampled(self, *args) -> Tensor:
        with self._joining():
            return super().sampled(*args)

    @contextlib.contextmanager
    def _joining(self):
        parts = [k for k in self.rnn.inputs if k != "emb"]
        weight, bias = _query_weights(self) if self.bahdanau else (None, None)
        inputs = to_autocast_dtype(_side_by_side(self, parts)) if len(parts) > 1 else None
        self._joined = inputs, (to_autocast_dtype(weight), bias) if self.bahdanau else None
        try:
            yield
        finally:
            self._joined = (None, None)

    def layer0(self, emb_in: Tensor, parts: dict[str, Tensor]) -> Tensor:
        if self._joined[0] is None:
            return super().layer0(emb_in, parts)
        return emb_in + F.linear(torch.cat([parts[k] for k in self.rnn.inputs if k in parts], dim=-1), self._joined[0])

    def query(self, state: Tensor) -> tuple[Tensor, Tensor | None]:
        if self._joined[1] is None:
            return super().query(state)
        return _split_query(self, F.linear(state, *self._joined[1]))


class TrainingLoss(nn.Module):
    """``Seq2Seq.loss`` as a module's forward, which DDP wraps (its hooks run around a forward)."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model

    def forward(self, batch: Batch, label_smoothing: float, teacher_forcing: float = 1.0) -> tuple[Tensor, Tensor]:
        return self.model.loss(batch, label_smoothing, teacher_forcing)


def for_training(model: Seq2Seq) -> TrainingLoss:
    """``model`` with its decoder a :class:`TrainingDecoder` (the same parameters), and its
    loss as a module."""
    model.decoder = swapped(model.decoder, TrainingDecoder)
    return TrainingLoss(model)


class InferenceDecoder(Decoder):
    """The decoder with joined products and a cut output layer (module docstring):
    ``joined_inputs`` [W_emb W_context W_feed], ``joined_query`` [W_q; W_hh] (Bahdanau).
    A teacher-forced pass (forced decoding) keeps the reference's layer-0 products, whose
    embedding part is one product over all target positions."""

    _forcing = False  # during a teacher-forced pass

    def forward(self, *args) -> Tensor:
        self._forcing = True
        try:
            return super().forward(*args)
        finally:
            self._forcing = False

    def embed(self, tokens: Tensor) -> Tensor:
        return super().embed(tokens) if self._forcing else self.embedding(tokens)  # (..., emb): see layer0

    def layer0(self, emb: Tensor, parts: dict[str, Tensor]) -> Tensor:
        if self._forcing:
            return super().layer0(emb, parts)
        return self.joined_inputs(torch.cat([emb, *(parts[k] for k in self.rnn.inputs if k in parts)], dim=-1))

    def query(self, state: Tensor) -> tuple[Tensor, Tensor]:
        return _split_query(self, self.joined_query(state))

    def logits(self, att: Tensor, rows: tuple[Tensor, Tensor] | None = None) -> Tensor:
        return self.output(self.dropout(att))  # a plain or int8 layer of the k rows


def _linear(weight: Tensor, bias: Tensor) -> nn.Linear:
    """A layer holding copies of ``weight`` (out, in) and ``bias`` (out,)."""
    layer = nn.Linear(weight.size(1), weight.size(0), device=weight.device)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return layer


def inference_decoder(decoder: Decoder, words: Tensor | None = None) -> InferenceDecoder:
    """``decoder`` with joined products and its output layer cut to the words it scores:
    ``words`` (k,), those search may produce (never PAD or SOS; a word outside them is
    then no column: forced decoding needs them None), else those it scores already."""
    new = swapped(decoder, InferenceDecoder)
    new.joined_inputs = _linear(_side_by_side(decoder, list(decoder.rnn.inputs)), decoder.rnn.inputs["emb"].bias)
    if decoder.bahdanau:
        new.joined_query = _linear(*_query_weights(decoder))
    if words is not None:
        words = words.to(new.output.weight.device)
        new.output_ids, new.columns, new.banned = words[(words != PAD) & (words != SOS)], None, []
    if new.output_ids is not None:
        new.output = _linear(new.output.weight[new.output_ids], new.output.bias[new.output_ids])
    return new


class HardAttention(Attention):
    """Hard attention: all weight on the most weighted source position (the argmax of the
    soft weights), whose state alone is the context."""

    def weights(self, *args) -> Tensor:
        weights = super().weights(*args)  # (batch, heads, steps, src_len)
        return F.one_hot(weights.argmax(-1), weights.size(-1)).to(weights.dtype)


class FusedEncoder(nn.Module):
    """The same encoder on torch's own ``nn.GRU``/``nn.LSTM``/``nn.RNN`` over packed sequences.

    For inference only: it computes what :class:`Encoder` computes, with torch's fused
    recurrent kernels (no Python per time step). One module per layer, so that residual
    connections can join them. Its forward has :class:`Encoder`'s signature.
    """

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.embedding, self.lstm, self.residual = encoder.embedding, encoder.cell == "lstm", encoder.residual
        self.layers = nn.ModuleList(_fused_layer(layer, encoder.cell, encoder.dirs) for layer in encoder.layers)

    def forward(self, src: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        lengths = lengths.cpu()
        x = self.embedding(src)  # (batch, src_len, emb)
        for i, rnn in enumerate(self.layers):
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, final = rnn(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.size(1))
            x = out + x if self.residual and i > 0 else out  # padding stays zero: both terms are zero there
        h, c = final if self.lstm else (final, None)
        h = torch.cat(list(h), dim=-1)  # the last layer's directions: (batch, dirs*hidden)
        c = torch.cat(list(c), dim=-1) if c is not None else None
        return x, h, c


def _fused_layer(layer: RecurrentLayer, cell: str, dirs: int) -> nn.Module:
    """torch's one-layer GRU/LSTM/RNN holding ``layer``'s weights."""
    kind, ih = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}[cell], layer.ih
    rnn = kind(ih.in_features, layer.hidden, bidirectional=dirs == 2, batch_first=True, device=ih.weight.device)
    weight_ih, bias_ih = ih.weight.chunk(dirs), ih.bias.chunk(dirs)
    with torch.no_grad():
        for d, suffix in enumerate(["", "_reverse"][:dirs]):
            getattr(rnn, f"weight_ih_l0{suffix}").copy_(weight_ih[d])
            getattr(rnn, f"bias_ih_l0{suffix}").copy_(bias_ih[d])
            getattr(rnn, f"weight_hh_l0{suffix}").copy_(layer.hh_weight[d].t())
            hh_bias = getattr(rnn, f"bias_hh_l0{suffix}")
            hh_bias.copy_(layer.hh_bias[d, 0] if layer.hh_bias is not None else torch.zeros_like(hh_bias))
    return rnn


class Int8Linear(nn.Module):
    """y = W x + b with W in int8, a scale per output row, and x quantized row by row.

    Each input row is quantized on its own range max_j |x_ij|, so that a sentence's
    translation does not depend on the sentences batched with it: torch's dynamic
    quantization scales a whole batch by its largest value. fbgemm's int8 product takes
    one range a batch, so the rows are divided by their maxima and two guard rows, all -1
    and all 1, fix that range to [-1, 1] whatever the rows hold; each product's output row
    is multiplied back by its maximum. Activations are quantized to 7 bits
    (``reduce_range``): the 8-bit products of CPUs without VNNI saturate otherwise.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(1).clamp_min(1e-12) / 127
        with warnings.catch_warnings():  # torch warns that quantized tensors are deprecated
            warnings.simplefilter("ignore")
            zero = torch.zeros(len(scale), dtype=torch.long)
            weight = torch.quantize_per_channel(weight, scale, zero, 0, torch.qint8)
            self.packed = torch.ops.quantized.linear_prepack(weight, None)
        self.bias = None if linear.bias is None else linear.bias.detach().clone()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.guard = torch.tensor([[-1.0], [1.0]]).expand(2, self.in_features)

    def forward(self, x: Tensor) -> Tensor:
        rows = x.reshape(-1, self.in_features).float()
        n = rows.size(0)
        largest = rows.abs().amax(-1, keepdim=True).clamp_min(torch.finfo(rows.dtype).tiny)
        scaled = rows.new_empty(n + 2, self.in_features)  # the rows on their own scales, then the guards
        torch.div(rows, largest, out=scaled[:n])
        scaled[n:] = self.guard
        y = torch.ops.quantized.linear_dynamic(scaled, self.packed, True)[:n].mul_(largest)
        if self.bias is not None:
            y = y.add_(self.bias)
        return y.reshape(*x.shape[:-1], self.out_features)


def quantized(model: Seq2Seq) -> Seq2Seq:
    """``model`` (on the CPU) with every linear layer of its decoder an :class:`Int8Linear`
    but Bahdanau's v: its input, a (rows, src_len, attention) table, would be quantized anew
    at every step for a product with one output. The encoder keeps its precision (fp32, or
    bf16 under ``--precision bf16``): torch's int8 recurrent layers quantize each step's
    batch on one range (see :class:`Int8Linear`), and the reference encoder, which bf16
    keeps, reads its layers' weights itself."""
    for name, module in list(model.decoder.named_modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is nn.Linear and f"{name}.{child_name}" != "attention.v":
                setattr(module, child_name, Int8Linear(child))
    return model


def for_inference(model: Seq2Seq, decode: DecodeConfig, device: torch.device, words: Tensor | None = None) -> Seq2Seq:
    """``model`` (in eval mode, on ``device``) rewritten as ``decode`` asks: joined products
    and a cut output layer restricted to ``words`` when given (:func:`inference_decoder`),
    hard attention, int8; the fused encoder except under bf16 on a CPU, where the fused
    kernels would stay in fp32."""
    model.decoder = inference_decoder(model.decoder, words)
    if decode.hard_attention:
        model.decoder.attention = swapped(model.decoder.attention, HardAttention)
    if not (decode.precision == "bf16" and device.type == "cpu"):
        model.encoder = FusedEncoder(model.encoder)
    return quantized(model) if decode.quantize == "int8" else model
