"""The search space: which estimator parameters a study tunes, and over which ranges."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Mapping
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import Trial

__all__ = ["check_search_space", "default_search_space", "suggest", "valid_parameter_names"]


def default_search_space() -> dict[str, BaseDistribution]:
    """Return the search space used when none is given: the three LCC knobs.

    Returns
    -------
    dict of str to optuna.distributions.BaseDistribution
        ``lcc_weight`` log-uniform on [1e-4, 1], ``louvain_resolution`` log-uniform on
        [0.1, 10] and ``n_representatives`` an integer, log-uniform on [1, 512].

    Examples
    --------
    >>> from sklcc.tuning.space import default_search_space
    >>> sorted(default_search_space())
    ['lcc_weight', 'louvain_resolution', 'n_representatives']

    """
    return {
        "lcc_weight": FloatDistribution(1e-4, 1.0, log=True),
        "louvain_resolution": FloatDistribution(0.1, 10.0, log=True),
        "n_representatives": IntDistribution(1, 512, log=True),
    }


def valid_parameter_names(estimator: Any) -> tuple[list[str], list[str]]:
    """List the parameter names that ``estimator.set_params`` accepts.

    Parameters
    ----------
    estimator : estimator object
        A scikit-learn estimator or a skorch net.

    Returns
    -------
    names : list of str
        The names of ``get_params(deep=True)``, plus, for skorch nets, the routed arguments
        of the module, criterion, optimizer, iterators and dataset classes (``module__hidden``).
    open_prefixes : list of str
        Routing prefixes whose target takes any keyword (it is not a class, or its constructor
        has ``**kwargs``); every ``prefix__name`` is accepted.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklcc.tuning.space import valid_parameter_names
    >>> names, open_prefixes = valid_parameter_names(LogisticRegression())
    >>> "C" in names, open_prefixes
    (True, [])

    """
    names = {name for name in estimator.get_params(deep=True) if not name.startswith("_")}
    open_prefixes = []
    prefixes = set()
    if _is_skorch_net(estimator):
        # skorch routes `prefix__arg` to the object it builds from attribute `prefix`; module,
        # criterion and optimizer only join `prefixes_` once the net is initialized.
        prefixes = {*estimator.prefixes_, "module", "criterion", "optimizer"}
    for prefix in sorted(prefixes - {"callbacks"}):  # callbacks are already in get_params
        target = getattr(estimator, prefix, None)
        arguments = _constructor_arguments(target)
        if arguments is None:
            open_prefixes.append(prefix)
        else:
            names |= {f"{prefix}__{argument}" for argument in arguments}
    return sorted(names), open_prefixes


def check_search_space(
    estimator: Any, param_distributions: Mapping[str, BaseDistribution] | None
) -> dict[str, BaseDistribution]:
    """Validate a search space against an estimator, before any trial runs.

    Parameters
    ----------
    estimator : estimator object
        The estimator whose parameters are searched.
    param_distributions : mapping of str to optuna.distributions.BaseDistribution or None
        Parameter names (as ``set_params`` takes them) and their distributions; ``None`` means
        :func:`default_search_space`, less ``n_representatives`` for an estimator with
        ``lcc_target="knn-mean"`` (which draws no representatives).

    Returns
    -------
    dict of str to optuna.distributions.BaseDistribution
        The search space.

    Raises
    ------
    ValueError
        If the space is empty or names a parameter the estimator does not have; the message
        lists the valid names.
    TypeError
        If a value is not an Optuna distribution.

    Examples
    --------
    >>> from optuna.distributions import FloatDistribution
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklcc.tuning.space import check_search_space
    >>> check_search_space(LogisticRegression(), {"C": FloatDistribution(0.01, 100, log=True)})
    {'C': FloatDistribution(high=100.0, log=True, low=0.01, step=None)}

    """
    space = default_search_space() if param_distributions is None else param_distributions
    if param_distributions is None and getattr(estimator, "lcc_target", None) == "knn-mean":
        del space["n_representatives"]  # knn-mean draws none: only used with "nearest"
    if not isinstance(space, Mapping):
        raise TypeError(
            f"param_distributions must be a dict of parameter name to Optuna distribution, got "
            f"{type(space).__name__}."
        )
    if not space:
        raise ValueError(
            "param_distributions is empty, so there is nothing to search. Give at least one "
            "parameter, e.g. {'lr': FloatDistribution(1e-4, 1e-1, log=True)}, or pass None for "
            "the default LCC search space."
        )
    for name, distribution in space.items():
        if not isinstance(distribution, BaseDistribution):
            raise TypeError(
                f"param_distributions[{name!r}] is {distribution!r}, not an Optuna distribution;"
                " use e.g. optuna.distributions.FloatDistribution(0.01, 1.0, log=True), "
                "IntDistribution(1, 10) or CategoricalDistribution([...])."
            )
    names, open_prefixes = valid_parameter_names(estimator)
    unknown = [
        name for name in space
        if name not in names and name.split("__", 1)[0] not in open_prefixes
    ]
    if unknown:
        if param_distributions is None:
            hint = (
                f"The default search space tunes LCC parameters, which "
                f"{type(estimator).__name__} does not have; pass param_distributions."
            )
        else:
            hint = "Check the spelling, or route the parameter with its prefix (module__...)."
        opened = f" and any name starting with {[p + '__' for p in open_prefixes]}"
        raise ValueError(
            f"Unknown parameter(s) {unknown} for {type(estimator).__name__}. {hint} Valid "
            f"names: {names}{opened if open_prefixes else ''}."
        )
    return dict(space)


def suggest(trial: Trial, space: Mapping[str, BaseDistribution]) -> dict[str, Any]:
    """Draw one value per parameter of ``space`` through the trial's public suggest API.

    Parameters
    ----------
    trial : optuna.trial.Trial
        The running trial.
    space : mapping of str to optuna.distributions.BaseDistribution
        The search space.

    Returns
    -------
    dict of str to object
        Parameter values for ``set_params``.

    Examples
    --------
    >>> import optuna
    >>> from optuna.distributions import IntDistribution
    >>> from sklcc.tuning.space import suggest
    >>> study = optuna.create_study()
    >>> suggest(study.ask(), {"n_neighbors": IntDistribution(3, 3)})
    {'n_neighbors': 3}

    """
    params = {}
    for name, dist in space.items():
        if isinstance(dist, FloatDistribution):
            params[name] = trial.suggest_float(name, dist.low, dist.high, log=dist.log,
                                               step=dist.step)
        elif isinstance(dist, IntDistribution):
            params[name] = trial.suggest_int(name, dist.low, dist.high, log=dist.log,
                                             step=dist.step)
        elif isinstance(dist, CategoricalDistribution):
            params[name] = trial.suggest_categorical(name, dist.choices)
        else:
            raise TypeError(f"Unsupported distribution {dist!r} for {name!r}.")
    return params


def _constructor_arguments(target: Any) -> list[str] | None:
    """Return the keyword arguments a class takes, or None when it takes any."""
    if not inspect.isclass(target):
        return None
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return [p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL]


def _is_skorch_net(estimator: Any) -> bool:
    # A skorch net comes from an imported skorch; looking it up instead of importing it spares
    # workers that tune scikit-learn models the import of skorch and torch.
    skorch = sys.modules.get("skorch")
    return skorch is not None and isinstance(estimator, skorch.NeuralNet)
