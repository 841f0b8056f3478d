"""sklcc: Latent Cluster Correction for scikit-learn and PyTorch classifiers.

The estimator is :class:`LCCClassifier`; the algorithm steps live in their own
modules, in pipeline order: :mod:`~sklcc.latents`, :mod:`~sklcc.neighbors`,
:mod:`~sklcc.communities`, :mod:`~sklcc.matching`, :mod:`~sklcc.representatives`,
:mod:`~sklcc.loss`, orchestrated by :mod:`~sklcc.refresh`. The numpy steps import
without torch; the estimator (and torch) load on first use.
"""

from importlib import import_module

__all__ = ["LCCClassifier", "ClusterState", "refresh_clusters", "LCCSearchCV", "ImageEmbedder",
           "load_dataset"]
__version__ = "0.1.0"

_LAZY = {"LCCClassifier": "classifier", "ClusterState": "refresh", "refresh_clusters": "refresh",
         "LCCSearchCV": "tuning", "ImageEmbedder": "embedding", "load_dataset": "datasets"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'sklcc' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
