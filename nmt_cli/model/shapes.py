"""Few distinct matrix-product shapes.

Under bf16 autocast on a CPU the matrix products run in oneDNN, which compiles a kernel
for every distinct shape it meets and keeps it in a cache of up to 1,024
(``ONEDNN_PRIMITIVE_CACHE_CAPACITY``), each with its descriptor (and as much again for
ideep's copy of the descriptor, which ``allocator.limit_descriptor_cache`` keeps to a
few). A batch has its own sentence count, source length and token counts, so left alone
every batch brings a few dozen new shapes: their compiling takes a noticeable share of
training time, and the full cache much of the peak RSS above the live tensors
(``docs/performance.md``). Rounding the row counts of products up, with zero rows added
and their results dropped, lets a few hundred shapes serve a whole run:

- the rows of a step's products (one a sentence still running) to a multiple of
  ``STEP_ROWS``: the packed encoder's steps, greedy search's shrinking batch;
- the rows of products over every token of a batch (the encoder's and decoder's input
  products, the attention keys, the output layer) to a multiple of ``TOKEN_ROWS``.

Training batches pad their source side to a multiple of ``LENGTH_MULTIPLE``
(``batching.PairData.collate``), and with ``train.batch_multiple`` (the multi30k_de_en
recipe: 32) every batch holds a multiple of that many sentences: full batches by their
cut, the last of each pool with empty pairs added. Validation's greedy search rounds its
rows to the same multiple, so that it runs on training's kernels.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor
from torch.nn import functional as F

from nmt_cli.model import rnn  # (rnn imports this module too: its names are read at call time)

STEP_ROWS = 8
TOKEN_ROWS = 256  # at most 255 zero rows on a 3,000-5,000-token batch: under 4% more work in these products
LENGTH_MULTIPLE = 8


def round_up(n: int, multiple: int) -> int:
    """The least multiple of ``multiple`` that is at least ``n``."""
    return -(-n // multiple) * multiple


def rounded_rows(n: int, limit: int, multiple: int = STEP_ROWS) -> int:
    """``n`` rows rounded up to a multiple of ``multiple``, at most ``limit``: the row
    count a step's products run over."""
    return min(round_up(n, multiple), limit)


def token_rows(n: int) -> int:
    """The rows a product over ``n`` rows of a batch runs over: ``n`` rounded up to a
    multiple of ``TOKEN_ROWS``, or of ``STEP_ROWS`` when that is fewer than ``TOKEN_ROWS``."""
    return round_up(n, STEP_ROWS) if n <= TOKEN_ROWS else round_up(n, TOKEN_ROWS)


def padded_rows(x: Tensor, rows: int, value: float = 0) -> Tensor:
    """x (n, ...) with rows of ``value`` added up to ``rows``."""
    extra = rows - x.size(0)
    return x if extra <= 0 else F.pad(x, (0, 0) * (x.dim() - 1) + (0, extra), value=value)


def over_rounded_rows(product: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``product`` (a layer, or any function of rows) of x (..., in) -> (..., out), run over
    x's rows with zero rows added up to :func:`token_rows`."""
    flat = x.reshape(-1, x.size(-1))  # (n, in)
    n = flat.size(0)
    return product(padded_rows(flat, token_rows(n)))[:n].view(*x.shape[:-1], -1)


def product_shapes(model, rows: int) -> list[tuple[int, int, int]]:
    """(rows, k, n) of the matrix products that dominate a step of this model (a
    ``ModelConfig``): the decoder's recurrent product and its output layer over ``rows``
    target positions. What the precision probe times."""
    gates = rnn.GATES[model.cell]
    return [
        (rows, model.decoder_hidden, gates * model.decoder_hidden),
        (rows, model.output_size, 4 * model.output_size),
    ]
