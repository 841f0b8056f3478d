"""Checks of parameters and data, and label encoding, for the estimators.

scikit-learn's conventions: ``__init__`` stores, ``fit`` validates; every error names
the bad value, what was expected and how to fix it.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch
from scipy import sparse
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_consistent_length, column_or_1d
from skorch.utils import is_dataset, to_numpy

__all__ = [
    "check_choice",
    "check_integer",
    "check_target",
    "check_real",
    "check_X",
    "class_codes",
    "encode_labels",
]


def check_integer(name: str, value: Any, low: int, *, allow_none: bool = False) -> None:
    """Raise unless ``value`` is an integer ``>= low`` (or None where allowed).

    Parameters
    ----------
    name : str
        The parameter's name, for the message.
    value : object
        The value to check; booleans are not integers here.
    low : int
        Smallest value accepted.
    allow_none : bool, default=False
        Whether None is accepted.

    Raises
    ------
    ValueError
        If ``value`` is not accepted; the message names it and what was expected.

    Examples
    --------
    >>> check_integer("n_neighbors", 0, 1)
    Traceback (most recent call last):
    ...
    ValueError: n_neighbors=0 is invalid: expected an integer >= 1.

    """
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        none = " or None" if allow_none else ""
        raise ValueError(f"{name}={value!r} is invalid: expected an integer >= {low}{none}.")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raise unless ``value`` is one of ``choices``.

    Parameters
    ----------
    name : str
        The parameter's name, for the message.
    value : object
        The value to check.
    choices : tuple of str
        The accepted strings.

    Raises
    ------
    ValueError
        If ``value`` is not one of ``choices``; the message lists them.

    Examples
    --------
    >>> check_choice("lcc_refresh_mode", "async", ("sync", "overlap"))
    Traceback (most recent call last):
    ...
    ValueError: lcc_refresh_mode='async' is invalid: expected one of ['sync', 'overlap'].

    """
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}={value!r} is invalid: expected one of {list(choices)}.")


def check_real(name: str, value: Any, *, low: float, strict: bool, hint: str) -> None:
    """Raise unless ``value`` is a finite real number above ``low`` (``>=`` unless strict).

    Parameters
    ----------
    name : str
        The parameter's name, for the message.
    value : object
        The value to check; booleans are not numbers here.
    low : float
        The bound.
    strict : bool
        Whether ``value`` must exceed ``low`` (True) or may equal it (False).
    hint : str
        What the bound means, appended to the message in parentheses.

    Raises
    ------
    ValueError
        If ``value`` is not accepted; the message names it, the bound and ``hint``.

    Examples
    --------
    >>> check_real("lcc_weight", -1.0, low=0, strict=False, hint="0 disables the term")
    Traceback (most recent call last):
    ...
    ValueError: lcc_weight=-1.0 is invalid: expected a finite number >= 0 (0 disables the term).

    """
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and np.isfinite(value) and (value > low if strict else value >= low))
    if not ok:
        raise ValueError(
            f"{name}={value!r} is invalid: expected a finite number {'>' if strict else '>='} "
            f"{low:g} ({hint})."
        )


def cast_float32(X: Any) -> Any:
    """Cast numeric arrays and tensors to float32, what a default torch module computes in."""
    if isinstance(X, torch.Tensor) and (not X.is_floating_point() or X.dtype == torch.float64):
        return X.float()
    if isinstance(X, np.ndarray) and X.dtype.kind in "biuf" and X.dtype != np.float32:
        return X.astype(np.float32)
    return X


def check_X(X: Any, estimator: Any, *, reset: bool) -> Any:
    """Validate array-like ``X`` (finite, 2-D or more, consistent number of features).

    Torch Datasets and dicts pass through unchanged; tensors are checked on a CPU
    view and kept as tensors; everything else goes through ``check_array``. Numeric
    inputs come back as float32.

    Parameters
    ----------
    X : array-like, tensor, dict or Dataset
        The input.
    estimator : estimator
        Receives ``n_features_in_`` when ``reset``; checked against it otherwise.
    reset : bool
        True in ``fit``, False in ``partial_fit`` and prediction.

    Returns
    -------
    X : same kind as the input
        Datasets and dicts unchanged, tensors as tensors, anything else as the array
        ``check_array`` returns; numeric data as float32.

    """
    if is_dataset(X) or (isinstance(X, dict) and not sparse.issparse(X)):
        return X
    view = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else X
    arr = check_array(view, allow_nd=True, dtype="numeric", estimator=estimator, input_name="X")
    n_features = arr.shape[1] if arr.ndim == 2 else None
    if reset:
        estimator.n_features_in_ = n_features
    elif getattr(estimator, "n_features_in_", None) not in (None, n_features):
        raise ValueError(
            f"X has {n_features} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )
    return cast_float32(X if isinstance(X, torch.Tensor) else arr)


def class_codes(classes: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Position of each label of ``y`` in the sorted ``classes``; error for unknown labels.

    Parameters
    ----------
    classes : ndarray of shape (n_classes,)
        Sorted unique labels (an estimator's ``classes_``).
    y : ndarray of shape (n_samples,)
        Labels to encode.

    Returns
    -------
    codes : ndarray of shape (n_samples,), int64
        ``classes[codes]`` equals ``y``.

    Raises
    ------
    ValueError
        If ``y`` holds a label that is not in ``classes``.

    Examples
    --------
    >>> class_codes(np.array(["cat", "dog"]), np.array(["dog", "cat", "dog"])).tolist()
    [1, 0, 1]

    """
    codes = np.searchsorted(classes, y)
    clipped = np.minimum(codes, len(classes) - 1)
    if (codes >= len(classes)).any() or (classes[clipped] != y).any():
        unknown = np.setdiff1d(y, classes)
        raise ValueError(
            f"y has labels {unknown.tolist()[:10]} outside the classes seen in fit "
            f"{classes.tolist()}; fit on data that contains every class."
        )
    return codes.astype(np.int64)


def _labels_array(y: Any, X: Any) -> np.ndarray:
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
    return y_arr


def encode_labels(
    X: Any, y: Any, classes: Any, *, known: np.ndarray | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Check ``y`` and encode it to class codes ``0..n_classes-1``, as skorch expects.

    Follows skorch's ``classes`` contract for ``NeuralNetClassifier``:

    - ``classes=None``: ``y`` may hold any sortable labels; they are encoded, and the
      sorted unique labels are returned to become ``classes_`` (``predict`` maps back).
    - ``classes=[...]`` (non-empty): the names of targets that are already
      index-encoded; ``y`` must hold integers in ``0..len(classes)-1``.
    - ``classes=[]``: ``y`` must hold non-negative integer codes; no ``classes_``.

    Parameters
    ----------
    X : array-like or Dataset
        The inputs (a Dataset may carry the labels itself, then ``y`` is None).
    y : array-like or None
        The labels.
    classes : None or list
        The estimator's ``classes`` parameter.
    known : ndarray, optional
        Labels of an earlier fit, for ``partial_fit`` and ``warm_start``: ``y`` is
        encoded against these instead of its own unique values.

    Returns
    -------
    label_classes : ndarray or None
        The labels ``predict`` maps codes back to; None when ``y`` was already codes.
    codes : ndarray of shape (n_samples,) or None
        Encoded labels; None when ``y`` is None.

    """
    if y is None:
        if not is_dataset(X):
            raise ValueError(
                "This estimator requires y to be passed, but the target y is None; pass the "
                "labels, or a torch Dataset that yields them as X."
            )
        return None, None
    y_arr = _labels_array(y, X)
    if classes is not None:
        n = len(classes)
        codes = y_arr.astype(np.int64) if y_arr.dtype.kind in "iu" else None
        if codes is None or codes.min() < 0 or (n and codes.max() >= n):
            expected = f"integers in 0..{n - 1}" if n else "non-negative integers"
            raise ValueError(
                f"classes={list(classes)[:10]!r} declares y to be class indices "
                f"(skorch's contract), so y must hold {expected}; got values "
                f"{np.unique(y_arr)[:10].tolist()}. Encode y first, or pass classes=None "
                "to let the estimator encode any labels."
            )
        return None, codes
    if known is not None:
        return known, class_codes(known, y_arr)
    label_classes = np.unique(y_arr)
    if len(label_classes) < 2:
        raise ValueError(
            f"y holds one class only ({label_classes.tolist()}, {len(y_arr)} samples); a "
            "classifier needs at least two classes."
        )
    return label_classes, class_codes(label_classes, y_arr)


#: The targets ``lcc_target`` may name (:mod:`~sklcc.representatives`).
LCC_TARGETS = ("nearest", "knn-mean")


def check_target(lcc_target: Any, lcc_target_k: Any, n_representatives: Any) -> None:
    """Raise unless the target parameters name a target and do not contradict each other.

    ``n_representatives="auto"`` (the default) resolves under either target and
    ``lcc_target_k`` is only used by ``"knn-mean"`` (ignored under ``"nearest"``, as
    scikit-learn's ``SVC`` ignores ``degree`` under an RBF kernel); the one
    contradiction is an explicit number of representatives with ``"knn-mean"``, which
    takes every correctly clustered sample.

    Parameters
    ----------
    lcc_target : object
        Must be ``"nearest"`` or ``"knn-mean"`` (``LCC_TARGETS``).
    lcc_target_k : object
        Must be an integer >= 1 or None.
    n_representatives : object
        Must be ``"auto"``, an integer >= 1 or None; only ``"auto"`` or None with
        ``lcc_target="knn-mean"``.

    Raises
    ------
    ValueError
        If a value is invalid or the values contradict each other.

    Examples
    --------
    >>> check_target("knn-mean", 50, "auto")
    >>> check_target("nearest", 50, 32)
    >>> check_target("knn-mean", 50, 32)
    Traceback (most recent call last):
    ...
    ValueError: lcc_target='knn-mean' takes every correctly clustered sample as a candidate, so it draws no representatives (got n_representatives=32); leave n_representatives='auto' (or None), or pass lcc_target='nearest' to draw 32 per cluster.

    """  # noqa: E501
    check_choice("lcc_target", lcc_target, LCC_TARGETS)
    check_integer("lcc_target_k", lcc_target_k, 1, allow_none=True)
    if not (isinstance(n_representatives, str) and n_representatives == "auto"):
        try:
            check_integer("n_representatives", n_representatives, 1, allow_none=True)
        except ValueError:
            raise ValueError(
                f"n_representatives={n_representatives!r} is invalid: expected 'auto', an "
                "integer >= 1 or None."
            ) from None
    if lcc_target == "knn-mean" and n_representatives not in ("auto", None):
        raise ValueError(
            "lcc_target='knn-mean' takes every correctly clustered sample as a candidate, "
            f"so it draws no representatives (got n_representatives={n_representatives!r}); "
            "leave n_representatives='auto' (or None), or pass lcc_target='nearest' to draw "
            f"{n_representatives!r} per cluster."
        )
