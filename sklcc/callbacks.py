"""``LatentClusterRefresh``: the skorch callback that runs the LCC refresh between epochs."""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch
from skorch.callbacks import Callback
from threadpoolctl import threadpool_limits

from ._latent_buffer import LatentBuffer
from .diagnostics import ENGINE_KEYS, STAT_KEYS, history_key
from .refresh import RefreshParams, refresh_clusters

__all__ = ["LATENT_SOURCES", "LatentClusterRefresh", "refresh_due"]

#: Where a refresh takes the training latents from (``lcc_latents``); ``"auto"``
#: resolves to one of the others before the first refresh.
LATENT_SOURCES = ("auto", "eval", "train")


def refresh_due(epoch: int, warmup: int, interval: int) -> bool:
    """Whether a refresh starts at 0-based ``epoch`` under ``lcc_warmup`` and ``lcc_interval``.

    A refresh is due from epoch ``warmup`` on, every ``interval`` epochs.

    Parameters
    ----------
    epoch : int
        The epoch about to start, counted from 0 over the net's whole history.
    warmup : int
        ``lcc_warmup``: epochs of plain training before the first refresh.
    interval : int
        ``lcc_interval``: epochs between refreshes.

    Returns
    -------
    due : bool
        True when a refresh runs at the start of ``epoch``.

    Examples
    --------
    >>> [e for e in range(8) if refresh_due(e, 2, 3)]
    [2, 5]

    """
    return epoch >= warmup and (epoch - warmup) % interval == 0


class LatentClusterRefresh(Callback):
    """Recompute latent clusters, flags and targets at the start of due epochs.

    A refresh runs at epoch ``e`` (0-based) when :func:`refresh_due` says so for
    ``net.lcc_warmup`` and ``net.lcc_interval``, on the training split only, and
    leaves one :class:`~sklcc.refresh.ClusterState` per latent layer in
    ``net.lcc_states_``, used from epoch ``e`` on. It sits after skorch's epoch timer,
    so an epoch's ``dur`` includes the refresh.

    The callback owns the state of its schedule for one ``fit`` or ``partial_fit``
    (reset in :meth:`on_train_begin`, dropped from pickles): where the latents come
    from and the buffer of training latents.

    - Latents: ``net.resolve_latent_source(dataset_train)``, called once per fit at
      its first epoch, says ``"eval"`` or ``"train"`` and why (recorded with every
      refresh). ``"eval"`` runs ``net.training_latents`` over the training split at
      the refresh; ``"train"`` keeps what the hooks saw in the training batches of
      epoch ``e - 1`` and runs the eval pass only for the samples that epoch did not
      see (all of them when there was no such epoch in this fit).

    What it needs from the net, all public, so any skorch net that provides these
    can use it (:class:`~sklcc.LCCClassifier` does):

    - ``lcc_warmup`` and ``lcc_interval``;
    - ``resolve_latent_source(dataset)``, returning ``("eval" or "train", reason)``;
    - the parameters named by the fields of :class:`~sklcc.refresh.RefreshParams`,
      read once per refresh and passed to :func:`~sklcc.refresh.refresh_clusters`;
    - ``lcc_rng_``, the seeded ``numpy.random.Generator`` of the clustering;
    - ``training_latents(dataset)``, returning ``({layer: Z}, y)`` in dataset order;
    - ``fit_state_`` (:class:`~sklcc.base.FitState`): ``blas_threads``,
      ``stop_epoch``, ``recorder`` and ``batch_index``;
    - ``classes_`` where the net knows its classes.

    It writes ``net.lcc_states_`` and, to ``net.history`` in the refresh epoch, the
    keys of :mod:`~sklcc.diagnostics` (averaged over layers when there are several;
    the step timings summed).

    See Also
    --------
    sklcc.refresh.refresh_clusters : The refresh it runs for each latent layer.
    sklcc.callbacks.refresh_due : The epochs it refreshes at.
    sklcc.LCCClassifier : The net that adds it to its default callbacks.

    Examples
    --------
    :class:`~sklcc.LCCClassifier` adds it to its default callbacks as
    ``"lcc_refresh"``:

    >>> from sklcc import LCCClassifier
    >>> import torch
    >>> net = LCCClassifier(torch.nn.Linear(4, 2))
    >>> [name for name, _ in net._default_callbacks if name == "lcc_refresh"]
    ['lcc_refresh']

    """

    def initialize(self):
        """Start with no schedule state (skorch calls this when it builds the callbacks).

        Returns
        -------
        self : LatentClusterRefresh
            This callback, with no latent source or buffer kept from an earlier fit.

        """
        self._reset()
        return self

    def _reset(self) -> None:
        self._latent_source: tuple[str, str] | None = None
        self._buffer: LatentBuffer | None = None

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        """Forget the previous fit's latent source and buffer.

        Parameters
        ----------
        net : LCCClassifier
            The net being trained.
        X, y : object, optional
            The training data skorch passes (not used).
        **kwargs
            Other arguments skorch passes (not used).

        """
        self._reset()

    def on_train_end(self, net, X=None, y=None, **kwargs):
        """Drop the buffer of training latents (the fitted net need not carry it).

        Parameters
        ----------
        net : LCCClassifier
            The net being trained.
        X, y : object, optional
            The training data skorch passes (not used).
        **kwargs
            Other arguments skorch passes (not used).

        """
        self._buffer = None

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        """Run a due refresh, then prepare the buffer for the next one.

        Parameters
        ----------
        net : LCCClassifier
            The net being trained.
        dataset_train : torch Dataset
            The training split.
        **kwargs
            Other arguments skorch passes (not used).

        """
        epoch = len(net.history) - 1
        state = net.fit_state_
        if self._latent_source is None:
            self._latent_source = net.resolve_latent_source(dataset_train)
        source, reason = self._latent_source
        if refresh_due(epoch, net.lcc_warmup, net.lcc_interval):
            start = time.perf_counter()
            latents, y, from_eval = self._training_latents(net, dataset_train, epoch)
            latents_s = time.perf_counter() - start
            record = {"latents_epoch": epoch, "latents_eval": from_eval,
                      "latents_source": source, "latents_reason": reason,
                      "latents_s": latents_s}
            known = getattr(net, "classes_", None)
            n_classes = max(0 if known is None else len(known), int(y.max()) + 1)
            # On a GPU the projection, the graph and the assignment run there too.
            params = RefreshParams.from_estimator(net)
            states = _cluster(latents, y, n_classes, params, net.lcc_rng_, state.blas_threads)
            record["refresh_s"] = time.perf_counter() - start
            _apply(net, states, record)
        due_next = refresh_due(epoch + 1, net.lcc_warmup, net.lcc_interval)
        keep = source == "train" and due_next and epoch + 1 < state.stop_epoch
        if not keep:
            self._buffer = None
        elif self._buffer is None:
            self._buffer = LatentBuffer(len(dataset_train))
        else:
            self._buffer.seen[:] = False

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        """Keep the training batch's latents when the next refresh takes them.

        Parameters
        ----------
        net : LCCClassifier
            The net being trained.
        batch : tuple
            The batch: inputs, labels and positions in the training split.
        training : bool
            Whether it was a training batch.
        **kwargs
            Other arguments skorch passes (not used).

        """
        if training and self._buffer is not None:
            state = net.fit_state_
            self._buffer.add(state.batch_index, state.recorder.clean, batch[1])

    def __getstate__(self):
        # A checkpoint taken during a fit carries no buffer of training latents.
        return {**self.__dict__, "_buffer": None}

    def _training_latents(self, net, dataset, epoch: int) -> tuple[dict, np.ndarray, float]:
        """Return the latents to cluster, their labels, and the fraction from an eval pass."""
        buffer = self._buffer
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


def _cluster(latents, y, n_classes, params, rng, blas_threads):
    """Run :func:`~sklcc.refresh.refresh_clusters` on every layer."""
    # The fit keeps numpy's BLAS single-threaded for the batches; the refresh (PCA)
    # may use every thread it had.
    limit = (contextlib.nullcontext() if blas_threads is None
             else threadpool_limits(limits=blas_threads, user_api="blas"))
    with limit:
        return {layer: refresh_clusters(Z, y, n_classes, params=params, random_state=rng)
                for layer, Z in latents.items()}


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
