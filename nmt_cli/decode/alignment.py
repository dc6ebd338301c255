"""What attention says about a translation: word alignments, heatmaps, a terminal grid.

Attention weights are per subword: ``weights[j, i]`` is the weight target subword j put
on source subword i. SentencePiece marks the first subword of each word with "▁", so a
subword's word index is the number of word starts up to it. A *hard* alignment links
each target subword to the source subword it attends to most (ignoring the source EOS),
and is written per line in Pharaoh format: ``i-j`` pairs of source and target *word*
indices, from 0, sorted, without repeats.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from nmt_cli.errors import NmtError

WORD_START = "\u2581"  # ▁


def word_indices(pieces: list[str]) -> list[int]:
    """The index of the word each subword belongs to in the detokenized text.

    Words are what ``text.split()`` gives, where text is the pieces joined with "▁" read
    as a space: ["▁ein", "▁Mann", "es"] -> [0, 1, 1]. A piece with no visible character
    (a lone "▁") belongs to the word that follows it (or the last word; -1 if none).
    """
    out: list[int] = []
    words, in_word, pending = 0, False, []
    for piece in pieces:
        index = None
        for char in piece.replace(WORD_START, " "):
            if char.isspace():
                in_word = False
                continue
            if not in_word:
                words, in_word = words + 1, True
            if index is None:
                index = words - 1
        if index is None:
            pending.append(len(out))
            out.append(-1)
            continue
        for k in pending:
            out[k] = index
        pending = []
        out.append(index)
    for k in pending:
        out[k] = words - 1  # -1: no word at all
    return out


def links(weights: Tensor, src_pieces: list[str], tgt_pieces: list[str]) -> list[tuple[int, int]]:
    """The hard alignment's (source word, target word) links from weights (tgt_steps,
    src_len), sorted, without repeats; EOS rows and columns dropped."""
    if not src_pieces or not tgt_pieces:
        return []
    best = weights[: len(tgt_pieces), : len(src_pieces)].argmax(dim=1).tolist()  # (tgt_pieces,)
    src_words, tgt_words = word_indices(src_pieces), word_indices(tgt_pieces)
    return sorted({(src_words[i], tgt_words[j]) for j, i in enumerate(best) if src_words[i] >= 0 and tgt_words[j] >= 0})


def hard_alignment(weights: Tensor, src_pieces: list[str], tgt_pieces: list[str]) -> str:
    """Pharaoh ``i-j`` :func:`links`."""
    return " ".join(f"{i}-{j}" for i, j in links(weights, src_pieces, tgt_pieces))


def most_attended(weights: Tensor, step: int, src_len: int) -> int:
    """The source subword (EOS excluded) that target step ``step`` attends to most."""
    return int(weights[step, :src_len].argmax())


def check_matplotlib(what: str = "--attention-plot") -> None:
    """Fail early, before any work, when ``what`` (an option or command) cannot draw."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise NmtError(f"{what} needs matplotlib: pip install 'nmt-cli[plot]' (or pip install matplotlib)") from None


def plot_heatmap(weights: Tensor, src_pieces: list[str], tgt_pieces: list[str], path: Path, title: str) -> None:
    """A PNG heatmap: source subwords across, target subwords (and EOS) down."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    src, tgt = src_pieces + ["</s>"], _rows(tgt_pieces, weights)
    grid = weights[: len(tgt), : len(src)].float().numpy()
    fig, ax = plt.subplots(figsize=(1.0 + 0.42 * len(src), 1.0 + 0.36 * len(tgt)), dpi=100)
    ax.imshow(grid, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(src)), src, rotation=60, ha="right", fontsize=9)
    ax.set_yticks(range(len(tgt)), tgt, fontsize=9)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def attention_table(weights: Tensor, src_pieces: list[str], tgt_pieces: list[str], title: str):
    """A rich Table: a row per target subword, a column per source subword, each cell the
    weight in tenths (· below 0.05) on a background that lightens with the weight."""
    from rich.table import Table

    src, tgt = src_pieces + ["</s>"], _rows(tgt_pieces, weights)
    table = Table(title=title, box=None, pad_edge=False, padding=(0, 1, 0, 0), title_justify="left")
    table.add_column("", no_wrap=True)
    for piece in src:
        table.add_column(piece, justify="center", no_wrap=True)
    for j, piece in enumerate(tgt):
        cells = []
        for i in range(len(src)):
            w = float(weights[j, i])
            shade = 232 + round(w * 23)  # xterm greys: 232 (near black) .. 255 (white)
            ink = "black" if w >= 0.5 else "white"
            cells.append(f"[{ink} on color({shade})]{'·' if w < 0.05 else min(9, round(w * 10))}[/]")
        table.add_row(piece, *cells)
    return table


def _rows(tgt_pieces: list[str], weights: Tensor) -> list[str]:
    """Row labels: the target subwords, and EOS when the hypothesis ended with one
    (one that stopped at the length limit has no EOS step)."""
    return (tgt_pieces + ["</s>"])[: weights.size(0)]
