"""sklcc: Latent Cluster Correction for scikit-learn and PyTorch classifiers.

The estimator is :class:`LCCClassifier`; the algorithm steps live in their own
modules, in pipeline order: :mod:`~sklcc.latents`, :mod:`~sklcc.graph`,
:mod:`~sklcc.communities`, :mod:`~sklcc.matching`, :mod:`~sklcc.representatives`,
:mod:`~sklcc.loss`, orchestrated by :mod:`~sklcc.refresh`.
"""

from .classifier import LCCClassifier
from .refresh import ClusterState, refresh_clusters

__all__ = ["LCCClassifier", "ClusterState", "refresh_clusters"]
__version__ = "0.1.0"
