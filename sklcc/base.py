"""The base estimator: ``LatentPenaltyClassifier``, a skorch classifier with a latent term.

The shared base of :class:`~sklcc.LCCClassifier` and
:class:`~sklcc.CenterLossClassifier`. It holds everything a classifier with an extra
loss term on inner activations needs, so the subclasses hold only their term:

- scikit-learn's contract: ``fit`` validates data and labels, any sortable labels are
  encoded (and ``predict`` maps back), ``n_features_in_``, seeded CPU runs;
- skorch's contract for ``NeuralNetClassifier`` (``classes``, ``predict_nonlinearity``,
  callbacks, ``partial_fit``, ``warm_start``, pickling) kept exact;
- forward hooks on the named latent modules for the duration of a fit, training
  batches that carry each sample's position in the training split, and the loss
  ``criterion + weight * term``, the term logged as ``train_<penalty_name>``;
- a clear error when the training loss stops being finite.

Used on its own (no penalty), it is a seeded ``NeuralNetClassifier`` with
scikit-learn's label handling: the benchmarks' cross-entropy baseline.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import EpochScoring, PassthroughScoring
from skorch.dataset import Dataset as SkorchDataset
from skorch.dataset import unpack_data
from skorch.exceptions import NotFittedError
from skorch.utils import to_numpy
from threadpoolctl import threadpool_limits

from .diagnostics import term_key
from .latents import LatentRecorder
from .seeding import torch_seed
from .validation import check_X, encode_labels

__all__ = ["FitState", "IndexedDataset", "LatentPenaltyClassifier"]


@dataclass
class FitState:
    """Scratch state of one ``fit`` or ``partial_fit``, owned by it and dropped after it.

    Available as ``net.fit_state_`` while the net trains (callbacks may read it), and
    absent otherwise. It knows nothing of a particular term: what a term's callbacks
    need between batches lives on those callbacks.

    Parameters
    ----------
    recorder : LatentRecorder or None
        The hooks on the latent modules; ``recorder.outputs`` holds the current
        batch's latents.
    batch_index : Tensor or None
        Positions in the training split of the current training batch's samples.
    blas_threads : int or None
        The thread count of numpy's BLAS before the fit limited it to one thread
        (work between epochs may use them again).
    output_checked : bool
        Whether the module's first training output was checked against the criterion.
    stop_epoch : int or None
        Length ``net.history`` reaches when this fit has run all its epochs (unless a
        callback stops it earlier).

    See Also
    --------
    sklcc.base.LatentPenaltyClassifier : The estimator whose fits create it, as ``fit_state_``.
    sklcc.latents.LatentRecorder : The hooks it holds as ``recorder``.
    sklcc.callbacks.LatentClusterRefresh : A callback that reads it while the net trains.

    Examples
    --------
    >>> FitState().stop_epoch is None
    True

    """

    recorder: LatentRecorder | None = None
    batch_index: torch.Tensor | None = None
    blas_threads: int | None = None
    output_checked: bool = False
    stop_epoch: int | None = None


class IndexedDataset(torch.utils.data.Dataset):
    """Training-split dataset that also yields each sample's position in it.

    The position is the key of every per-sample quantity (flags, clusters), so a
    shuffled batch always finds its own samples' entries.

    A ``DataLoader`` asks for a whole batch at once (``__getitems__``). Over a plain
    skorch ``Dataset`` of arrays or tensors (or skorch's ``Subset`` of one, the
    training split of a validation split), the batch's rows are taken with one
    indexing per array instead of one ``__getitem__`` per sample: the same samples,
    values and types, hence the same collated batch, without per-sample Python calls
    (a measurable share of a small network's batch). Any other dataset is read
    sample by sample.

    Parameters
    ----------
    dataset : torch Dataset
        The training split.
    tensor_rows : bool, default=False
        Give a numeric array's rows as tensors (views of one tensor of the batch)
        rather than numpy rows: ``default_collate`` then stacks them in one call
        instead of converting every row, and returns the same batch. Only for the
        default collate function (a custom one would see tensors where it saw arrays).

    See Also
    --------
    sklcc.base.LatentPenaltyClassifier : Wraps its training split in this dataset.
    skorch.dataset.Dataset : The dataset of arrays whose batches it reads in one indexing.
    torch.utils.data.DataLoader : Asks it for a whole batch at once.

    Examples
    --------
    The positions are those in the training split, here a subset of a larger dataset:

    >>> import numpy as np
    >>> from skorch.dataset import Dataset
    >>> from torch.utils.data import Subset
    >>> full = Dataset(np.arange(8.0).reshape(4, 2), np.array([0, 1, 0, 1]))
    >>> train = IndexedDataset(Subset(full, [3, 1, 0]))
    >>> Xi, yi, position = train[1]
    >>> Xi.tolist(), int(yi), position
    ([2.0, 3.0], 1, 1)
    >>> [(Xi.tolist(), position) for Xi, _, position in train.__getitems__([2, 0])]
    [([0.0, 1.0], 2), ([6.0, 7.0], 0)]

    """

    def __init__(self, dataset, tensor_rows: bool = False):
        self.dataset = dataset
        self.tensor_rows = tensor_rows
        self._arrays = _plain_arrays(dataset)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        Xi, yi = unpack_data(self.dataset[i])
        return Xi, yi, i

    def __getitems__(self, indices):
        """Return the samples at ``indices`` (a list of positions), as ``__getitem__`` would."""
        if self._arrays is None:
            return [self[i] for i in indices]
        X, y, positions = self._arrays
        at = np.asarray(indices, dtype=np.int64)
        if positions is not None:
            at = positions[at]
        rows = [self._rows(a, at) for a in (X, y)]
        return list(zip(*rows, indices, strict=True))

    def _rows(self, a, at: np.ndarray):
        if isinstance(a, torch.Tensor):
            return a[torch.from_numpy(at)].unbind(0)
        if self.tensor_rows and a.dtype.kind in "biuf":
            return torch.from_numpy(a[at]).unbind(0)
        return a[at]


def _plain_arrays(dataset) -> tuple[Any, Any, np.ndarray | None] | None:
    """``(X, y, positions)`` of a skorch ``Dataset`` of arrays or tensors (or a Subset of one).

    None for anything whose samples are not plain rows of ``X`` and ``y`` (a subclass,
    which may transform them, a DataFrame, sparse or dict inputs, no ``y``).
    """
    positions = None
    if type(dataset) is torch.utils.data.Subset:
        dataset, positions = dataset.dataset, np.asarray(dataset.indices, dtype=np.int64)
    if type(dataset) is not SkorchDataset or dataset.X_is_ndframe:
        return None
    X, y = dataset.X, dataset.y
    if not all(isinstance(a, (np.ndarray, torch.Tensor)) and a.ndim >= 1 for a in (X, y)):
        return None
    if len(X) != len(y) or len(dataset) != len(X):
        return None
    return X, y, positions


class LatentPenaltyClassifier(NeuralNetClassifier):
    """A skorch ``NeuralNetClassifier`` whose training loss may add a term on latents.

    Subclasses override :meth:`penalty_layers` (which modules to hook) and
    :meth:`penalty_term` (the term of the current batch), and set ``penalty_name``
    and ``penalty_weight``. The base alone trains with the criterion only.

    Parameters
    ----------
    module : torch module class or instance
        The network, as for skorch. A module *class* whose constructor takes
        ``n_classes`` receives the number of classes seen in ``fit`` unless
        ``module__n_classes`` is set (as SciKeras passes ``n_classes_`` to its model
        builders), so the output layer always fits the data.
    *args
        The positional arguments of skorch after ``module`` (``criterion``).
    random_state : int or None, default=None
        Seeds torch (module initialisation, shuffling, dropout) for the duration of
        ``fit`` without touching the global generator afterwards; the same seed gives
        bit-identical CPU runs.
    **kwargs
        Every other skorch argument.

    Attributes
    ----------
    classes_ : ndarray
        Class labels seen in ``fit`` (or the ``classes`` given); ``predict`` returns
        these. Absent with ``classes=[]``, as in skorch.
    n_features_in_ : int or None
        Number of input columns for 2-D array input.
    fit_state_ : FitState
        Exists only while the net trains.

    See Also
    --------
    sklcc.LCCClassifier : This base with the latent cluster correction term.
    sklcc.CenterLossClassifier : This base with the center loss term.
    skorch.NeuralNetClassifier : The skorch classifier it extends.

    Notes
    -----
    Numeric array inputs are cast to ``float32``. With ``classes=[...]`` or
    ``classes=[]`` the labels must already be class indices and ``predict`` returns
    indices, exactly as skorch does. With the default criterion (``NLLLoss``) skorch
    takes the log of the module's output, so the module must return probabilities
    (end ``forward`` with a softmax) or the criterion must be
    ``torch.nn.CrossEntropyLoss`` (raw scores); a module that returns anything else
    is stopped at its first batch with an error saying so.

    Examples
    --------
    Used on its own it trains with the criterion only, and takes any sortable labels:

    >>> import numpy as np
    >>> import torch
    >>> X = np.array([[0.0, 0.0], [0.2, 0.1], [1.0, 1.0], [0.9, 0.8]])
    >>> y = np.array(["no", "no", "yes", "yes"])
    >>> module = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Softmax(dim=-1))
    >>> clf = LatentPenaltyClassifier(module, max_epochs=20, lr=0.5, train_split=None,
    ...                               random_state=0, verbose=0).fit(X, y)
    >>> clf.penalty_weight, clf.classes_.tolist()
    (0.0, ['no', 'yes'])
    >>> clf.predict(X).tolist()
    ['no', 'no', 'yes', 'yes']

    """

    #: Suffix of the per-epoch history key of the term, ``train_<penalty_name>``.
    penalty_name: str | None = None

    def __init__(self, module, *args, random_state: int | None = None, **kwargs):
        super().__init__(module, *args, **kwargs)
        self.random_state = random_state

    # ------------------------------------------------------------------ hooks for subclasses

    @property
    def penalty_weight(self) -> float:
        """Weight of the term in the training loss (0: no term)."""
        return 0.0

    def check_penalty_params(self) -> None:
        """Validate the subclass's parameters at the start of ``fit`` (default: none)."""

    def penalty_layers(self) -> list[str]:
        """Name the latent modules to hook during training (as in ``lcc_layers``).

        Returns
        -------
        layers : list of str
            Module names (``"name:input"`` for a module's input); none by default.

        """
        return []

    def latent_recorder(self) -> LatentRecorder:
        """Return the recorder that hooks :meth:`penalty_layers` for the fit (not entered).

        Returns
        -------
        recorder : LatentRecorder
            Entered by :meth:`fit_loop` for the duration of the epochs.

        """
        return LatentRecorder(self.module_, self.penalty_layers())

    def penalty_term(self, y_true: torch.Tensor) -> torch.Tensor | None:
        """Return the term of the current training batch, or None for an exact zero.

        The batch's latents are in ``self.fit_state_.recorder.outputs`` and its
        positions in the training split in ``self.fit_state_.batch_index``.

        Parameters
        ----------
        y_true : Tensor of shape (batch,)
            Class codes of the batch.

        Returns
        -------
        term : Tensor, scalar, or None
            None in the base (no term).

        """
        return None

    # ------------------------------------------------------------------ fit

    @property
    def _default_callbacks(self):
        callbacks = dict(super()._default_callbacks)
        # The validation split's y holds class codes, so accuracy compares codes.
        callbacks["valid_acc"] = EpochScoring(
            _accuracy_on_codes, name="valid_acc", lower_is_better=False
        )
        print_log = callbacks.pop("print_log")
        term = term_key(self.penalty_name) if self.penalty_name else None
        extra = [(term, PassthroughScoring(name=term, on_train=True))] if self.penalty_name else []
        return list(callbacks.items()) + extra + [("print_log", print_log)]

    @property
    def classes_(self):
        """Class labels seen in ``fit`` (or given as ``classes``)."""
        if "label_classes_" in vars(self):
            return self.label_classes_
        return super().classes_

    def _check_params(self) -> None:
        """Check the subclass's parameters, then the callbacks its term needs."""
        self.check_penalty_params()
        if self.callbacks == "disable" and self.penalty_weight > 0:
            raise ValueError(
                f"callbacks='disable' turns off every callback, including the ones "
                f"{type(self).__name__}'s term needs; pass callbacks=None (defaults) or a "
                f"list, or set the term's weight to 0."
            )

    def fit(self, X, y=None, **fit_params):
        """Validate the parameters and data, then train as skorch's ``fit`` does.

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
        self : object
            This net, trained.

        """
        self._check_params()
        continuing = self.warm_start and self.initialized_
        known = vars(self).get("label_classes_") if continuing else None
        X = check_X(X, self, reset=not continuing)
        label_classes, y = encode_labels(X, y, self.classes, known=known)
        if not continuing:
            vars(self).pop("label_classes_", None)
        if label_classes is not None:
            self.label_classes_ = label_classes
        with self._fitting(), torch_seed(self.random_state):
            return super().fit(X, y, **fit_params)

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        """Train ``max_epochs`` more epochs without re-initialising (fits if unfitted).

        Parameters
        ----------
        X : array-like, tensor, dict or torch Dataset
            Training inputs.
        y : array-like or None
            Labels; None when ``X`` is a Dataset that yields them.
        classes : array-like or None
            Accepted for skorch's signature; the classes come from ``fit``.
        **fit_params : dict
            Passed to the module's ``forward`` and to ``train_split``.

        Returns
        -------
        self : object
            This net, trained ``max_epochs`` more epochs.

        """
        if hasattr(self, "fit_state_"):  # called by fit: the data are already checked
            return super().partial_fit(X, y, classes=classes, **fit_params)
        if not self.initialized_:
            return self.fit(X, y, **fit_params)
        self._check_params()
        X = check_X(X, self, reset=False)
        _, y = encode_labels(X, y, self.classes, known=vars(self).get("label_classes_"))
        with self._fitting():
            return super().partial_fit(X, y, classes=classes, **fit_params)

    @contextlib.contextmanager
    def _fitting(self):
        self.fit_state_ = FitState()
        try:
            yield
        finally:
            del self.fit_state_

    def initialize_module(self):
        """Build the module; a module class taking ``n_classes`` gets the data's count.

        Returns
        -------
        self : object
            This net, with the module built in ``module_``.

        """
        kwargs = self.get_params_for("module")
        n_classes = self._n_classes()
        if (
            n_classes is not None and "n_classes" not in kwargs
            and isinstance(self.module, type) and _takes(self.module, "n_classes")
        ):
            kwargs["n_classes"] = n_classes
            self.module_ = self.initialized_instance(self.module, kwargs)
            return self
        return super().initialize_module()

    def _n_classes(self) -> int | None:
        if "label_classes_" in vars(self):
            return len(self.label_classes_)
        # skorch's test of "no classes given": None or an empty sequence (a list or an
        # array, whose truth value would be ambiguous).
        return len(self.classes) if self.classes is not None and len(self.classes) else None

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        """Train with the latent hooks attached (they are removed afterwards).

        numpy's BLAS runs single-threaded during the epochs: its small products on
        every training batch (a penalty's target search) would otherwise wake
        threads that fight torch's for the cores. torch's own threads are not
        affected; ``fit_state_.blas_threads`` keeps the original count for work
        between epochs.

        Parameters
        ----------
        X : array-like, tensor, dict or torch Dataset
            Training inputs.
        y : array-like or None
            Labels.
        epochs : int or None
            Epochs to run; None runs ``max_epochs``.
        **fit_params : dict
            Passed to the module's ``forward`` and to ``train_split``.

        Returns
        -------
        self : object
            This net, trained ``epochs`` more epochs (``max_epochs`` when None).

        """
        if not hasattr(self, "fit_state_"):  # fit_loop called on its own
            with self._fitting():
                return self.fit_loop(X, y, epochs=epochs, **fit_params)
        state = self.fit_state_
        with threadpool_limits(limits=1, user_api="blas") as blas, \
                self.latent_recorder() as recorder:
            state.blas_threads = blas.get_original_num_threads().get("blas")
            state.recorder = recorder
            state.stop_epoch = len(self.history) + (self.max_epochs if epochs is None else epochs)
            try:
                return super().fit_loop(X, y, epochs=epochs, **fit_params)
            finally:
                state.recorder = state.batch_index = None

    def get_iterator(self, dataset, training=False):
        """Return skorch's iterator; training batches also carry each sample's position.

        Parameters
        ----------
        dataset : torch Dataset
            The split to iterate over.
        training : bool, default=False
            Whether it is the training split (wrapped in :class:`IndexedDataset`).

        Returns
        -------
        iterator : torch DataLoader
            Batches of ``dataset``; a training batch is ``(X, y, positions)``.

        """
        if training:
            custom_collate = "collate_fn" in self.get_params_for("iterator_train")
            dataset = IndexedDataset(dataset, tensor_rows=not custom_collate)
        return super().get_iterator(dataset, training=training)

    def train_step_single(self, batch, **fit_params):
        """Remember the batch's positions, then do skorch's training step.

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
        return super().train_step_single(self._take_positions(batch), **fit_params)

    def _take_positions(self, batch):
        """Keep a training batch's positions in ``fit_state_``; return its ``(X, y)``."""
        Xi, yi, index = batch
        self.fit_state_.batch_index = index
        return Xi, yi

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """Return the criterion, plus ``penalty_weight`` times the term in training.

        Parameters
        ----------
        y_pred : Tensor
            The module's output.
        y_true : Tensor
            Class codes.
        X : object, optional
            The batch's inputs (passed to skorch's ``get_loss``).
        training : bool, default=False
            Whether it is a training batch (the only one with the term).

        Returns
        -------
        loss : Tensor, scalar
            The criterion's loss, plus ``penalty_weight`` times the term on a training batch.

        """
        state = getattr(self, "fit_state_", None)
        if training and state is not None and not state.output_checked:
            self._check_first_output(y_pred)
            state.output_checked = True
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if not training or state is None or state.recorder is None or not self.penalty_name:
            return loss
        term = self.penalty_term(y_true) if self.penalty_weight else None
        self.history.record_batch(term_key(self.penalty_name),
                                  0.0 if term is None else term.item())
        return loss if term is None else loss + self.penalty_weight * term

    def _check_first_output(self, y_pred: torch.Tensor) -> None:
        if not isinstance(self.criterion_, torch.nn.NLLLoss):
            return
        low, high = float(y_pred.detach().min()), float(y_pred.detach().max())
        if low < 0 or high > 1 + 1e-4:
            raise ValueError(
                f"the module's output lies in [{low:.3g}, {high:.3g}], but the criterion is "
                "NLLLoss (the default), for which skorch takes the log of the output: it "
                "must be probabilities. End forward with torch.softmax(..., dim=-1), or pass "
                "criterion=torch.nn.CrossEntropyLoss to train on raw scores."
            )

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        """Stop with a clear error as soon as the training loss is not finite.

        Parameters
        ----------
        net : LatentPenaltyClassifier
            This net (skorch passes it to its own hooks too).
        batch : tuple, optional
            The batch (not used).
        training : bool, default=False
            Whether it was a training batch (only those are checked).
        **kwargs
            The other arguments skorch passes; ``loss`` is the step's loss.

        """
        if not training:
            return
        # The step's loss itself: skorch has already read it back for the history, and
        # reading it from the history would cost a store round trip per batch under a
        # DistributedHistory.
        loss = kwargs["loss"]
        loss = float(loss.detach() if torch.is_tensor(loss) else loss)
        if not math.isfinite(loss):
            epoch = len(self.history)
            n_batch = len(self.history[-1, "batches"])
            raise ValueError(
                f"the training loss became {loss} at epoch {epoch}, batch {n_batch}. Likely "
                f"causes: a learning rate too high for this model (lr={self.lr!r}; lower it, "
                "or clip gradients with skorch.callbacks.GradientNormClipping), inputs with "
                "huge values (standardise X), or a module whose output does not suit the "
                "criterion (NLLLoss, the default, needs probabilities; CrossEntropyLoss "
                "takes raw scores)."
            )

    # ------------------------------------------------------------------ predict

    def predict_proba(self, X):
        """Return class probabilities, columns in the order of ``classes_``.

        Parameters
        ----------
        X : array-like, tensor, dict or torch Dataset
            Inputs.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            The module's output for each sample, one column per class in ``classes_`` order.

        """
        proba = super().predict_proba(check_X(X, self, reset=False))
        n_classes = self._n_classes()
        n_out = proba.shape[1] if proba.ndim == 2 else None
        if n_out is None or (n_classes is not None and n_out != n_classes):
            raise ValueError(
                f"the module returns {proba.shape[1:]} scores per sample but there are "
                f"{n_classes} classes; make its output layer produce {n_classes} scores "
                "(a module class with an n_classes argument gets the right number)."
            )
        return proba

    def predict(self, X):
        """Return predicted class labels (values of ``classes_``; indices with ``classes`` set).

        Parameters
        ----------
        X : array-like, tensor, dict or torch Dataset
            Inputs.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            The most probable class of each sample.

        """
        codes = self.predict_proba(X).argmax(axis=1)
        classes = vars(self).get("label_classes_")
        return codes if classes is None else np.asarray(classes)[codes]

    def __sklearn_is_fitted__(self):
        """Whether the module is initialised, for scikit-learn's ``check_is_fitted``.

        skorch defines this from 1.4 on; defined here, the same checks pass on every
        supported skorch.
        """
        try:
            self.check_is_fitted()
        except NotFittedError:
            return False
        return True

    def __getstate__(self):
        # A net pickled during training (a checkpoint) carries neither the fit's hooks
        # nor its batch tensors: they belong to the running fit.
        fit_state = getattr(self, "fit_state_", None)
        recorder = fit_state.recorder if fit_state is not None else None
        with recorder.detached() if recorder is not None else contextlib.nullcontext():
            state = super().__getstate__()
        state.pop("fit_state_", None)
        return state


def _accuracy_on_codes(net, X, y):
    """Compute accuracy against encoded labels (a validation split's ``y`` holds codes)."""
    return float(np.mean(net.predict_proba(X).argmax(axis=1) == to_numpy(y)))


def _takes(cls: type, name: str) -> bool:
    try:
        return name in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False

