"""``LCCClassifier``: a skorch ``NeuralNetClassifier`` trained with Latent Cluster Correction."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import networkx as nx
import numpy as np
import torch
from scipy import sparse
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_consistent_length, column_or_1d
from skorch import NeuralNetClassifier
from skorch.callbacks import EpochScoring, PassthroughScoring, PrintLog
from skorch.dataset import Dataset as SkorchDataset
from skorch.dataset import unpack_data
from skorch.utils import is_dataset, to_numpy
from threadpoolctl import threadpool_limits

from .callbacks import STAT_KEYS, TIMING_KEYS, LatentClusterRefresh
from .latents import LatentRecorder, resolve_latent_layers
from .loss import lcc_loss
from .seeding import torch_seed

__all__ = ["LCCClassifier"]


class _IndexedDataset(torch.utils.data.Dataset):
    """Training-split dataset that also yields each sample's position in it.

    The position is the key of every per-sample quantity of the refresh (flags,
    clusters), so a shuffled batch always finds its own samples' flags.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        Xi, yi = unpack_data(self.dataset[i])
        return Xi, yi, i


def _class_codes(classes: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Position of each label of ``y`` in the sorted ``classes``; error for unknown labels."""
    codes = np.searchsorted(classes, y)
    clipped = np.minimum(codes, len(classes) - 1)
    if (codes >= len(classes)).any() or (classes[clipped] != y).any():
        unknown = np.setdiff1d(y, classes)
        raise ValueError(
            f"y has labels {unknown.tolist()[:10]} outside classes={classes.tolist()}; "
            "fit on data that contains every class, or pass classes=[...]."
        )
    return codes.astype(np.int64)


def _accuracy_on_codes(net, X, y):
    """Compute validation accuracy on encoded labels (the split's ``y`` holds codes)."""
    return float(np.mean(net.predict_proba(X).argmax(axis=1) == to_numpy(y)))


class LCCClassifier(NeuralNetClassifier):
    """Neural-network classifier fine-tuned with Latent Cluster Correction.

    A skorch :class:`~skorch.NeuralNetClassifier` whose training loss is
    ``cross-entropy + lcc_weight * L_lcc``. Between epochs the latents of the
    training split are clustered (hnswlib kNN graph + networkx Louvain), each
    cluster is given to the class holding most of its members, and during the next
    epochs every misclustered sample is pulled towards the nearest well-clustered
    representative of its own class (Ho Thanh, arXiv:2501.11919). Validation loss
    stays plain cross-entropy.

    Parameters
    ----------
    module : torch module class or instance
        The network, as for skorch.
    lcc_layers : str, list of str or None, default=None
        Named submodules whose outputs are the latents (``"name:input"`` takes the
        module's input). None takes the input of the last ``nn.Linear``, i.e. the
        penultimate representation. Several layers are clustered separately and
        their terms averaged.
    lcc_weight : float, default=0.1
        Weight of the clustering term; 0 trains exactly like ``NeuralNetClassifier``.
    n_neighbors : int, default=10
        Neighbours per sample in the kNN graph.
    louvain_resolution : float, default=1.0
        Louvain resolution: higher gives more, smaller clusters.
    n_representatives : int or None, default=32
        Correctly clustered samples drawn (seeded, without replacement) per cluster
        as targets; None uses all of them.
    lcc_warmup : int, default=1
        Epochs of plain training before the first refresh.
    lcc_interval : int, default=1
        Epochs between refreshes.
    cluster_sample_size : int or None, default=5000
        The graph and Louvain run on a seeded subsample of this many training
        samples; the others take the cluster of their nearest subsampled neighbour.
        None clusters every sample (networkx Louvain takes 10-60 s at 50,000).
    cluster_n_components : int or None, default=64
        The graph and the assignment work on this many principal components of the
        latents (fitted on the subsample, seeded), as scanpy does before its graph
        clustering; latents of at most this width are used as they are. None keeps
        the latents whole. Targets and the loss always use the full latents.
    louvain_backend : str, optional
        networkx dispatch backend for Louvain (for example ``"cugraph"``).
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
    lcc_states_ : dict of str to ClusterState
        The last refresh's clusters, flags and representatives per layer (keyed by
        position in the training split).
    history : skorch History
        Adds ``train_lcc`` every epoch and, at each refresh, ``lcc_n_clusters``,
        ``lcc_modularity``, ``lcc_misclustered``, ``lcc_uncovered_classes``,
        ``lcc_largest_cluster``, ``lcc_no_target``, ``lcc_n_representatives``,
        ``lcc_refresh_s`` and its split ``lcc_latents_s``, ``lcc_graph_s``,
        ``lcc_communities_s``, ``lcc_assign_s``, ``lcc_index_s``.

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

    def __init__(
        self,
        module,
        *args,
        lcc_layers: str | Sequence[str] | None = None,
        lcc_weight: float = 0.1,
        n_neighbors: int = 10,
        louvain_resolution: float = 1.0,
        n_representatives: int | None = 32,
        lcc_warmup: int = 1,
        lcc_interval: int = 1,
        cluster_sample_size: int | None = 5000,
        cluster_n_components: int | None = 64,
        louvain_backend: str | None = None,
        random_state: int | None = None,
        **kwargs,
    ):
        super().__init__(module, *args, **kwargs)
        self.lcc_layers = lcc_layers
        self.lcc_weight = lcc_weight
        self.n_neighbors = n_neighbors
        self.louvain_resolution = louvain_resolution
        self.n_representatives = n_representatives
        self.lcc_warmup = lcc_warmup
        self.lcc_interval = lcc_interval
        self.cluster_sample_size = cluster_sample_size
        self.cluster_n_components = cluster_n_components
        self.louvain_backend = louvain_backend
        self.random_state = random_state

    # ------------------------------------------------------------------ set-up

    @property
    def _default_callbacks(self):
        callbacks = dict(super()._default_callbacks)
        callbacks["valid_acc"] = EpochScoring(
            _accuracy_on_codes, name="valid_acc", lower_is_better=False
        )
        # Refresh diagnostics exist only in refresh epochs, which a table cannot show.
        callbacks["print_log"] = PrintLog(
            keys_ignored=[f"lcc_{k}" for k in TIMING_KEYS + STAT_KEYS + ("refresh_s",)]
        )
        ordered = [(name, cb) for name, cb in callbacks.items() if name != "print_log"]
        return ordered + [
            ("train_lcc", PassthroughScoring(name="train_lcc", on_train=True)),
            ("lcc_refresh", LatentClusterRefresh()),
            ("print_log", callbacks["print_log"]),
        ]

    @property
    def classes_(self):
        """Class labels seen in ``fit`` (or given as ``classes``)."""
        if "label_classes_" in vars(self):
            return self.label_classes_
        return super().classes_

    def initialize(self):
        """Initialise the net and the generator behind the clustering."""
        super().initialize()
        self.lcc_rng_ = np.random.default_rng(self.random_state)
        self.lcc_states_ = {}
        return self

    def _check_lcc_params(self) -> None:
        def integer(name, low, allow_none=False):
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                none = " or None" if allow_none else ""
                raise ValueError(
                    f"{name}={value!r} is invalid: expected an integer >= {low}{none}."
                )

        weight = self.lcc_weight
        if not isinstance(weight, numbers.Real) or not np.isfinite(weight) or weight < 0:
            raise ValueError(
                f"lcc_weight={weight!r} is invalid: expected a finite number >= 0 "
                "(0 disables the clustering term)."
            )
        resolution = self.louvain_resolution
        if not isinstance(resolution, numbers.Real) or not resolution > 0:
            raise ValueError(
                f"louvain_resolution={resolution!r} is invalid: expected a number > 0 "
                "(1.0 is standard Louvain; larger gives more clusters)."
            )
        integer("n_neighbors", 1)
        integer("n_representatives", 1, allow_none=True)
        integer("lcc_warmup", 0)
        integer("lcc_interval", 1)
        integer("cluster_sample_size", self.n_neighbors + 1, allow_none=True)
        integer("cluster_n_components", 1, allow_none=True)
        backend = self.louvain_backend
        available = sorted(getattr(nx.community.louvain_communities, "backends", {"networkx"}))
        if backend is not None and backend not in available:
            raise ValueError(
                f"louvain_backend={backend!r} is not an installed networkx backend that "
                f"implements Louvain; installed: {available}. Install the backend or pass "
                "None (networkx's own implementation)."
            )

    # ------------------------------------------------------------------ data

    def _cast_X(self, X):
        """Cast numeric arrays and tensors to float32; other inputs pass through."""
        if isinstance(X, torch.Tensor) and (not X.is_floating_point() or X.dtype == torch.float64):
            return X.float()
        if isinstance(X, np.ndarray) and X.dtype.kind in "biuf" and X.dtype != np.float32:
            return X.astype(np.float32)
        return X

    def _check_X(self, X, reset: bool):
        """Validate array-like ``X`` (finite, 2-D or more, consistent features).

        Torch Datasets and dicts pass through unchanged; tensors are checked on a
        CPU view and kept as tensors; everything else goes through ``check_array``.
        """
        if is_dataset(X) or (isinstance(X, dict) and not sparse.issparse(X)):
            return X
        view = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else X
        arr = check_array(view, allow_nd=True, dtype="numeric", estimator=self, input_name="X")
        n_features = arr.shape[1] if arr.ndim == 2 else None
        if reset:
            self.n_features_in_ = n_features
        elif getattr(self, "n_features_in_", None) not in (None, n_features):
            raise ValueError(
                f"X has {n_features} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        return self._cast_X(X if isinstance(X, torch.Tensor) else arr)

    def _encode_y(self, X, y):
        """Check ``y`` and encode it to class codes ``0..n_classes-1``."""
        if y is None:
            if not is_dataset(X):
                raise ValueError(
                    f"{type(self).__name__} requires y to be passed, but the target y is None; "
                    "pass the labels, or a torch Dataset that yields them as X."
                )
            return None
        y_arr = to_numpy(y) if isinstance(y, torch.Tensor) else np.asarray(y)
        if y_arr.ndim == 2 and y_arr.shape[1] == 1:
            y_arr = column_or_1d(y_arr, warn=True)  # warns, as scikit-learn estimators do
        if y_arr.ndim != 1:
            raise ValueError(f"y has shape {y_arr.shape}; pass one label per sample (1-D).")
        if not is_dataset(X):
            check_consistent_length(X, y_arr)
        if y_arr.dtype.kind == "f" and not np.isfinite(y_arr).all():
            raise ValueError("Input y contains NaN or infinity; every sample needs a class label.")
        check_classification_targets(y_arr)
        classes = np.unique(y_arr) if self.classes is None else np.asarray(self.classes)
        if len(classes) < 2:
            raise ValueError(
                f"y holds one class only ({classes.tolist()}, {len(y_arr)} samples); a "
                "classifier needs at least two classes."
            )
        self.label_classes_ = classes
        return _class_codes(classes, y_arr)

    def fit(self, X, y=None, **fit_params):
        """Validate the parameters and data, then train (see skorch's ``fit``).

        Parameters
        ----------
        X : array-like, tensor, dict or torch Dataset
            Training inputs.
        y : array-like or None
            Labels; None when ``X`` is a Dataset that yields them.
        **fit_params : dict
            Passed to the module's ``forward`` and to ``train_split``.

        Returns
        -------
        self : LCCClassifier

        """
        self._check_lcc_params()
        vars(self).pop("label_classes_", None)
        X = self._check_X(X, reset=True)
        y = self._encode_y(X, y)
        self._fitting = True  # skorch's fit calls partial_fit: do not encode y twice
        try:
            with torch_seed(self.random_state):
                return super().fit(X, y, **fit_params)
        finally:
            del self._fitting

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        """Train one more round of ``max_epochs`` epochs without re-initialising."""
        if getattr(self, "_fitting", False):
            return super().partial_fit(X, y, classes=classes, **fit_params)
        if not self.initialized_:
            return self.fit(X, y, **fit_params)
        self._check_lcc_params()
        X = self._check_X(X, reset=False)
        if y is not None and "label_classes_" in vars(self):
            y = _class_codes(self.label_classes_, column_or_1d(to_numpy(y), warn=True))
        return super().partial_fit(X, y, classes=classes, **fit_params)

    def get_split_datasets(self, X, y=None, **fit_params):
        """Split as skorch does, then check the training split is large enough."""
        dataset_train, dataset_valid = super().get_split_datasets(X, y, **fit_params)
        n_train = len(dataset_train)
        if self.n_neighbors >= n_train:
            raise ValueError(
                f"n_neighbors={self.n_neighbors} must be smaller than the number of training "
                f"samples ({n_train} after the validation split); lower n_neighbors."
            )
        return dataset_train, dataset_valid

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        """Train with the latent hooks attached (they are removed afterwards).

        numpy's BLAS runs single-threaded during the epochs: its small products on
        every training batch (the target search) would otherwise wake threads that
        fight torch's for the cores (a training step was measured 15 times slower on
        2 cores). The refresh gets the original thread count back. torch's own
        threads are not affected.
        """
        self.lcc_layers_ = resolve_latent_layers(self.module_, self.lcc_layers)
        with threadpool_limits(limits=1, user_api="blas") as blas, \
                LatentRecorder(self.module_, self.lcc_layers_) as recorder:
            self._blas_threads = blas.get_original_num_threads().get("blas")
            self._recorder = recorder
            try:
                return super().fit_loop(X, y, epochs=epochs, **fit_params)
            finally:
                del self._recorder, self._blas_threads
                self._batch_index = None

    def get_iterator(self, dataset, training=False):
        """Training batches also carry each sample's position in the training split."""
        if training:
            dataset = _IndexedDataset(dataset)
        return super().get_iterator(dataset, training=training)

    def train_step_single(self, batch, **fit_params):
        """Remember the batch's positions, then do skorch's training step."""
        Xi, yi, self._batch_index = batch
        return super().train_step_single((Xi, yi), **fit_params)

    # ------------------------------------------------------------------ refresh

    def training_latents(self, dataset) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Latents and labels of every sample of ``dataset``, in dataset order.

        Eval mode, no gradient; only the latents are moved to the CPU. The torch
        random state is left as it was, so refreshing does not change training.

        Parameters
        ----------
        dataset : torch Dataset
            The training split.

        Returns
        -------
        latents : dict of str to ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)

        """
        chunks: dict[str, list] = {layer: [] for layer in self.lcc_layers_}
        labels = []
        batches = self._array_batches(dataset)
        if batches is None:
            batches = (unpack_data(b) for b in self.get_iterator(dataset, training=False))
        with torch.random.fork_rng(devices=[]):
            for Xi, yi in batches:
                self.evaluation_step((Xi, yi), training=False)
                for layer in self.lcc_layers_:
                    chunks[layer].append(self._recorder.outputs[layer].detach().float().cpu())
                labels.append(to_numpy(yi).reshape(-1))
        latents = {layer: torch.cat(c).numpy() for layer, c in chunks.items()}
        return latents, np.concatenate(labels).astype(np.int64)

    def _array_batches(self, dataset):
        """Slice the validation iterator's batches straight from the arrays.

        For the common case, a plain skorch ``Dataset`` over an array or tensor (or
        skorch's validation-split ``Subset`` of one) read by the default
        ``DataLoader``, slicing gives the same batches without fetching and
        collating every sample on its own: half the refresh's forward pass for a
        50,000-sample MLP head on this project's 2-core machine. Anything else
        returns None and goes through ``get_iterator``.
        """
        base, positions = dataset, None
        if isinstance(dataset, torch.utils.data.Subset):
            base, positions = dataset.dataset, np.asarray(dataset.indices)
        kwargs = self.get_params_for("iterator_valid")
        if (
            type(base) is not SkorchDataset
            or self.iterator_valid is not torch.utils.data.DataLoader
            or set(kwargs) - {"batch_size", "num_workers", "pin_memory"}
            or not all(isinstance(a, (np.ndarray, torch.Tensor)) for a in (base.X, base.y))
            or len(base.X) != len(base.y)
        ):
            return None
        n = len(dataset)
        size = kwargs.get("batch_size", self.batch_size)
        size = n if size == -1 else size

        def batches():
            for start in range(0, n, size):
                rows = slice(start, start + size) if positions is None else (
                    positions[start:start + size])
                yield torch.as_tensor(base.X[rows]), torch.as_tensor(base.y[rows])

        return batches()

    # ------------------------------------------------------------------ loss

    def lcc_term(self, y_true: torch.Tensor) -> torch.Tensor:
        """Clustering term of the current training batch, averaged over layers.

        Uses the latents captured by the hooks during this batch's forward pass and
        the flags of the last refresh, looked up by each sample's position in the
        training split. Zero (attached to the graph) before the first refresh or when
        no sample of the batch is misclustered with a target.

        Parameters
        ----------
        y_true : Tensor of shape (batch,)
            Class codes of the batch.

        Returns
        -------
        term : Tensor, scalar

        """
        outputs = self._recorder.outputs
        if not self.lcc_states_ or self._batch_index is None:
            return sum(outputs[layer].sum() * 0.0 for layer in self.lcc_layers_)
        index = to_numpy(self._batch_index).astype(np.int64)
        y_np = to_numpy(y_true).astype(np.int64).reshape(-1)
        terms = []
        for layer, state in self.lcc_states_.items():
            z = outputs[layer]
            rows = np.flatnonzero(state.misclustered[index])
            if len(rows) == 0:
                terms.append(z.sum() * 0.0)
                continue
            # Only the misclustered rows (and their targets) leave the device.
            z_mc = z.index_select(0, torch.from_numpy(rows).to(z.device))
            targets, found = state.representatives.query(
                z_mc.detach().float().cpu().numpy(), y_np[rows]
            )
            # Classes owning no cluster have no target; the mask is left out when every
            # row has one (the common case), which spares an indexing node.
            mask = None if found.all() else torch.from_numpy(found).to(z.device)
            terms.append(lcc_loss(z_mc, torch.from_numpy(targets).to(z.device), mask))
        return terms[0] if len(terms) == 1 else torch.stack(terms).mean()

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """Cross-entropy, plus ``lcc_weight`` times the clustering term in training."""
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if not training or not hasattr(self, "_recorder"):
            return loss
        if self.lcc_weight == 0 or not self.lcc_states_:
            # No weight, or no refresh yet: the term is an exact zero; skip building it.
            self.history.record_batch("train_lcc", 0.0)
            return loss
        term = self.lcc_term(y_true)
        self.history.record_batch("train_lcc", term.item())
        return loss + self.lcc_weight * term

    # ------------------------------------------------------------------ predict

    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``."""
        proba = super().predict_proba(self._check_X(X, reset=False))
        classes = self._known_classes()
        n_out = proba.shape[1] if proba.ndim == 2 else None
        n_classes = n_out if classes is None else len(classes)
        if n_out is None or n_out != n_classes:
            raise ValueError(
                f"the module returns {proba.shape[1:]} scores per sample but there are "
                f"{n_classes} classes; make its output layer produce {n_classes} scores."
            )
        return proba

    def predict(self, X):
        """Predicted class labels (values of ``classes_``)."""
        codes = self.predict_proba(X).argmax(axis=1)
        classes = self._known_classes()
        return codes if classes is None else np.asarray(classes)[codes]

    def _known_classes(self):
        """``classes_``, or None for a net whose parameters were loaded without fitting."""
        try:
            return self.classes_
        except AttributeError:
            return None

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_recorder", None)
        return state
