"""StackedCells: the decoder's hand-written GRU/LSTM cells equal torch's, layer by layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nmt_cli.model.rnn import StackedCells

IN, HIDDEN, BATCH = 7, 5, 3


def load_from_torch(cells: StackedCells, ref: nn.GRU | nn.LSTM) -> None:
    """Copy torch's weights into the cells: layer 0's input part "x", then ih/hh per layer."""
    with torch.no_grad():
        for layer in range(ref.num_layers):
            w_ih, w_hh = getattr(ref, f"weight_ih_l{layer}"), getattr(ref, f"weight_hh_l{layer}")
            b_ih, b_hh = getattr(ref, f"bias_ih_l{layer}"), getattr(ref, f"bias_hh_l{layer}")
            ih = cells.inputs["x"] if layer == 0 else cells.ih[layer - 1]
            ih.weight.copy_(w_ih)
            cells.hh[layer].weight.copy_(w_hh)
            if cells.cell == "gru":  # r's and z's biases add up, n's hidden bias sits inside r * (.)
                ih.bias.copy_(b_ih)
                cells.hh[layer].bias.copy_(b_hh)
            else:  # an LSTM's two biases always add up: the cells keep one
                assert cells.hh[layer].bias is None
                ih.bias.copy_(b_ih + b_hh)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_steps_equal_torch_rnn(cell, layers):
    torch.manual_seed(0)
    ref = (nn.GRU if cell == "gru" else nn.LSTM)(IN, HIDDEN, num_layers=layers, batch_first=True)
    cells = StackedCells(cell, {"x": IN}, HIDDEN, layers, dropout=0.0)
    load_from_torch(cells, ref)
    x = torch.randn(BATCH, 6, IN)
    h0 = torch.randn(layers, BATCH, HIDDEN)
    c0 = torch.randn(layers, BATCH, HIDDEN)
    want, final = ref(x, h0 if cell == "gru" else (h0, c0))
    state = [h0[i] if cell == "gru" else torch.cat([h0[i], c0[i]], dim=-1) for i in range(layers)]
    outputs = []
    for t in range(x.size(1)):
        h, state = cells(cells.project("x", x[:, t]), state)
        outputs.append(h)
    assert torch.allclose(torch.stack(outputs, dim=1), want, atol=1e-5)
    final_h = final if cell == "gru" else final[0]
    for i in range(layers):
        assert torch.allclose(state[i][:, :HIDDEN], final_h[i], atol=1e-5)
        if cell == "lstm":
            assert torch.allclose(state[i][:, HIDDEN:], final[1][i], atol=1e-5)


@pytest.mark.parametrize("cell, size", [("gru", HIDDEN), ("lstm", 2 * HIDDEN)])
def test_state_is_one_tensor_per_layer(cell, size):
    cells = StackedCells(cell, {"x": IN}, HIDDEN, 2, dropout=0.0)
    assert cells.state_size == size
    h, state = cells(cells.project("x", torch.randn(BATCH, IN)), [torch.zeros(BATCH, size)] * 2)
    assert h.shape == (BATCH, HIDDEN)
    assert [s.shape for s in state] == [(BATCH, size)] * 2
    assert torch.equal(state[-1][:, :HIDDEN], h)  # the top layer's output is its h


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_input_parts_add_up_to_one_linear_over_their_concatenation(cell):
    """Layer 0's input in parts (emb, context, feed): the sum of the parts' products is
    one linear layer over [emb; context; feed], with a single bias (the first part's)."""
    torch.manual_seed(0)
    parts = {"emb": 4, "context": 6, "feed": 3}
    cells = StackedCells(cell, parts, HIDDEN, 1, dropout=0.0)
    assert cells.inputs["emb"].bias is not None
    assert cells.inputs["context"].bias is None and cells.inputs["feed"].bias is None
    xs = {k: torch.randn(BATCH, n) for k, n in parts.items()}
    summed = sum(cells.project(k, x) for k, x in xs.items())
    weight = torch.cat([cells.inputs[k].weight for k in parts], dim=1)
    joint = torch.cat(list(xs.values()), dim=1) @ weight.T + cells.inputs["emb"].bias
    assert torch.allclose(summed, joint, atol=1e-6)  # what joins them for inference (model/rewrites.py)


def test_dropout_between_layers_only_in_training():
    torch.manual_seed(0)
    cells = StackedCells("gru", {"x": IN}, HIDDEN, 2, dropout=0.5)
    gi, state = cells.project("x", torch.randn(BATCH, IN)), [torch.zeros(BATCH, HIDDEN)] * 2
    cells.eval()
    assert torch.equal(cells(gi, state)[0], cells(gi, state)[0])
    cells.train()
    assert not torch.equal(cells(gi, state)[0], cells(gi, state)[0])
