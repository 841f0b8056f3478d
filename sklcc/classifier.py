"""``LCCClassifier``: a skorch ``NeuralNetClassifier`` trained with Latent Cluster Correction.

This file holds the estimator's public API and its skorch hooks; the refresh runs in
the :class:`~sklcc.callbacks.LatentClusterRefresh` callback, and what any classifier
with a latent penalty needs (data checks, label encoding, hooks, batch positions,
seeding) in :class:`~sklcc.base.LatentPenaltyClassifier`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from skorch.callbacks import PrintLog
from skorch.utils import to_numpy

from .base import LatentPenaltyClassifier
from .callbacks import LATENT_SOURCES, LatentClusterRefresh
from .communities import resolve_louvain_backend
from .diagnostics import REFRESH_KEYS, history_key
from .latents import LatentRecorder, collect_latents, compare_training_pass, resolve_latent_layers
from .loss import lcc_loss
from .neighbors import KNN_ALGORITHMS
from .validation import check_choice, check_integer, check_real, check_target

__all__ = ["LCCClassifier"]


class LCCClassifier(LatentPenaltyClassifier):
    """Neural-network classifier fine-tuned with Latent Cluster Correction.

    A skorch :class:`~skorch.NeuralNetClassifier` whose training loss is
    ``cross-entropy + lcc_weight * L_lcc``. Between epochs the latents of the
    training split are clustered (Louvain communities of their kNN graph), each
    cluster is given to the class holding most of its members, and during the next
    epochs every misclustered sample is pulled towards the nearest well-clustered
    representative of its own class (Ho Thanh, arXiv:2501.11919). Validation loss
    stays plain cross-entropy.

    Parameters
    ----------
    module : torch module class or instance
        The network, as for skorch.
    *args
        The positional arguments of skorch after ``module`` (``criterion``).
    lcc_layers : str, list of str or None, default=None
        Named submodules whose outputs are the latents (``"name:input"`` takes the
        module's input). None takes the input of the last ``nn.Linear``, i.e. the
        penultimate representation. The name of the last ``nn.Linear`` itself takes
        its output, the logits: the published "head" placement. Several layers are
        clustered separately and their terms averaged.
    lcc_weight : float, default=0.1
        Weight of the clustering term; 0 trains exactly like ``NeuralNetClassifier``.
    n_neighbors : int, default=10
        Neighbours per sample in the kNN graph.
    louvain_resolution : float, default=1.0
        Louvain resolution: higher gives more, smaller clusters.
    n_representatives : "auto", int or None, default="auto"
        Correctly clustered samples drawn (seeded, without replacement) per cluster
        as targets of ``lcc_target="nearest"``; None uses all of them. ``"auto"``
        draws 32 per cluster under ``"nearest"`` and takes every correctly clustered
        sample under ``"knn-mean"``, whose published target draws none; an integer
        with ``"knn-mean"`` contradicts it and is refused.
    lcc_target : {"nearest", "knn-mean"}, default="nearest"
        Where a misclustered sample of class ``c`` is pulled. ``"nearest"``: the
        nearest representative of ``c``. ``"knn-mean"``: the published exact target;
        each cluster owned by ``c`` proposes the mean of its ``lcc_target_k``
        correctly clustered samples nearest to the sample (all of them when it has
        fewer), and the nearest proposal wins.
    lcc_target_k : int or None, default=None
        ``k`` of ``"knn-mean"``; None uses ``n_neighbors``, as the published code
        shares one ``k`` between the graph and the target. Only used when
        ``lcc_target="knn-mean"`` (ignored under ``"nearest"``, so a search may vary
        both).
    lcc_warmup : int, default=1
        Epochs of plain training before the first refresh.
    lcc_interval : int, default=1
        Epochs between refreshes.
    lcc_latents : {"auto", "eval", "train"}, default="auto"
        Where a refresh takes the training split's latents from. ``"eval"``: an
        extra forward pass over the training split in eval mode at the refresh.
        ``"train"``: what the hooks saw in the training batches of the epoch that
        just ended (training mode, weights moving through the epoch), kept on the
        CPU; samples that epoch did not see (``iterator_train__drop_last=True``) and
        a refresh at a fit's first epoch use the eval pass; a dropout module that
        feeds the latent layer directly is undone, as the eval pass would see it.
        ``"auto"``: before the first refresh of a fit, ``"train"`` where, for every
        latent layer, no batch-norm (or instance norm with running statistics) in
        training mode runs before it and one batch gives the same latents in
        training and in eval mode (``torch.allclose``, rtol 1e-4, atol 1e-5; the
        random state, statistics and flags left as they were), else ``"eval"``. The
        decision and its reason are ``lcc_latents_`` and ``lcc_latents_reason_``
        and, with every refresh, the history's ``lcc_latents_source`` and
        ``lcc_latents_reason``. What each costs: the user guide, "Refresh schedule
        and cost".
    cluster_sample_size : int or None, default=5000
        The graph and Louvain run on a seeded subsample of this many training
        samples; the others take the cluster of their nearest subsampled neighbour.
        None, or a size at least the training split's, clusters every sample, as the
        published method does. A subsample that is drawn must be larger than
        ``n_neighbors``.
    cluster_n_components : int or None, default=64
        The graph and the assignment work on this many principal components of the
        latents (fitted on the subsample, seeded), as scanpy does before its graph
        clustering; latents of at most this width are used as they are, and a
        subsample smaller than it gives as many components as it has samples. None
        keeps the latents whole. Targets and the loss always use the full latents.
    louvain_backend : str, optional
        Louvain engine: None for the default (networkit's PLM where installed, else
        networkx), ``"networkit"`` or ``"networkx"``. The engine that ran is
        recorded in history as ``lcc_louvain_backend``.
    knn_algorithm : {"auto", "kd_tree", "brute", "hnsw", "ivf"}, default="auto"
        Neighbour search of the kNN graph and of the assignment to the subsample,
        named as in scikit-learn's ``NearestNeighbors``. ``"kd_tree"``: scipy's
        exact KD-tree, fast in few dimensions (logits). ``"brute"``: exact, by
        faiss's brute force (BLAS products, a heap per query). ``"hnsw"``: an
        approximate hnswlib index, built on one thread so a seed reproduces it.
        ``"ivf"``: an approximate faiss inverted-file index (seeded k-means cells,
        each query compared with the rows of its 16 nearest cells; Linux only; never
        chosen by ``"auto"``). ``"auto"`` takes brute force for ``n_neighbors >= 99``
        (the graph's search asks for ``n_neighbors + 1`` hits, each sample finding
        itself) or up to 50,000 x 50,000 distances (searched rows times queries),
        else the KD-tree up to 16 features, else hnswlib. Without faiss (macOS,
        Windows) ``"brute"`` is torch's matrix products, and below 99 neighbours
        ``"auto"`` takes the KD-tree up to 16 features, else brute force for a
        graph alone of at most 20,000 rows or from 256 features, else hnswlib. The
        engine that ran is recorded in history as ``lcc_knn_algorithm``; why the
        rule: the user guide. On a CUDA ``device`` the searches are exact matrix
        products on the device.
    random_state : int or None, default=None
        Seeds torch (module initialisation, shuffling, dropout) for the duration of
        ``fit`` without touching the global generator afterwards, and the
        clustering; the same seed gives bit-identical CPU runs.
    **kwargs
        Every other skorch argument (``max_epochs``, ``lr``, ``batch_size``,
        ``optimizer``, ``train_split``, ``device``, ``module__*``, ...).

    Attributes
    ----------
    classes_ : ndarray
        Class labels seen in ``fit``; ``predict`` returns these.
    lcc_layers_ : list of str
        Resolved latent layer names.
    lcc_latents_ : {"eval", "train"}
        Where the last fit's refreshes took the training latents from (``lcc_latents``
        resolved).
    lcc_latents_reason_ : str
        Why: the parameter given, or what ``"auto"`` found for each layer.
    lcc_states_ : dict of str to ClusterState
        The last refresh's clusters, flags and representatives per layer (keyed by
        position in the training split).
    history : skorch History
        Adds ``train_lcc`` every epoch and, at each refresh, ``lcc_n_clusters``,
        ``lcc_modularity``, ``lcc_misclustered``, ``lcc_uncovered_classes``,
        ``lcc_largest_cluster``, ``lcc_no_target``, ``lcc_n_representatives``,
        ``lcc_refresh_s`` and its split ``lcc_latents_s``, ``lcc_graph_s``,
        ``lcc_communities_s``, ``lcc_assign_s``, ``lcc_index_s`` (training waits for
        the whole refresh), the epoch whose latents were clustered
        ``lcc_latents_epoch`` (1-based like ``epoch``; 0 means the initial weights)
        the fraction of them from an eval pass ``lcc_latents_eval``, and the resolved
        latent source ``lcc_latents_source`` with ``lcc_latents_reason``.

    See Also
    --------
    sklcc.CenterLossClassifier : The same base with the center loss term instead.
    sklcc.LCCSearchCV : Tunes its parameters with Optuna.
    sklcc.evaluation.cv_difference : Whether LCC beats plain training on your data.

    Notes
    -----
    Numeric array inputs are cast to ``float32`` (what a default torch module
    computes in); labels may be any sortable values and are encoded to
    ``0..n_classes-1`` internally, so the module must output ``n_classes`` scores.
    With a torch ``Dataset`` as ``X``, its targets must already be class indices.

    Examples
    --------
    >>> import torch
    >>> from sklearn.datasets import load_digits
    >>> from sklcc import LCCClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> class MLP(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.hidden = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU())
    ...         self.out = torch.nn.Linear(32, 10)
    ...     def forward(self, x):
    ...         return torch.softmax(self.out(self.hidden(x)), dim=-1)
    >>> clf = LCCClassifier(MLP, lcc_layers=["hidden"], max_epochs=3, lr=0.1,
    ...                     random_state=0, verbose=0).fit(X / 16, y)
    >>> clf.predict(X[:3] / 16).shape
    (3,)

    """

    penalty_name = "lcc"

    def __init__(
        self,
        module,
        *args,
        lcc_layers: str | Sequence[str] | None = None,
        lcc_weight: float = 0.1,
        n_neighbors: int = 10,
        louvain_resolution: float = 1.0,
        n_representatives: int | str | None = "auto",
        lcc_target: str = "nearest",
        lcc_target_k: int | None = None,
        lcc_warmup: int = 1,
        lcc_interval: int = 1,
        lcc_latents: str = "auto",
        cluster_sample_size: int | None = 5000,
        cluster_n_components: int | None = 64,
        louvain_backend: str | None = None,
        knn_algorithm: str = "auto",
        random_state: int | None = None,
        **kwargs,
    ):
        super().__init__(module, *args, random_state=random_state, **kwargs)
        self.lcc_layers = lcc_layers
        self.lcc_weight = lcc_weight
        self.n_neighbors = n_neighbors
        self.louvain_resolution = louvain_resolution
        self.n_representatives = n_representatives
        self.lcc_target = lcc_target
        self.lcc_target_k = lcc_target_k
        self.lcc_warmup = lcc_warmup
        self.lcc_interval = lcc_interval
        self.lcc_latents = lcc_latents
        self.cluster_sample_size = cluster_sample_size
        self.cluster_n_components = cluster_n_components
        self.louvain_backend = louvain_backend
        self.knn_algorithm = knn_algorithm

    @property
    def _default_callbacks(self):
        callbacks = [(n, cb) for n, cb in super()._default_callbacks if n != "print_log"]
        # Refresh diagnostics exist only in refresh epochs, which a table cannot show.
        print_log = PrintLog(keys_ignored=[history_key(k) for k in REFRESH_KEYS])
        return callbacks + [("lcc_refresh", LatentClusterRefresh()), ("print_log", print_log)]

    def initialize(self):
        """Initialise the net and the generator behind the clustering.

        Returns
        -------
        self : LCCClassifier
            This net, with a fresh ``lcc_rng_`` and no clusters (``lcc_states_`` empty).

        """
        super().initialize()
        self._initialize_lcc(self.random_state)
        return self

    def _initialize_lcc(self, seed) -> None:
        """Start the clustering's generator from ``seed``, with no clusters yet."""
        self.lcc_rng_ = np.random.default_rng(seed)
        self.lcc_states_ = {}

    @property
    def penalty_weight(self) -> float:
        """``lcc_weight``."""
        return self.lcc_weight

    def check_penalty_params(self) -> None:
        """Validate the LCC parameters (called by ``fit`` and ``partial_fit``)."""
        check_real("lcc_weight", self.lcc_weight, low=0, strict=False,
                   hint="0 disables the clustering term")
        check_real("louvain_resolution", self.louvain_resolution, low=0, strict=True,
                   hint="1.0 is standard Louvain; larger gives more clusters")
        check_integer("n_neighbors", self.n_neighbors, 1)
        check_target(self.lcc_target, self.lcc_target_k, self.n_representatives)
        check_integer("lcc_warmup", self.lcc_warmup, 0)
        check_integer("lcc_interval", self.lcc_interval, 1)
        check_choice("lcc_latents", self.lcc_latents, LATENT_SOURCES)
        check_integer("cluster_sample_size", self.cluster_sample_size, 2, allow_none=True)
        check_integer("cluster_n_components", self.cluster_n_components, 1, allow_none=True)
        resolve_louvain_backend(self.louvain_backend)  # raises for an unknown engine
        check_choice("knn_algorithm", self.knn_algorithm, KNN_ALGORITHMS)

    def penalty_layers(self) -> list[str]:
        """Resolve ``lcc_layers`` against the module (stored as ``lcc_layers_``).

        Returns
        -------
        layers : list of str
            The latent layers' names.

        """
        self.lcc_layers_ = resolve_latent_layers(self.module_, self.lcc_layers)
        return self.lcc_layers_

    def latent_recorder(self) -> LatentRecorder:
        """Return the recorder of the latent layers, undoing dropout for ``lcc_latents="train"``.

        With ``"train"`` (or ``"auto"``, which may resolve to it) the refresh clusters
        what a latent was before a dropout that feeds it directly
        (:class:`~sklcc.latents.LatentRecorder`, ``undo_dropout``).

        Returns
        -------
        recorder : LatentRecorder
            Not entered yet.

        """
        return LatentRecorder(self.module_, self.penalty_layers(),
                              undo_dropout=self.lcc_latents in ("auto", "train"))

    def get_split_datasets(self, X, y=None, **fit_params):
        """Split as skorch does, then check the training split is large enough.

        Parameters
        ----------
        X : array-like, tensor, dict or torch Dataset
            Training inputs.
        y : array-like or None
            Labels.
        **fit_params : dict
            Passed to ``train_split``.

        Returns
        -------
        dataset_train, dataset_valid : torch Dataset
            The validation split is None without ``train_split``.

        """
        dataset_train, dataset_valid = super().get_split_datasets(X, y, **fit_params)
        n_train = len(dataset_train)
        if self.n_neighbors >= n_train:
            raise ValueError(
                f"n_neighbors={self.n_neighbors} must be smaller than the number of training "
                f"samples ({n_train} after the validation split); lower n_neighbors."
            )
        size = self.cluster_sample_size
        if size is not None and size < n_train and self.n_neighbors >= size:
            raise ValueError(
                f"n_neighbors={self.n_neighbors} must be smaller than the clustered subsample "
                f"(cluster_sample_size={size} of {n_train} training samples); raise "
                "cluster_sample_size, pass cluster_sample_size=None to cluster every sample, "
                "or lower n_neighbors."
            )
        return dataset_train, dataset_valid

    def resolve_latent_source(self, dataset) -> tuple[str, str]:
        """Decide where this fit's refreshes take the training latents from.

        ``lcc_latents="eval"`` or ``"train"`` is taken as given; ``"auto"`` compares
        one batch of ``dataset`` in training and eval mode
        (:func:`~sklcc.latents.compare_training_pass`) and takes ``"train"`` when every
        latent layer agrees. Sets ``lcc_latents_`` and ``lcc_latents_reason_``; called
        by the refresh callback at a fit's first epoch, before any refresh.

        Parameters
        ----------
        dataset : torch Dataset
            The training split.

        Returns
        -------
        source : {"eval", "train"}
            Where the refreshes of this fit take the training latents from.
        reason : str
            Why: the parameter given, or what ``"auto"`` found for each layer.

        """
        if self.lcc_latents != "auto":
            source, reason = self.lcc_latents, f"lcc_latents={self.lcc_latents!r} given"
        else:
            verdicts = compare_training_pass(self, dataset, self.fit_state_.recorder)
            source = "train" if all(agree for agree, _ in verdicts.values()) else "eval"
            reason = "auto: " + "; ".join(f"{layer}: {why}"
                                          for layer, (_, why) in verdicts.items())
        self.lcc_latents_, self.lcc_latents_reason_ = source, reason
        return source, reason

    def training_latents(self, dataset) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Return the latents and labels of every sample of ``dataset``, in dataset order.

        Eval mode, no gradient, the torch random state left as it was
        (:func:`~sklcc.latents.collect_latents`); called by the refresh during ``fit``.

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
        return collect_latents(self, dataset, self.fit_state_.recorder)

    def penalty_term(self, y_true: torch.Tensor) -> torch.Tensor | None:
        """Clustering term of the current training batch, averaged over layers.

        Uses the latents the hooks captured during this batch's forward pass and the
        flags of the last refresh, looked up by each sample's position in the
        training split. None (an exact zero) before the first refresh; zero attached
        to the graph when no sample of the batch is misclustered with a target.

        Parameters
        ----------
        y_true : Tensor of shape (batch,)
            Class codes of the batch.

        Returns
        -------
        term : Tensor, scalar, or None
            The clustering term, averaged over the latent layers; None before the first refresh.

        """
        if not self.lcc_states_:
            return None
        outputs = self.fit_state_.recorder.outputs
        index = to_numpy(self.fit_state_.batch_index).astype(np.int64)
        terms = []
        for layer, state in self.lcc_states_.items():
            z = outputs[layer]
            if _targets_on_host(z.device):
                terms.append(_term_on_host(z, y_true, index, state))
            else:
                terms.append(_term_on_device(z, y_true, index, state))
        return terms[0] if len(terms) == 1 else torch.stack(terms).mean()


def _targets_on_host(device: torch.device) -> bool:
    """Whether the batch's targets are searched with numpy (the latents are on the CPU).

    There the numpy search reads the latents in place, with no copy; on any other
    device the search runs there (:func:`_term_on_device`).
    """
    return device.type == "cpu"


def _term_on_host(z: torch.Tensor, y_true, index: np.ndarray, state) -> torch.Tensor:
    """Return the term of one layer, its targets searched with numpy (latents on the CPU)."""
    rows = np.flatnonzero(state.misclustered[index])
    if len(rows) == 0:
        return z.sum() * 0.0
    z_mc = z.index_select(0, torch.from_numpy(rows).to(z.device))
    y_np = to_numpy(y_true).astype(np.int64).reshape(-1)
    targets, found = state.targets.query(z_mc.detach().float().cpu().numpy(), y_np[rows])
    # Classes owning no cluster have no target; the mask is left out when every
    # row has one (the common case), which spares an indexing node.
    mask = None if found.all() else torch.from_numpy(found).to(z.device)
    return lcc_loss(z_mc, torch.from_numpy(targets).to(z.device), mask)


def _term_on_device(z: torch.Tensor, y_true, index: np.ndarray, state) -> torch.Tensor:
    """Return the term of one layer, its targets searched in torch on ``z``'s device.

    Nothing comes back to the host and nothing waits for the device: the batch's
    flags and classes go to the device (two small copies that need no result from
    it), every row is searched and the term weighs the rows by their mask, so no
    shape depends on the data.
    """
    device = z.device
    flags = torch.as_tensor(state.misclustered[index]).to(device, non_blocking=True)
    y = torch.as_tensor(y_true).reshape(-1).to(device, torch.int64, non_blocking=True)
    targets, found = state.targets.query_tensor(z.detach(), y)
    return lcc_loss(z, targets, flags & found, gather=False)
