"""``LatentClusterRefresh``: the skorch callback that runs the LCC refresh between epochs."""

from __future__ import annotations

import time

import numpy as np
from skorch.callbacks import Callback
from threadpoolctl import threadpool_limits

from .communities import resolve_louvain_backend
from .diagnostics import STAT_KEYS, history_key
from .refresh import refresh_clusters

__all__ = ["REFRESH_PARAMS", "LatentClusterRefresh"]

#: The net's parameters passed, under the same names, to
#: :func:`~sklcc.refresh.refresh_clusters`.
REFRESH_PARAMS = ("n_neighbors", "louvain_resolution", "n_representatives", "lcc_target",
                  "lcc_target_k", "cluster_sample_size", "cluster_n_components",
                  "louvain_backend")


class LatentClusterRefresh(Callback):
    """Recompute latent clusters, flags and targets at the start of due epochs.

    Runs at epoch ``e`` (0-based) when ``e >= net.lcc_warmup`` and
    ``(e - net.lcc_warmup) % net.lcc_interval == 0``, on the training split only,
    and stores one :class:`~sklcc.refresh.ClusterState` per latent layer in
    ``net.lcc_states_``. It sits after skorch's epoch timer, so the epoch's ``dur``
    includes the refresh.

    What it needs from the net, all public, so any skorch net that provides these
    can use it (:class:`~sklcc.LCCClassifier` does):

    - ``lcc_warmup`` and ``lcc_interval``, the schedule;
    - the parameters named in :data:`REFRESH_PARAMS`, passed by name to
      :func:`~sklcc.refresh.refresh_clusters`;
    - ``lcc_rng_``, the seeded ``numpy.random.Generator`` of the clustering;
    - ``training_latents(dataset)``, returning ``({layer: Z}, y)`` in dataset order;
    - ``fit_state_.blas_threads`` (:class:`~sklcc.penalty.FitState`), the BLAS threads
      the refresh may use;
    - ``classes_`` where the net knows its classes.

    It writes ``net.lcc_states_`` and, to ``net.history``, the keys of
    :mod:`~sklcc.diagnostics` (averaged over layers when there are several; the step
    timings summed).
    """

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        """Refresh when the epoch is due (see the class docstring)."""
        epoch = len(net.history) - 1
        if epoch < net.lcc_warmup or (epoch - net.lcc_warmup) % net.lcc_interval:
            return
        start = time.perf_counter()
        latents, y = net.training_latents(dataset_train)
        latents_s = time.perf_counter() - start
        known = getattr(net, "classes_", None)
        n_classes = max(0 if known is None else len(known), int(y.max()) + 1)
        params = {name: getattr(net, name) for name in REFRESH_PARAMS}
        # On a GPU the projection, the graph and the assignment run there too.
        params["cluster_device"] = net.device if str(net.device).startswith("cuda") else None
        states = {}
        # The fit keeps numpy's BLAS single-threaded for the batches; the refresh
        # (PCA) may use every thread it had.
        with threadpool_limits(limits=net.fit_state_.blas_threads, user_api="blas"):
            for layer, Z in latents.items():
                if not np.isfinite(Z).all():
                    raise ValueError(
                        f"the latents of layer {layer!r} contain NaN or inf at epoch "
                        f"{epoch}: training diverged; lower lr or lcc_weight."
                    )
                states[layer] = refresh_clusters(Z, y, n_classes, random_state=net.lcc_rng_,
                                                 **params)
        net.lcc_states_ = states
        record = net.history.record
        for key in STAT_KEYS:
            record(history_key(key), float(np.mean([s.stats[key] for s in states.values()])))
        record(history_key("latents_s"), latents_s)
        for key in ("graph_s", "communities_s", "assign_s", "index_s"):
            record(history_key(key), sum(s.timings[key] for s in states.values()))
        record(history_key("refresh_s"), time.perf_counter() - start)
        record(history_key("louvain_backend"), resolve_louvain_backend(net.louvain_backend))
