"""`nmt plot`: training curves from ``metrics.jsonl``, several runs overlaid.

Four panels: training loss against steps, validation perplexity against steps, and
validation BLEU against steps and against minutes of training (wall-clock time is what a
budget such as ``max_time: 20m`` buys). Needs matplotlib (``pip install 'nmt-cli[plot]'``).
"""

from __future__ import annotations

from pathlib import Path

from nmt_cli.train import metrics


def plot(runs: list[Path], out: Path) -> str:
    """Write the curves of model directories ``runs`` to the PNG ``out``; returns the summary line."""
    from nmt_cli.decode.alignment import check_matplotlib

    check_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {}
    for run in runs:
        records = metrics.read(run)
        curves[str(run)] = (
            [e for e in records if e.get("event") == "train"],
            [e for e in records if e.get("event") == "valid"],
        )
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), dpi=100)
    panels = [
        (axes[0, 0], 0, "step", "loss", "training loss"),
        (axes[0, 1], 1, "step", "ppl", "validation perplexity"),
        (axes[1, 0], 1, "step", "bleu", "validation BLEU"),
        (axes[1, 1], 1, "elapsed", "bleu", "validation BLEU"),
    ]
    for ax, which, x, y, title in panels:
        for name, events in curves.items():
            points = [(e[x] / 60 if x == "elapsed" else e[x], e[y]) for e in events[which] if x in e and y in e]
            if points:
                ax.plot(*zip(*points), marker="o" if which else None, markersize=3, label=name)
        ax.set_xlabel("minutes" if x == "elapsed" else "step")
        ax.set_title(title, fontsize=10)
        if y == "ppl":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    from nmt_cli import io as nio

    with nio.atomic_file(out, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return f"nmt plot: wrote {out}"
