"""What a refresh reports: the history keys and the statistics behind them.

One place for the names, read by the refresh callback (which writes them), the
estimator's print log (which hides them), :func:`~sklcc.plotting.plot_lcc_history`
and the benchmark report (which read them).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ENGINE_KEYS", "REFRESH_KEYS", "SCHEDULE_KEYS", "STAT_KEYS", "TIMING_KEYS",
           "history_key", "refresh_stats", "term_key"]

#: Clustering statistics of every refresh (see :func:`refresh_stats`).
STAT_KEYS = ("n_clusters", "modularity", "misclustered", "uncovered_classes",
             "largest_cluster", "no_target", "n_representatives")
#: Seconds of each refresh step; ``refresh_s`` is the whole refresh, all of which training
#: waits for (the refresh runs between epochs).
TIMING_KEYS = ("latents_s", "graph_s", "communities_s", "assign_s", "index_s", "refresh_s")
#: Which latents the applied clusters came from: the epoch (1-based, as the history's
#: ``epoch``; 0 is the initial weights), the fraction of samples from an eval pass, and
#: the resolved ``lcc_latents`` (``"eval"`` or ``"train"``) with the reason for it.
SCHEDULE_KEYS = ("latents_epoch", "latents_eval", "latents_source", "latents_reason")
#: What ran: the Louvain engine and the neighbour search engine (``"kd_tree"``,
#: ``"brute"``, ``"hnsw"`` or ``"ivf"``; several layers' engines joined by commas).
ENGINE_KEYS = ("louvain_backend", "knn_algorithm")
#: Every per-refresh key, as written to ``net.history`` (each prefixed ``lcc_``).
REFRESH_KEYS = STAT_KEYS + TIMING_KEYS + SCHEDULE_KEYS + ENGINE_KEYS


def history_key(key: str) -> str:
    """Name of a refresh diagnostic in ``net.history``.

    Parameters
    ----------
    key : str
        One of :data:`~sklcc.diagnostics.REFRESH_KEYS` (a statistic, timing, schedule
        or engine key).

    Returns
    -------
    str
        ``key`` prefixed with ``"lcc_"``.

    Examples
    --------
    >>> history_key("misclustered")
    'lcc_misclustered'

    """
    return f"lcc_{key}"


def term_key(penalty_name: str) -> str:
    """Name of a penalty's unweighted per-epoch term in ``net.history``.

    Parameters
    ----------
    penalty_name : str
        The penalty classifier's ``penalty_name`` (``"lcc"``, ``"center"``).

    Returns
    -------
    str
        ``penalty_name`` prefixed with ``"train_"``.

    Examples
    --------
    >>> term_key("center")
    'train_center'

    """
    return f"train_{penalty_name}"


def refresh_stats(
    labels: np.ndarray, y: np.ndarray, owner: np.ndarray, correct: np.ndarray,
    has_target: np.ndarray, n_classes: int, modularity: float, n_representatives: int,
) -> dict[str, float]:
    """Compute the diagnostics of one refresh.

    Parameters
    ----------
    labels : ndarray of shape (n_samples,)
        Cluster of each training sample.
    y : ndarray of shape (n_samples,)
        Class of each training sample.
    owner : ndarray of shape (n_clusters,)
        Class owning each cluster (-1 for an empty label).
    correct : ndarray of shape (n_samples,), bool
        Correctly clustered flags.
    has_target : ndarray of shape (n_samples,), bool
        Whether the sample's class has a target to be pulled towards.
    n_classes : int
        Number of classes.
    modularity : float
        Modularity of the Louvain partition.
    n_representatives : int
        Number of target candidates kept.

    Returns
    -------
    stats : dict
        ``n_clusters``, ``modularity``, ``misclustered`` (fraction),
        ``uncovered_classes`` (classes owning no cluster), ``largest_cluster``
        (fraction of samples), ``no_target`` (fraction of samples that are
        misclustered in a class without a target), ``n_representatives``.

    Examples
    --------
    >>> import numpy as np
    >>> labels, y = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    >>> owner = np.array([0, 1]); correct = owner[labels] == y
    >>> s = refresh_stats(labels, y, owner, correct, np.ones(4, bool), 3, 0.5, 3)
    >>> s["misclustered"], s["uncovered_classes"], s["largest_cluster"]
    (0.25, 1, 0.5)

    """
    sizes = np.bincount(labels)
    return {
        "n_clusters": int((sizes > 0).sum()),
        "modularity": float(modularity),
        "misclustered": float(1.0 - correct.mean()),
        "uncovered_classes": int(n_classes - len(np.unique(owner[owner >= 0]))),
        "largest_cluster": float(sizes.max() / len(labels)),
        "no_target": float((~correct & ~has_target).mean()),
        "n_representatives": int(n_representatives),
    }
