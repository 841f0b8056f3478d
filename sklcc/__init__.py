"""sklcc: Latent Cluster Correction for scikit-learn and PyTorch classifiers.

The estimator is :class:`LCCClassifier`. The method's steps live in their own
modules, in pipeline order: :mod:`~sklcc.latents` -> :mod:`~sklcc.clustering`
(subsample, projection, assignment) -> :mod:`~sklcc.neighbors` ->
:mod:`~sklcc.communities` -> :mod:`~sklcc.matching` -> :mod:`~sklcc.representatives`
-> :mod:`~sklcc.loss`, chained by :func:`refresh_clusters` (parameters in
:class:`RefreshParams`) and run between epochs by
:mod:`~sklcc.callbacks`. :mod:`~sklcc.base` is the base of every classifier
trained with a latent penalty, :class:`CenterLossClassifier` (the peer method) among
them. Image tooling lives in :mod:`sklcc.images`, tuning in :mod:`sklcc.tuning`.
The numpy steps import without torch; the estimators load on first use.
"""

from importlib import import_module

__all__ = ["CenterLossClassifier", "ClusterState", "ImageEmbedder", "LCCClassifier",
           "LCCSearchCV", "LatentPenaltyClassifier", "RefreshParams", "load_dataset",
           "plot_lcc_history", "refresh_clusters"]
__version__ = "0.2.0"

_LAZY = {"LCCClassifier": "classifier", "CenterLossClassifier": "center_loss",
         "LatentPenaltyClassifier": "base", "ClusterState": "refresh",
         "RefreshParams": "refresh",
         "refresh_clusters": "refresh", "LCCSearchCV": "tuning", "ImageEmbedder": "images",
         "load_dataset": "images", "plot_lcc_history": "plotting"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'sklcc' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
