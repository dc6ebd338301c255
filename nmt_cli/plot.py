"""`nmt plot`: training curves from ``metrics.jsonl``, several runs overlaid.

Four panels: training loss against steps, validation perplexity against steps, and
validation BLEU against steps and against minutes of training (wall-clock time is what a
budget such as ``max_time: 20m`` buys). Where every run decides its best by validation
loss or chrF (``train.valid_metric``), that panel shows it in place of perplexity or BLEU;
a star marks each run's best validation, the weights of its ``best.pt``. Needs matplotlib
(``pip install 'nmt-cli[plot]'``).
"""

from __future__ import annotations

from pathlib import Path

from nmt_cli.train import metrics


def plot(runs: list[Path], out: Path) -> str:
    """Write the curves of model directories ``runs`` to the PNG ``out``; returns the summary line."""
    from nmt_cli.decode.alignment import check_matplotlib

    check_matplotlib("nmt plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {}
    for run in runs:
        records = metrics.read(run)
        valid = [e for e in records if e.get("event") == "valid"]
        best = metrics.best_of(valid) if valid else {}
        name = f"{run} (best.pt by {metrics.METRIC_NAMES[metrics.metric_of(best)]})" if valid else str(run)
        curves[name] = ([e for e in records if e.get("event") == "train"], valid, best)
    decides = {metrics.metric_of(best) for *_, best in curves.values()}
    fit, score = ("loss" if decides == {"loss"} else "ppl"), ("chrf" if decides == {"chrf"} else "bleu")
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), dpi=100)
    panels = [
        (axes[0, 0], 0, "step", "loss", "training loss"),
        (axes[0, 1], 1, "step", fit, f"validation {'perplexity' if fit == 'ppl' else 'loss'}"),
        (axes[1, 0], 1, "step", score, f"validation {metrics.METRIC_NAMES[score]}"),
        (axes[1, 1], 1, "elapsed", score, f"validation {metrics.METRIC_NAMES[score]}"),
    ]
    for ax, which, x, y, title in panels:
        for name, (*events, best) in curves.items():
            points = [(_x(e, x), e[y]) for e in events[which] if x in e and y in e]
            if points:
                line = ax.plot(*zip(*points), marker="o" if which else None, markersize=3, label=name)[0]
                if which and x in best and y in best:
                    ax.plot(_x(best, x), best[y], marker="*", markersize=12, color=line.get_color())
        ax.set_xlabel("minutes" if x == "elapsed" else "step")
        ax.set_title(title, fontsize=10)
        if y == "ppl":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    if axes[0, 0].get_legend_handles_labels()[0]:  # a run with no training-loss events yet draws no line
        axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    from nmt_cli import writing

    with writing.atomic_file(out, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return f"nmt plot: wrote {out}"


def _x(event: dict, x: str) -> float:
    return event[x] / 60 if x == "elapsed" else event[x]
