"""skorch callback that runs the LCC refresh between epochs."""

from __future__ import annotations

import time

import numpy as np
from skorch.callbacks import Callback
from threadpoolctl import threadpool_limits

from .refresh import refresh_clusters

__all__ = ["LatentClusterRefresh"]

#: Diagnostics written to ``net.history`` at every refresh (prefixed ``lcc_``).
STAT_KEYS = ("n_clusters", "modularity", "misclustered", "uncovered_classes",
             "largest_cluster", "no_target", "n_representatives")
#: Seconds of each refresh step, written as ``lcc_<step>``.
TIMING_KEYS = ("latents_s", "graph_s", "communities_s", "assign_s", "index_s")


class LatentClusterRefresh(Callback):
    """Recompute latent clusters, flags and representatives at the start of an epoch.

    Runs at epoch ``e`` (0-based) when ``e >= net.lcc_warmup`` and
    ``(e - net.lcc_warmup) % net.lcc_interval == 0``, on the training split only,
    and stores one :class:`~sklcc.refresh.ClusterState` per latent layer in
    ``net.lcc_states_``. Diagnostics go to ``net.history`` as ``lcc_<stat>``
    (averaged over layers when there are several) and ``lcc_refresh_s``. It sits
    after skorch's epoch timer, so the epoch's ``dur`` includes the refresh.
    """

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        """Refresh when the epoch is due (see the class docstring)."""
        epoch = len(net.history) - 1
        if epoch < net.lcc_warmup or (epoch - net.lcc_warmup) % net.lcc_interval:
            return
        start = time.perf_counter()
        latents, y = net.training_latents(dataset_train)
        latents_s = time.perf_counter() - start
        known = net._known_classes()
        n_classes = max(0 if known is None else len(known), int(y.max()) + 1)
        states = {}
        # fit_loop keeps numpy's BLAS single-threaded for the batches; the refresh
        # (PCA) may use every thread it had.
        with threadpool_limits(limits=getattr(net, "_blas_threads", None), user_api="blas"):
            for layer, Z in latents.items():
                states[layer] = self._refresh_layer(net, layer, Z, y, n_classes, epoch)
        net.lcc_states_ = states
        for key in STAT_KEYS:
            mean = float(np.mean([s.stats[key] for s in states.values()]))
            net.history.record(f"lcc_{key}", mean)
        net.history.record("lcc_latents_s", latents_s)
        for key in TIMING_KEYS[1:]:
            net.history.record(f"lcc_{key}", sum(s.timings[key] for s in states.values()))
        net.history.record("lcc_refresh_s", time.perf_counter() - start)

    @staticmethod
    def _refresh_layer(net, layer, Z, y, n_classes, epoch):
        if not np.isfinite(Z).all():
            raise ValueError(
                f"the latents of layer {layer!r} contain NaN or inf at epoch {epoch}: "
                "training diverged; lower lr or lcc_weight."
            )
        return refresh_clusters(
            Z, y, n_classes, n_neighbors=net.n_neighbors,
            resolution=net.louvain_resolution, n_representatives=net.n_representatives,
            max_samples=net.cluster_sample_size, n_components=net.cluster_n_components,
            random_state=net.lcc_rng_, backend=net.louvain_backend,
        )
