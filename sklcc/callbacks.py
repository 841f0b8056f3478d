"""``LatentClusterRefresh``: the skorch callback that runs the LCC refresh between epochs."""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch
from skorch.callbacks import Callback
from threadpoolctl import threadpool_limits

from .diagnostics import ENGINE_KEYS, STAT_KEYS, history_key
from .latent_buffer import LatentBuffer
from .refresh import RefreshParams, refresh_clusters
from .refresh_worker import RefreshWorker

__all__ = ["LATENT_SOURCES", "REFRESH_MODES", "LatentClusterRefresh", "refresh_due"]

#: Where a refresh takes the training latents from (``lcc_latents``); ``"auto"``
#: resolves to one of the others before the first refresh.
LATENT_SOURCES = ("auto", "eval", "train")
#: When a refresh's result is applied (``lcc_refresh_mode``).
REFRESH_MODES = ("sync", "overlap")


def refresh_due(epoch: int, warmup: int, interval: int) -> bool:
    """Whether a refresh starts at 0-based ``epoch`` under ``lcc_warmup`` and ``lcc_interval``.

    Examples
    --------
    >>> [e for e in range(8) if refresh_due(e, 2, 3)]
    [2, 5]

    """
    return epoch >= warmup and (epoch - warmup) % interval == 0


class LatentClusterRefresh(Callback):
    """Recompute latent clusters, flags and targets at the start of due epochs.

    A refresh starts at epoch ``e`` (0-based) when ``e >= net.lcc_warmup`` and
    ``(e - net.lcc_warmup) % net.lcc_interval == 0``, on the training split only, and
    leaves one :class:`~sklcc.refresh.ClusterState` per latent layer in
    ``net.lcc_states_``. It sits after skorch's epoch timer, so an epoch's ``dur``
    includes what the refresh made training wait for.

    - Latents: ``net.resolve_latent_source(dataset_train)``, called once per fit at
      its first epoch, says ``"eval"`` or ``"train"`` and why (recorded with every
      refresh). ``"eval"`` runs ``net.training_latents`` over the
      training split at the refresh; ``"train"`` keeps what the hooks saw in the
      training batches of epoch ``e - 1`` (a :class:`~sklcc.latent_buffer.LatentBuffer`)
      and runs the eval pass only for the samples that epoch did not see (all of them
      when there was no such epoch in this fit).
    - Schedule (``net.lcc_refresh_mode``): ``"sync"`` clusters at once and applies
      the result for epoch ``e``; ``"overlap"`` clusters in a background thread
      (:class:`~sklcc.refresh_worker.RefreshWorker`) while epoch ``e`` trains on the
      previous state, and applies the result at the start of epoch ``e + 1``,
      waiting for it if needed. It is not started when ``e`` is the fit's last epoch.

    What it needs from the net, all public, so any skorch net that provides these
    can use it (:class:`~sklcc.LCCClassifier` does):

    - ``lcc_warmup``, ``lcc_interval`` and ``lcc_refresh_mode``;
    - ``resolve_latent_source(dataset)``, returning ``("eval" or "train", reason)``;
    - the parameters named by the fields of :class:`~sklcc.refresh.RefreshParams`,
      read once per refresh and passed to :func:`~sklcc.refresh.refresh_clusters`;
    - ``lcc_rng_``, the seeded ``numpy.random.Generator`` of the clustering (only the
      refresh draws from it, one refresh at a time, so both modes draw the same
      numbers in the same order);
    - ``training_latents(dataset)``, returning ``({layer: Z}, y)`` in dataset order;
    - ``fit_state_`` (:class:`~sklcc.penalty.FitState`): ``blas_threads``,
      ``stop_epoch``, ``resources``, ``recorder`` and ``batch_index``, and the slots
      ``latent_source``, ``latent_buffer`` and ``refresh_worker`` it fills;
    - ``classes_`` where the net knows its classes.

    It writes ``net.lcc_states_`` and, to ``net.history`` in the epoch the state is
    applied, the keys of :mod:`~sklcc.diagnostics` (averaged over layers when there
    are several; the step timings summed).
    """

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        """Apply a finished refresh, start a due one (see the class docstring)."""
        epoch = len(net.history) - 1
        state = net.fit_state_
        overlap = net.lcc_refresh_mode == "overlap"
        if state.latent_source is None:
            state.latent_source = net.resolve_latent_source(dataset_train)
        source, reason = state.latent_source
        if state.refresh_worker is not None and state.refresh_worker.busy:
            (states, record), waited = state.refresh_worker.result()
            record["blocked_s"] += waited
            _apply(net, states, record)
        if refresh_due(epoch, net.lcc_warmup, net.lcc_interval) and not (
                overlap and epoch + 1 >= state.stop_epoch):
            start = time.perf_counter()
            latents, y, from_eval = _training_latents(net, dataset_train, epoch)
            latents_s = time.perf_counter() - start
            record = {"latents_epoch": epoch, "latents_eval": from_eval,
                      "latents_source": source, "latents_reason": reason,
                      "latents_s": latents_s}
            known = getattr(net, "classes_", None)
            n_classes = max(0 if known is None else len(known), int(y.max()) + 1)
            # On a GPU the projection, the graph and the assignment run there too.
            params = RefreshParams.from_estimator(net)
            job = (latents, y, n_classes, params, net.lcc_rng_, record)
            if overlap:
                if state.refresh_worker is None:
                    state.refresh_worker = state.resources.enter_context(RefreshWorker())
                record["blocked_s"] = time.perf_counter() - start
                # The worker leaves numpy's BLAS as the fit set it (one thread): the
                # limit is process-wide, and the batches run beside it.
                state.refresh_worker.submit(_cluster, *job, None)
            else:
                states, record = _cluster(*job, state.blas_threads)
                record["blocked_s"] = time.perf_counter() - start
                _apply(net, states, record)
        due_next = refresh_due(epoch + 1, net.lcc_warmup, net.lcc_interval)
        keep = source == "train" and due_next and epoch + 1 < state.stop_epoch
        # A buffer handed to the worker is its own; a synchronous one is reused.
        if not keep or overlap or state.latent_buffer is None:
            state.latent_buffer = LatentBuffer(len(dataset_train)) if keep else None
        else:
            state.latent_buffer.seen[:] = False

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        """Keep the training batch's latents when the next refresh takes them."""
        state = net.fit_state_
        if training and state.latent_buffer is not None:
            state.latent_buffer.add(state.batch_index, state.recorder.clean, batch[1])


def _training_latents(net, dataset, epoch: int) -> tuple[dict, np.ndarray, float]:
    """Return the latents to cluster, their labels, and the fraction from an eval pass."""
    buffer = net.fit_state_.latent_buffer
    if buffer is None or not buffer.seen.any():
        latents, y = net.training_latents(dataset)
        from_eval = 1.0
    else:
        latents, y = buffer.arrays()
        missing = buffer.missing()
        if len(missing):
            extra, y_extra = net.training_latents(torch.utils.data.Subset(dataset, missing))
            for layer, Z in extra.items():
                latents[layer][missing] = Z
            y[missing] = y_extra
        from_eval = len(missing) / len(y)
    for layer, Z in latents.items():
        if not np.isfinite(Z).all():
            raise ValueError(
                f"the latents of layer {layer!r} contain NaN or inf at epoch {epoch}: "
                "training diverged; lower lr or lcc_weight."
            )
    return latents, y, from_eval


def _cluster(latents, y, n_classes, params, rng, record, blas_threads):
    """Run :func:`~sklcc.refresh.refresh_clusters` on every layer (in either thread)."""
    start = time.perf_counter()
    # The fit keeps numpy's BLAS single-threaded for the batches; a synchronous
    # refresh (PCA) may use every thread it had.
    limit = (contextlib.nullcontext() if blas_threads is None
             else threadpool_limits(limits=blas_threads, user_api="blas"))
    with limit:
        states = {layer: refresh_clusters(Z, y, n_classes, params=params, random_state=rng)
                  for layer, Z in latents.items()}
    record["refresh_s"] = record["latents_s"] + time.perf_counter() - start
    return states, record


def _apply(net, states, record) -> None:
    """Make ``states`` the net's clusters and write the refresh's history keys."""
    net.lcc_states_ = states
    write = net.history.record
    for key in STAT_KEYS:
        write(history_key(key), float(np.mean([s.stats[key] for s in states.values()])))
    for key in ("graph_s", "communities_s", "assign_s", "index_s"):
        write(history_key(key), sum(s.timings[key] for s in states.values()))
    for key, value in record.items():
        write(history_key(key), value)
    for key in ENGINE_KEYS:  # what ran, several layers' engines joined by commas
        write(history_key(key), ",".join(sorted({s.engines[key] for s in states.values()})))
