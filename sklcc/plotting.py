"""Plot what the LCC refreshes saw during training."""

from __future__ import annotations

from os import PathLike

from .diagnostics import history_key

__all__ = ["plot_lcc_history"]

_PANELS = (
    (history_key("misclustered"), "misclustered fraction"),
    (history_key("largest_cluster"), "largest cluster share"),
    (history_key("n_clusters"), "clusters"),
    (history_key("uncovered_classes"), "classes owning no cluster"),
)


def plot_lcc_history(net, path: str | PathLike | None = None):
    """Plot the clustering diagnostics of every refresh and the loss curves.

    Five panels: misclustered fraction, largest cluster share, number of clusters,
    classes owning no cluster (one point per refresh, against the epoch), and the
    training losses (``train_loss`` and the unweighted ``train_lcc`` per epoch).

    Parameters
    ----------
    net : LCCClassifier or skorch History
        A fitted net, or its ``history``.
    path : str or path-like, optional
        Where to save the figure as PNG (matplotlib's Agg backend; no display needed).

    Returns
    -------
    fig : matplotlib.figure.Figure
        The five-panel figure (also saved to ``path`` when given).

    Examples
    --------
    >>> fig = plot_lcc_history(clf, "lcc.png")  # doctest: +SKIP

    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    history = getattr(net, "history", net)
    rows = [row for row in history if history_key("n_clusters") in row]
    if not rows:
        raise ValueError(
            "the history holds no refresh yet (lcc_warmup may exceed the epochs trained); "
            "train for more than lcc_warmup epochs first."
        )
    fig, axes = plt.subplots(1, len(_PANELS) + 1, figsize=(4 * (len(_PANELS) + 1), 3.2))
    epochs = [row["epoch"] for row in rows]
    for ax, (key, title) in zip(axes, _PANELS, strict=False):
        ax.plot(epochs, [row[key] for row in rows], marker="o")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    ax = axes[-1]
    all_epochs = [row["epoch"] for row in history]
    ax.plot(all_epochs, [row["train_loss"] for row in history], label="train_loss")
    ax.plot(all_epochs, [row.get("train_lcc", float("nan")) for row in history],
            label="train_lcc (unweighted)")
    ax.set_title("training loss")
    ax.set_xlabel("epoch")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
