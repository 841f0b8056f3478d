"""Data-parallel LCC: :class:`DistributedLCCClassifier`, on skorch's ``AccelerateMixin``.

Hugging Face accelerate (over ``torch.distributed``) runs one process per device;
each trains on its shard of every epoch's batches and DDP averages the gradients. What
LCC adds to that is the refresh, which needs the latents of the *whole* training
split. Here each rank computes the latents of its own shard only, the
``(position, latent, label)`` triples are gathered once per refresh, put back in
dataset order, and the unchanged :class:`~sklcc.callbacks.LatentClusterRefresh`
clusters them on every rank from the same seed, so every rank holds the same flags and
targets. Training batches carry each sample's position in the training split, so a
rank finds its samples' flags however the sampler shuffles, shards or pads.

accelerate is imported only when a net is built with an ``Accelerator``; ``import
sklcc`` and ``import sklcc.distributed`` do not need it. See ``docs/distributed.md``.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import torch
from skorch.hf import AccelerateMixin
from skorch.history import DistributedHistory

from .base import IndexedDataset
from .classifier import LCCClassifier
from .diagnostics import history_key
from .latents import latent_pass

__all__ = ["DistributedLCCClassifier", "distributed_history", "gather_by_position",
           "states_digest"]


class DistributedLCCClassifier(AccelerateMixin, LCCClassifier):
    """:class:`~sklcc.LCCClassifier` trained data-parallel with Hugging Face accelerate.

    Launch the script once per device (``torchrun --nproc_per_node N script.py`` or
    ``accelerate launch``); every process builds the same net with an
    ``accelerate.Accelerator`` and calls ``fit`` on the same data. With one process it
    trains as :class:`~sklcc.LCCClassifier` does.

    At each refresh every rank computes the latents of its shard of the training split
    (accelerate's evaluation sharding), the triples (position in the training split,
    latent, label) are gathered to every rank (one ``all_gather`` per tensor), and the
    refresh runs on every rank on the same data from the same seed. After it the ranks
    compare a digest of their flags and stop with an error if they differ.

    Parameters
    ----------
    module : torch module class or instance
        The network, as for :class:`~sklcc.LCCClassifier`.
    *args
        The positional arguments of skorch after ``module`` (``criterion``).
    accelerator : accelerate.Accelerator
        Sets the devices and the process group; ``Accelerator(cpu=True)`` for processes
        on CPUs (gloo).
    callbacks__valid_acc__use_caching : bool, default=False
        Off: skorch's caching of validation predictions keeps only this rank's shard, so it is
        off (skorch's advice for accelerate on several devices).
    **kwargs
        Every argument of :class:`~sklcc.LCCClassifier` and of skorch's
        ``AccelerateMixin`` (``unwrap_after_train``, ``history``). Leave ``device`` at
        None: accelerate places the data. ``random_state`` should be set; with None
        rank 0 draws the clustering seed and sends it to the others.

    Attributes
    ----------
    history : skorch History or DistributedHistory
        With several processes and no ``history`` given, a
        :class:`skorch.history.DistributedHistory` (see :func:`distributed_history`),
        so batch records, the epoch losses computed from them and thus early stopping
        agree across ranks; the refresh diagnostics agree because the refreshes do.
        Durations (``dur``, ``lcc_*_s``) stay per rank.

    See Also
    --------
    sklcc.LCCClassifier : The single-process estimator it trains as.
    sklcc.distributed.distributed_history : The history its ranks share.
    skorch.hf.AccelerateMixin : The accelerate support of skorch it builds on.

    Notes
    -----
    The net cannot be pickled while it holds the accelerator (skorch's limit for
    ``AccelerateMixin``); save it with ``save_params``, which writes on rank 0 only.
    ``predict`` and ``predict_proba`` gather the predictions, so every rank returns
    all of them. A ``DataLoader`` given ``even_batches=False`` by the accelerator is
    not supported: skorch's validation and the latent pass call the wrapped network
    the same number of times on every rank.

    Examples
    --------
    A sketch of a training script (run with ``torchrun --nproc_per_node 2 train.py``)::

        from accelerate import Accelerator
        from sklcc.distributed import DistributedLCCClassifier

        accelerator = Accelerator()          # Accelerator(cpu=True) on CPUs
        net = DistributedLCCClassifier(MLP, accelerator=accelerator,
                                       lcc_layers=["hidden"], random_state=0)
        net.fit(X, y)                        # same X, y on every rank
        accelerator.print(net.score(X_test, y_test))

    """

    def __init__(self, module, *args, accelerator, callbacks__valid_acc__use_caching=False,
                 **kwargs):
        super().__init__(module, *args, accelerator=accelerator,
                         callbacks__valid_acc__use_caching=callbacks__valid_acc__use_caching,
                         **kwargs)

    @property
    def _n_processes(self) -> int:
        return self.accelerator.num_processes

    def initialize(self):
        """Initialise as ``AccelerateMixin`` does, then the LCC state (same seed on all ranks).

        Returns
        -------
        self : DistributedLCCClassifier
            This net, with an ``lcc_rng_`` seeded alike on every rank and no clusters yet.

        """
        # AccelerateMixin.initialize rewrites NeuralNet.initialize instead of calling it,
        # so LCCClassifier.initialize does not run: its LCC part is called here.
        super().initialize()
        seed = self.random_state
        if seed is None and self._n_processes > 1:
            seed = _broadcast(np.random.SeedSequence().entropy)
        self._initialize_lcc(seed)
        return self

    def _initialize_accelerator(self):
        # On CPU processes (MULTI_CPU) accelerate wraps every prepared module in DDP, even
        # a criterion without trainable parameters, which DDP refuses (its GPU path skips
        # those, accelerate#760). Such a criterion needs no preparing on a CPU: skip it.
        from accelerate.utils import DistributedType

        if self.accelerator.distributed_type != DistributedType.MULTI_CPU:
            return super()._initialize_accelerator()
        criteria = self._criteria
        self._criteria = [name for name in criteria if any(
            p.requires_grad for p in getattr(getattr(self, name + "_"), "parameters", list)())]
        try:
            return super()._initialize_accelerator()
        finally:
            self._criteria = criteria

    def initialize_history(self):
        """With several processes and no ``history`` given, use a ``DistributedHistory``.

        Returns
        -------
        self : DistributedLCCClassifier
            This net, with ``history_`` empty (shared by the ranks when there are several).

        """
        if self.history_ is None and self._n_processes > 1:
            self.history_ = distributed_history(self.accelerator)
        return super().initialize_history()

    def resolve_latent_source(self, dataset) -> tuple[str, str]:
        """With several processes ``lcc_latents="auto"`` keeps the gathered eval pass.

        A rank's training batches hold its own shard only, so the training latents are
        not the whole split's; with one process, as :class:`~sklcc.LCCClassifier` does.

        Parameters
        ----------
        dataset : torch Dataset
            The training split.

        Returns
        -------
        source : {"eval", "train"}
            Where this fit's refreshes take the training latents from.
        reason : str
            Why.

        """
        if self.lcc_latents == "auto" and self._n_processes > 1:
            self.lcc_latents_ = "eval"
            self.lcc_latents_reason_ = ("auto: several processes, each rank's training batches "
                                        "hold its shard only")
            return self.lcc_latents_, self.lcc_latents_reason_
        return super().resolve_latent_source(dataset)

    def train_step_single(self, batch, **fit_params):
        """Remember the batch's positions, then do ``AccelerateMixin``'s training step.

        Parameters
        ----------
        batch : tuple
            Inputs, labels and positions in the training split.
        **fit_params : dict
            Passed to the module's ``forward``.

        Returns
        -------
        step : dict
            The step's ``{"loss": ..., "y_pred": ...}``, as skorch returns it.

        """
        # AccelerateMixin's step replaces LatentPenaltyClassifier's without calling it, so
        # the positions are taken here, by the base's own helper.
        return super().train_step_single(self._take_positions(batch), **fit_params)

    def training_latents(self, dataset) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Return the latents and labels of every sample of ``dataset``, in dataset order.

        With one process, as :meth:`LCCClassifier.training_latents`. With several, each
        rank runs the evaluation step over its shard only and the shards are gathered
        by position (:func:`gather_by_position`); every rank returns the same arrays.

        Parameters
        ----------
        dataset : torch Dataset
            The training split.

        Returns
        -------
        latents : dict of str to ndarray of shape (n_samples, n_features)
            Each latent layer's name to its latents, one flattened row per sample.
        y : ndarray of shape (n_samples,)
            The class code of each sample.

        """
        if self._n_processes == 1:
            return super().training_latents(dataset)
        # The prepared iterator shards, pads (repeating samples, harmless: a position
        # maps to one sample) and places the batches; positions travel with them.
        batches = self.get_iterator(IndexedDataset(dataset), training=False)
        evaluation_step = super(AccelerateMixin, self).evaluation_step  # no per-batch gather
        latents, y, positions = latent_pass(evaluation_step, batches, self.fit_state_.recorder)
        return gather_by_position(self.accelerator, positions, latents, y, len(dataset))

    def on_epoch_end(self, net, **kwargs):
        """After an epoch that refreshed, check that every rank holds the same clusters.

        Parameters
        ----------
        net : DistributedLCCClassifier
            This net.
        **kwargs
            The other arguments skorch passes.

        """
        super().on_epoch_end(net, **kwargs)
        if self._n_processes == 1 or history_key("n_clusters") not in self.history[-1]:
            return
        from accelerate.utils import gather_object

        digests = gather_object([states_digest(self.lcc_states_)])
        if len(set(digests)) > 1:
            raise RuntimeError(
                f"the ranks' clusters differ after the refresh of epoch {len(self.history)} "
                f"(flag digests {digests}): the same latents and seed gave different "
                "clusterings, e.g. on nodes whose BLAS rounds differently. Set random_state, "
                "keep the ranks on identical hardware and library versions, or report it."
            )


def gather_by_position(accelerator, positions: torch.Tensor, latents: dict[str, torch.Tensor],
                       y: torch.Tensor, n_samples: int) -> tuple[dict[str, np.ndarray],
                                                                  np.ndarray]:
    """Gather every rank's rows and put them in dataset order, on every rank.

    Ranks may hold different numbers of rows (they are padded to the longest, the
    padding marked by position -1) and a position may come more than once (the
    sampler's padding repeats samples): its rows are the same sample's, the first kept.

    Parameters
    ----------
    accelerator : accelerate.Accelerator
        The process group.
    positions : Tensor of shape (n_rows,), int
        Position in the training split of each of this rank's rows.
    latents : dict of str to Tensor of shape (n_rows, n_features)
        This rank's latents per layer, on the accelerator's device.
    y : Tensor of shape (n_rows,)
        This rank's labels.
    n_samples : int
        Size of the training split.

    Returns
    -------
    latents : dict of str to ndarray of shape (n_samples, n_features), float32
        Each layer to the latents of all ranks, row ``i`` the sample at position ``i``.
    y : ndarray of shape (n_samples,), int64
        The label of the sample at each position.

    Raises
    ------
    RuntimeError
        When the ranks together miss a position (the sharding lost samples).

    """
    device = accelerator.device

    def gathered(tensor, pad):
        tensor = accelerator.pad_across_processes(tensor.to(device), dim=0, pad_index=pad)
        return accelerator.gather(tensor).cpu().numpy()

    where = gathered(positions.long(), -1)
    rows = np.flatnonzero(where >= 0)
    # The first gathered row of each position, in position order.
    found, first = np.unique(where[rows], return_index=True)
    if len(found) != n_samples:
        missing = np.setdiff1d(np.arange(n_samples), found)
        raise RuntimeError(
            f"the ranks' latent passes covered {len(found)} of {n_samples} training "
            f"samples (first missing positions: {missing[:5].tolist()}); the evaluation "
            "iterator must yield every sample, so do not give it a sampler that drops "
            "(drop_last) or subsamples."
        )
    keep = rows[first]
    y_all = gathered(y.long(), 0)[keep]
    out = {layer: gathered(Z.float(), 0)[keep] for layer, Z in latents.items()}
    return out, y_all


def distributed_history(accelerator) -> DistributedHistory:
    """Build a skorch ``DistributedHistory`` for this process group, on a fresh ``TCPStore``.

    Rank 0 opens the store on a free port of ``MASTER_ADDR`` (127.0.0.1 when unset) and
    sends the port to the others, so no port needs choosing.

    Parameters
    ----------
    accelerator : accelerate.Accelerator
        The process group.

    Returns
    -------
    history : skorch.history.DistributedHistory
        An empty history that every rank of ``accelerator`` reads and writes through the store.

    """
    host = os.environ.get("MASTER_ADDR", "127.0.0.1")
    world_size = accelerator.num_processes
    is_main = accelerator.is_main_process
    store = None
    if is_main:
        store = torch.distributed.TCPStore(host, 0, world_size, is_master=True,
                                           wait_for_workers=False)
    port = _broadcast(store.port if is_main else None)
    if not is_main:
        store = torch.distributed.TCPStore(host, port, world_size, is_master=False)
    return DistributedHistory(store=store, rank=accelerator.process_index,
                              world_size=world_size)


def states_digest(states: dict) -> str:
    """Digest of a refresh's clusters, owners and flags, to compare across ranks.

    Parameters
    ----------
    states : dict of str to ClusterState
        ``net.lcc_states_``.

    Returns
    -------
    digest : str
        Hex SHA-256 of every layer's ``labels``, ``owner`` and ``correct``, in order.

    """
    h = hashlib.sha256()
    for layer, state in states.items():
        h.update(layer.encode())
        for array in (state.labels, state.owner, state.correct):
            h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def _broadcast(value):
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value], from_process=0)[0]
